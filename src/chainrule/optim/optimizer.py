"""Optimizers with PyTorch's update rules and defaults (the single-tensor, non-foreach path)."""
from __future__ import annotations

import copy
import math
import numbers
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from .._kernels.device import NUMPY, backend_of, device_of, to_device, to_host
from .._kernels.backend import backend_name
from ..autograd.tensor import Tensor, unique_tensors


def _state_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype an optimizer keeps a parameter's state and works its step in: at least float32."""
    return np.result_type(dtype, np.float32) if dtype.kind == "f" else dtype


def _host_copy(value: Any) -> Any:
    """A deep copy of a state value, arrays copied to host memory."""
    if type(value) is np.ndarray or backend_of(value) is NUMPY:
        return copy.deepcopy(value)
    return to_host(value)


def _contiguous(*arrays: Any) -> bool:
    """True when every array (and every array in a state dict) is C-contiguous and of one dtype."""
    flat = [a for item in arrays for a in (item.values() if isinstance(item, dict) else (item,))
            if isinstance(a, np.ndarray)]
    return all(a.flags.c_contiguous and a.dtype == flat[0].dtype for a in flat)


class Optimizer:
    """Base class: parameter groups, per-parameter state, zero_grad, state_dict / load_state_dict.

    `params` is an iterable (read once, so a generator is fine) of Tensors, or of dicts each with a
    'params' entry and option overrides (parameter groups). Every option, the defaults' and each group's,
    is checked when given. A parameter listed twice in one group is taken once, with a UserWarning
    (PyTorch warns and updates it twice); one in two groups raises ValueError, as in PyTorch.

    Low precision: the state of a float16 parameter (momentum, running averages) is kept in float32 and
    each step is worked out in float32, then rounded into the parameter once, so a statistic such as
    Adam's g² cannot overflow (300² > 65504) and eps (1e-8) does not underflow to 0. PyTorch on CPU keeps
    float16 state, where a gradient of 1e-4 makes Adam's step -inf.

    Raises TypeError (a single Tensor, a non-Tensor parameter, dicts mixed with Tensors, an unknown
    option) and ValueError (no parameters, a parameter that does not require grad or is not a leaf, a
    parameter in two groups, an option out of range).

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
        if isinstance(params, (Tensor, dict)):
            raise TypeError("params must be an iterable of Tensors or of dicts (parameter groups), "
                            f"not a single {type(params).__name__}: wrap it in a list")
        params = list(params)  # an iterator is consumed here, once
        if not params:
            raise ValueError("optimizer got an empty parameter list: pass model.parameters() or a list of "
                             "Tensors that require grad")
        dicts = [isinstance(p, dict) for p in params]
        if any(dicts) and not all(dicts):
            raise TypeError("params mixes Tensors and dicts: give either Tensors (one group) or dicts "
                            "with a 'params' entry (parameter groups)")
        groups = params if all(dicts) else [{"params": params}]
        with warnings.catch_warnings():  # a warning about an option is given once, for the group using it
            warnings.simplefilter("ignore")
            self._check_options(defaults)
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}  # keyed by id(parameter)
        self._step_count = 0  # steps taken: a schedule stepped before the first one warns
        for group in groups:
            self.add_param_group(group)

    @classmethod
    def _check_options(cls, options: dict[str, Any]) -> None:
        """Raise ValueError for an option out of range (each optimizer names its own)."""

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (the rest from the defaults), as PyTorch.

        Raises as the constructor does (see the class docstring)."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a parameter group must be a dict with a 'params' entry, got "
                            f"{type(group).__name__}")
        group = dict(group)
        parameters = group["params"]
        parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in parameters:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer parameters must be Tensors, got {type(p).__name__}")
            if not p.requires_grad:
                raise ValueError("optimizing a tensor that does not require grad: make it with "
                                 "requires_grad=True (or leave it out)")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor (one computed from others): optimize the "
                                 "tensors it was computed from")
            if id(p) in seen:
                raise ValueError("some parameters appear in more than one parameter group")
        unique, repeats = unique_tensors(parameters)
        if repeats:
            warnings.warn(f"parameter group {len(self.param_groups)} lists a parameter more than once "
                          f"(again at positions {repeats}); each parameter is taken once, so it is updated "
                          "once per step", UserWarning, stacklevel=4)
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown options {sorted(unknown)}")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_options(group)
        group["params"] = unique
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self) -> None:
        self._step_count += 1
        # overflow to inf and inf - inf = NaN are IEEE results, the same as PyTorch's: no RuntimeWarning for them
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state.setdefault(id(p), {})
                    wide = _state_dtype(p.data.dtype)
                    if wide == p.data.dtype:
                        self._update(p.data, p.grad, state, group)
                    else:  # float16: step in float32 (the state's dtype), round into the parameter once
                        data = p.data.astype(wide)
                        self._update(data, p.grad.astype(wide), state, group)
                        np.copyto(p.data, data, casting="same_kind")

    def _update(self, data: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Update `data` (the parameter's values, in the state's dtype) in place."""
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
        # arrays as host copies whatever the parameters' device, so a checkpoint is device-neutral
        state = {index_of[key]: {name: _host_copy(item) for name, item in value.items()}
                 for key, value in self.state.items() if key in index_of}
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
                value = to_host(value) if backend_of(value) is not NUMPY else value
                if isinstance(value, np.ndarray) and value.shape != p.data.shape and value.ndim:
                    raise ValueError(f"optimizer state '{name}' of parameter {index} has shape {value.shape}, "
                                     f"the parameter has shape {p.data.shape}")
                if isinstance(value, np.ndarray):  # on the parameter's device, in the state's dtype
                    value = to_device(value.astype(_state_dtype(p.data.dtype)), device_of(p.data))
                restored[name] = value
            new_state[id(p)] = restored
        merged = [{**group, **{k: v for k, v in saved.items() if k != "params"}}
                  for saved, group in zip(saved_groups, self.param_groups)]
        for options in merged:  # the saved options are checked as given ones are, before anything changes
            self._check_options(options)
        for options, group in zip(merged, self.param_groups):
            group.update(options)
        self.state = new_state

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({options})"


