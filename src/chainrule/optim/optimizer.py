"""Optimizers with PyTorch's update rules and defaults (the single-tensor, non-foreach path)."""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .._kernels.backend import backend_name
from ..autograd.tensor import Tensor


def _contiguous(*arrays: Any) -> bool:
    """True when every array (and every array in a state dict) is C-contiguous and of one dtype."""
    flat = [a for item in arrays for a in (item.values() if isinstance(item, dict) else (item,))
            if isinstance(a, np.ndarray)]
    return all(a.flags.c_contiguous and a.dtype == flat[0].dtype for a in flat)


class Optimizer:
    """Base class: parameter groups, per-parameter state, zero_grad, state_dict / load_state_dict.

    >>> import chainrule as cr
    >>> from chainrule import optim
    >>> w = cr.ones(2, requires_grad=True)
    >>> opt = optim.SGD([w], lr=0.1)
    >>> (w * w).sum().backward(); opt.step()
    >>> w.tolist()
    [0.800000011920929, 0.800000011920929]
    """

    defaults: dict[str, Any] = {}

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Tensors or of dicts (parameter groups), "
                            "not a single Tensor")
        params = list(params)
        if not params:
            raise ValueError("the optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}  # keyed by id(parameter)
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict[str, Any]) -> None:
        group = dict(group)
        parameters = group["params"]
        parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in parameters:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer parameters must be Tensors, got {type(p).__name__}")
            if not p.requires_grad:
                raise ValueError("optimizing a tensor that does not require grad")
            if id(p) in seen:
                raise ValueError("a parameter appears in more than one parameter group")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown options {sorted(unknown)}")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        group["params"] = parameters
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, self.state.setdefault(id(p), {}), group)

    def _update(self, p: Tensor, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- saving and restoring ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """{'state': {index: {name: array or number}}, 'param_groups': [options + 'params': indices]}."""
        index_of, groups, position = {}, [], 0
        for group in self.param_groups:
            indices = list(range(position, position + len(group["params"])))
            for p, i in zip(group["params"], indices):
                index_of[id(p)] = i
            position += len(indices)
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": indices})
        state = {index_of[key]: copy.deepcopy(value) for key, value in self.state.items() if key in index_of}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict` saved (same parameters in the same order) so training resumes exactly."""
        try:
            saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        except (KeyError, TypeError):
            raise ValueError("optimizer state dict must have 'state' and 'param_groups'") from None
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"optimizer state dict has {len(saved_groups)} parameter groups, "
                             f"this optimizer has {len(self.param_groups)}")
        by_index = {}
        for number, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"parameter group {number} has {len(saved['params'])} parameters in the "
                                 f"state dict and {len(group['params'])} here")
            for index, p in zip(saved["params"], group["params"]):
                by_index[index] = p
        new_state = {}
        for index, values in saved_state.items():
            p = by_index.get(int(index))
            if p is None:
                raise ValueError(f"optimizer state dict has state for unknown parameter {index}")
            restored = {}
            for name, value in values.items():
                if isinstance(value, np.ndarray) and value.shape != p.data.shape and value.ndim:
                    raise ValueError(f"optimizer state '{name}' of parameter {index} has shape {value.shape}, "
                                     f"the parameter has shape {p.data.shape}")
                restored[name] = value.astype(p.data.dtype) if isinstance(value, np.ndarray) else value
            new_state[id(p)] = restored
        for saved, group in zip(saved_groups, self.param_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = new_state

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({options})"


def _check(name: str, value: float, low: float = 0.0) -> None:
    if not value >= low:
        raise ValueError(f"invalid {name}: {value} (must be >= {low})")


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    >>> import chainrule as cr
    >>> SGD([cr.ones(1, requires_grad=True)], lr=0.1, momentum=0.9, nesterov=True)
    SGD(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=True)
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        _check("lr", lr), _check("momentum", momentum), _check("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _update(self, p, grad, state, group):
        d_p = grad + group["weight_decay"] * p.data if group["weight_decay"] else grad
        momentum = group["momentum"]
        if momentum:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = d_p.copy()
            else:
                buffer *= momentum
                buffer += (1 - group["dampening"]) * d_p
            d_p = d_p + momentum * buffer if group["nesterov"] else buffer
        p.data -= group["lr"] * d_p


class Adagrad(Optimizer):
    """Adagrad (min-char-rnn's optimizer): p -= lr_t g / (√Σg² + eps), lr_t = lr / (1 + (t-1) lr_decay).

    >>> import chainrule as cr
    >>> Adagrad([cr.ones(1, requires_grad=True)], lr=0.1).defaults["eps"]
    1e-10
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None:
        _check("lr", lr), _check("lr_decay", lr_decay), _check("weight_decay", weight_decay), _check("eps", eps)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps))

    def _update(self, p, grad, state, group):
        if not state:
            state["step"] = 0
            state["sum"] = np.full_like(p.data, group["initial_accumulator_value"])
        state["step"] += 1
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data
        learning_rate = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state["sum"] += grad * grad
        p.data -= learning_rate * (grad / (np.sqrt(state["sum"]) + group["eps"]))


class RMSprop(Optimizer):
    """RMSprop: divide by a running root-mean-square of the gradient (optionally centered, with momentum).

    >>> import chainrule as cr
    >>> RMSprop([cr.ones(1, requires_grad=True)]).defaults["alpha"]
    0.99
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> None:
        _check("lr", lr), _check("alpha", alpha), _check("eps", eps), _check("momentum", momentum)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _update(self, p, grad, state, group):
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(p.data)
            if group["momentum"] > 0:
                state["momentum_buffer"] = np.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(p.data)
        state["step"] += 1
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data
        alpha = group["alpha"]
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg += (1 - alpha) * (grad - grad_avg)
            average = np.sqrt(square_avg - grad_avg * grad_avg) + group["eps"]
        else:
            average = np.sqrt(square_avg) + group["eps"]
        if group["momentum"] > 0:
            buffer = state["momentum_buffer"]
            buffer *= group["momentum"]
            buffer += grad / average
            p.data -= group["lr"] * buffer
        else:
            p.data -= group["lr"] * (grad / average)


class Adam(Optimizer):
    """Adam: bias-corrected running means of g and g²; weight decay added to the gradient (L2).

    >>> import chainrule as cr
    >>> Adam([cr.ones(1, requires_grad=True)], lr=2e-3).defaults["betas"]
    (0.9, 0.999)
    """

    decoupled_weight_decay = False

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        _check("lr", lr), _check("eps", eps), _check("weight_decay", weight_decay)
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}: each must be in [0, 1)")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _update(self, p, grad, state, group):
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        step, (beta1, beta2), lr = state["step"], group["betas"], group["lr"]
        if backend_name() == "numba" and _contiguous(p.data, grad, state):
            from .kernels import adam_step
            adam_step(p.data.reshape(-1), grad.reshape(-1), state["exp_avg"].reshape(-1),
                      state["exp_avg_sq"].reshape(-1), state.get("max_exp_avg_sq", state["exp_avg_sq"]).reshape(-1),
                      lr, beta1, beta2, group["eps"], group["weight_decay"], self.decoupled_weight_decay,
                      group["amsgrad"], lr / (1 - beta1 ** step), math.sqrt(1 - beta2 ** step))
            return
        if group["weight_decay"]:
            if self.decoupled_weight_decay:
                p.data *= 1 - lr * group["weight_decay"]
            else:
                grad = grad + group["weight_decay"] * p.data
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg += (grad - exp_avg) * (1 - beta1)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        bias_correction1 = 1 - beta1 ** step
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            denominator = np.sqrt(state["max_exp_avg_sq"]) / bias_correction2_sqrt + group["eps"]
        else:
            denominator = np.sqrt(exp_avg_sq) / bias_correction2_sqrt + group["eps"]
        p.data -= (lr / bias_correction1) * (exp_avg / denominator)


class AdamW(Adam):
    """Adam with decoupled weight decay: p ← p (1 - lr λ) before the Adam step (default λ = 0.01).

    >>> import chainrule as cr
    >>> AdamW([cr.ones(1, requires_grad=True)]).defaults["weight_decay"]
    0.01
    """

    decoupled_weight_decay = True

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
