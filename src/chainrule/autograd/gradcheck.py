"""Gradient checking by central differences in float64, first and second order (public API)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .engine import grad
from .function import enable_grad, no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """The analytical and numerical gradients disagree; the message names the input and element."""


def _as_tuple(values: Any) -> tuple:
    return tuple(values) if isinstance(values, (tuple, list)) else (values,)


def _outputs_of(fn: Callable[..., Any], inputs: tuple) -> tuple[Tensor, ...]:
    outputs = _as_tuple(fn(*inputs))
    for i, out in enumerate(outputs):
        if out is not None and not isinstance(out, Tensor):
            raise TypeError(f"gradcheck: fn returned {type(out).__name__} as output {i}; expected Tensors")
    return outputs


def _output_values(fn: Callable[..., Any], inputs: tuple) -> list[np.ndarray | None]:
    return [None if out is None else np.array(out.data, dtype=np.float64) for out in _outputs_of(fn, inputs)]


def _jacobians(fn: Callable[..., Any], inputs: tuple, checked: list[int], eps: float
               ) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """Analytical and numerical Jacobians: [output][checked input] -> array [out.size, input.size]."""
    outputs = _outputs_of(fn, inputs)
    analytical: list[list[np.ndarray]] = []
    for out in outputs:
        rows = [np.zeros((0 if out is None else out.size, inputs[i].size)) for i in checked]
        if out is not None and out.requires_grad and out.size:
            for k in range(out.size):
                seed = np.zeros(out.size, out.dtype)
                seed[k] = 1.0
                grads = grad(out, [inputs[i] for i in checked], seed.reshape(out.shape),
                             retain_graph=True, allow_unused=True)
                for row, g in zip(rows, grads):
                    if g is not None:
                        row[k] = g.data.ravel()
        analytical.append(rows)
    numerical = [[np.zeros((0 if out is None else out.size, inputs[i].size)) for i in checked]
                 for out in outputs]
    with no_grad():
        for position, i in enumerate(checked):
            flat = inputs[i].data.reshape(-1)  # a view: perturbing it perturbs the input
            for j in range(flat.size):
                original = flat[j]
                flat[j] = original + eps
                plus = _output_values(fn, inputs)  # copied: an output may be a view of the input
                flat[j] = original - eps
                minus = _output_values(fn, inputs)
                flat[j] = original
                for o, (high, low) in enumerate(zip(plus, minus)):
                    if high is not None:
                        numerical[o][position][:, j] = (high - low).ravel() / (2 * eps)
    return analytical, numerical


def gradcheck(fn: Callable[..., Any], inputs: Any, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """Compare `fn`'s backward with central differences for every input that requires grad.

    Inputs that require grad must be float64 (float32 differences are too coarse to judge).
    Returns True, or raises `GradcheckError` naming the input, the worst element and both values.

    >>> import chainrule as cr
    >>> x = cr.randn(3, dtype="float64", requires_grad=True)
    >>> cr.gradcheck(lambda t: (t * t).tanh(), (x,))
    True
    """
    inputs = _as_tuple(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; gradcheck needs float64 inputs "
                            "(use .double() or dtype='float64')")
        if not inputs[i].is_leaf:
            raise ValueError(f"gradcheck: input {i} is not a leaf tensor; pass leaves (use .detach())")
    analytical, numerical = _jacobians(fn, inputs, checked, eps)
    for o, (rows_a, rows_n) in enumerate(zip(analytical, numerical)):
        for position, i in enumerate(checked):
            a, n = rows_a[position], rows_n[position]
            excess = np.abs(a - n) - (atol + rtol * np.abs(n))
            if excess.size and excess.max() > 0:
                k, j = np.unravel_index(int(np.argmax(excess)), excess.shape)
                element = np.unravel_index(j, inputs[i].shape) if inputs[i].ndim else ()
                message = (f"gradcheck: the gradient of output {o} (element {k}) with respect to input {i} "
                           f"disagrees at input element {tuple(int(e) for e in element)}: "
                           f"analytical {a[k, j]:.10g}, numerical {n[k, j]:.10g} "
                           f"(atol={atol}, rtol={rtol}, eps={eps})")
                if raise_exception:
                    raise GradcheckError(message)
                return False
    return True


def gradgradcheck(fn: Callable[..., Any], inputs: Any, grad_outputs: Sequence[Tensor] | None = None,
                  eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0,
                  raise_exception: bool = True) -> bool:
    """Check second derivatives: gradcheck the map (inputs, v) -> vᵀ ∂fn/∂inputs built with create_graph.

    `grad_outputs` (the v) are random float64 tensors unless given.

    >>> import chainrule as cr
    >>> x = cr.randn(3, dtype="float64", requires_grad=True)
    >>> cr.gradgradcheck(lambda t: (t * t).tanh(), (x,))
    True
    """
    inputs = _as_tuple(inputs)
    differentiable = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    outputs = _outputs_of(fn, inputs)
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        grad_outputs = tuple(Tensor(rng.standard_normal(out.shape), requires_grad=True)
                             for out in outputs if out is not None and out.requires_grad)
    grad_outputs = _as_tuple(grad_outputs)
    count = len(inputs)

    def first_derivatives(*arguments: Tensor) -> tuple[Tensor, ...]:
        ins, vs = arguments[:count], arguments[count:]
        with enable_grad():  # the numerical pass of gradcheck runs under no_grad
            return _first_derivatives(ins, vs)

    def _first_derivatives(ins: tuple, vs: tuple) -> tuple[Tensor, ...]:
        outs = [out for out in _outputs_of(fn, ins) if out is not None and out.requires_grad]
        grads = grad(outs, [ins[i] for i in differentiable], list(vs), create_graph=True, allow_unused=True)
        return tuple(g if g is not None else Tensor(np.zeros(ins[i].shape))
                     for g, i in zip(grads, differentiable))

    return gradcheck(first_derivatives, inputs + tuple(grad_outputs), eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception)