def _check(name: str, value: Any, high: float | None = None, high_included: bool = True) -> None:
    """Raise ValueError unless 0 <= value (<= high, or < high); NaN is refused too."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"invalid {name}: expected a number, got {type(value).__name__} {value!r}")
    below_high = high is None or (value <= high if high_included else value < high)
    if not (value >= 0 and below_high):  # type: ignore[operator]  # numbers.Real declares no <=; real numbers have it
        where = ">= 0" if high is None else f"in [0, {high}{']' if high_included else ')'}"
        raise ValueError(f"invalid {name}: {value} (must be {where})")


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    >>> import chainrule as cr
    >>> SGD([cr.ones(1, requires_grad=True)], lr=0.1, momentum=0.9, nesterov=True)
    SGD(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=True)
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    @classmethod
    def _check_options(cls, options):
        for name in ("lr", "momentum", "weight_decay"):
            _check(name, options[name])
        _check("dampening", options["dampening"], high=1.0)  # outside [0, 1] it flips or inflates steps
        if options["nesterov"] and (options["momentum"] <= 0 or options["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if options["dampening"] and not options["momentum"]:
            warnings.warn(f"SGD: dampening={options['dampening']} has no effect without momentum",
                          UserWarning, stacklevel=5)

    def _update(self, data, grad, state, group):
        d_p = grad + group["weight_decay"] * data if group["weight_decay"] else grad
        momentum = group["momentum"]
        if momentum:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = d_p.copy()
            else:
                buffer *= momentum
                buffer += (1 - group["dampening"]) * d_p
            d_p = d_p + momentum * buffer if group["nesterov"] else buffer
        data -= group["lr"] * d_p


class Adagrad(Optimizer):
    """Adagrad (min-char-rnn's optimizer): p -= lr_t g / (√Σg² + eps), lr_t = lr / (1 + (t-1) lr_decay).
    Duchi, Hazan, Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic Optimization", 2011.

    >>> import chainrule as cr
    >>> Adagrad([cr.ones(1, requires_grad=True)], lr=0.1).defaults["eps"]
    1e-10
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None:
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps))

    @classmethod
    def _check_options(cls, options):
        for name in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            _check(name, options[name])

    def _update(self, data, grad, state, group):
        if not state:
            state["step"] = 0
            state["sum"] = np.full_like(data, group["initial_accumulator_value"])
        state["step"] += 1
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * data
        learning_rate = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state["sum"] += grad * grad
        data -= learning_rate * (grad / (np.sqrt(state["sum"]) + group["eps"]))


class RMSprop(Optimizer):
    """RMSprop: divide by a running root-mean-square of the gradient (optionally centered, with momentum).
    Hinton, *Neural Networks for Machine Learning*, lecture 6e, 2012.

    >>> import chainrule as cr
    >>> RMSprop([cr.ones(1, requires_grad=True)]).defaults["alpha"]
    0.99
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    @classmethod
    def _check_options(cls, options):
        for name in ("lr", "eps", "weight_decay", "momentum"):
            _check(name, options[name])
        # alpha > 1 would weight g² by 1 - alpha < 0, so √(square_avg) turns NaN (PyTorch accepts it)
        _check("alpha", options["alpha"], high=1.0)

    def _update(self, data, grad, state, group):
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(data)
            if group["momentum"] > 0:
                state["momentum_buffer"] = np.zeros_like(data)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(data)
        state["step"] += 1
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * data
        alpha = group["alpha"]
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg += (1 - alpha) * (grad - grad_avg)
            # square_avg - grad_avg² as PyTorch's addcmul computes it, a fused multiply-add: the square is not
            # rounded (to inf when it overflows) before the subtraction, so inf - g² stays inf, not NaN
            wider = np.longdouble if data.dtype == np.float64 else np.float64
            variance = (square_avg.astype(wider) - np.square(grad_avg.astype(wider))).astype(data.dtype)
            average = np.sqrt(variance) + group["eps"]
        else:
            average = np.sqrt(square_avg) + group["eps"]
        if group["momentum"] > 0:
            buffer = state["momentum_buffer"]
            buffer *= group["momentum"]
            buffer += grad / average
            data -= group["lr"] * buffer
        else:
            data -= group["lr"] * (grad / average)


class Adam(Optimizer):
    """Adam: bias-corrected running means of g and g²; weight decay added to the gradient (L2).
    Kingma, Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, https://arxiv.org/abs/1412.6980.

    >>> import chainrule as cr
    >>> Adam([cr.ones(1, requires_grad=True)], lr=2e-3).defaults["betas"]
    (0.9, 0.999)
    """

    decoupled_weight_decay = False

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad))

    @classmethod
    def _check_options(cls, options):
        for name in ("lr", "eps", "weight_decay"):
            _check(name, options[name])
        betas = options["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"invalid betas {betas!r}: expected a pair (beta1, beta2)")
        options["betas"] = tuple(betas)
        for index, beta in enumerate(betas):
            _check(f"beta parameter at index {index}", beta, high=1.0, high_included=False)

    def _update(self, data, grad, state, group):
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(data)
            state["exp_avg_sq"] = np.zeros_like(data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(data)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        adam(data, grad, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"), step=state["step"],
             lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
             decoupled=self.decoupled_weight_decay, amsgrad=group["amsgrad"])

class AdamW(Adam):
    """Adam with decoupled weight decay: p ← p (1 - lr λ) before the Adam step (default λ = 0.01).
    Loshchilov, Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, https://arxiv.org/abs/1711.05101.

    >>> import chainrule as cr
    >>> AdamW([cr.ones(1, requires_grad=True)]).defaults["weight_decay"]
    0.01
    """

    decoupled_weight_decay = True

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


def adam(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
         max_exp_avg_sq: np.ndarray | None, *, step: int, lr: float, beta1: float, beta2: float, eps: float,
         weight_decay: float, decoupled: bool, amsgrad: bool) -> None:
    """One Adam (or AdamW) step on one parameter, in place, as PyTorch's `adam()` computes it:

        g ← g + λ p (L2; AdamW instead p ← p (1 - lr λ)),   m ← m + (g - m)(1 - β1),   v ← β2 v + (1 - β2) g²,
        v̂ ← max(v̂, v) with AMSGrad (`max_exp_avg_sq` holds v̂), else v̂ = v,
        p ← p - lr / (1 - β1^t) · m / (√v̂ / √(1 - β2^t) + ε).

    `step` is t, counted from 1. All arrays have the parameter's shape and the state's dtype. On a GPU, with
    C-contiguous arrays of one dtype, the step is one CUDA kernel (`cuda_kernels.adam_step`); with the numba
    backend and such arrays on the CPU one compiled pass (`kernels.adam_step`), the same arithmetic; otherwise
    NumPy's.
    """
    on_gpu = type(param) is not np.ndarray and backend_of(param) is not NUMPY
    if on_gpu and backend_of(param).cuda_kernels and all(a is None or (a.flags.c_contiguous and a.dtype == param.dtype)
                      for a in (grad, exp_avg, exp_avg_sq, max_exp_avg_sq)):
        from .cuda_kernels import adam_step as adam_on_gpu   # numba.cuda, loaded on first use
        # without AMSGrad the kernel never reads max_exp_avg_sq: grad stands in (an array it does not write)
        adam_on_gpu(param.reshape(-1), grad.reshape(-1), exp_avg.reshape(-1), exp_avg_sq.reshape(-1),
                    (grad if max_exp_avg_sq is None else max_exp_avg_sq).reshape(-1), lr, beta1, beta2, eps,
                    weight_decay, decoupled, amsgrad, lr / (1 - beta1 ** step), math.sqrt(1 - beta2 ** step))
        return
    compiled = backend_name() == "numba" and type(param) is np.ndarray
    if compiled and _contiguous(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq):
        from .kernels import adam_step
        adam_step(param.reshape(-1), grad.reshape(-1), exp_avg.reshape(-1), exp_avg_sq.reshape(-1),
                  (exp_avg_sq if max_exp_avg_sq is None else max_exp_avg_sq).reshape(-1), lr, beta1, beta2, eps,
                  weight_decay, decoupled, amsgrad, lr / (1 - beta1 ** step), math.sqrt(1 - beta2 ** step))
        return
    if weight_decay:
        if decoupled:
            param *= 1 - lr * weight_decay
        else:
            grad = grad + weight_decay * param
    exp_avg += (grad - exp_avg) * (1 - beta1)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    bias_correction1 = 1 - beta1 ** step
    bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)  # type: ignore[arg-type]  # held with amsgrad
        denominator = np.sqrt(max_exp_avg_sq) / bias_correction2_sqrt + eps  # type: ignore[arg-type]  # as above
    else:
        denominator = np.sqrt(exp_avg_sq) / bias_correction2_sqrt + eps
    param -= (lr / bias_correction1) * (exp_avg / denominator)
