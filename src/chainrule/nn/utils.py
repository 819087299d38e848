"""Gradient clipping, as `torch.nn.utils`."""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from .._kernels.device import max_or
from ..autograd.tensor import Tensor, unique_tensors


def _with_grads(parameters: Any, what: str) -> list[Tensor]:
    """The parameters that have a gradient, each once: a tensor listed again (tied weights) would count twice
    in the norm and be scaled twice (PyTorch does so); as the optimizers, it is taken once, with a warning."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    unique, repeats = unique_tensors(parameters)
    if repeats:
        warnings.warn(f"{what}: a parameter is listed more than once (again at positions {repeats}); each "
                      "parameter is taken once, so its gradient counts once in the norm and is clipped once",
                      UserWarning, stacklevel=3)
    return [p for p in unique if p.grad is not None]


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float, norm_type: float | str = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale all gradients together so their joint norm is at most `max_norm`; returns the norm before.

    The norm is accumulated in float32 or wider whatever the gradients' dtype (float16 squares overflow:
    300² > 65504), and the clip coefficient max_norm / (norm + 1e-6) comes from that wide norm, so float16
    gradients are scaled right even when the norm itself does not fit float16. The returned norm has the
    gradients' dtype, but at least float32 (PyTorch returns a float16 norm, inf beyond 65504); float32
    when no parameter has a gradient. An empty gradient contributes 0. A NaN norm makes every gradient NaN and an
    infinite one scales by 0, as in PyTorch.
    `norm_type` is a positive number or inf ('inf'). A parameter listed twice (tied weights) is taken once,
    with a UserWarning (PyTorch counts it twice in the norm and scales it twice).

    Raises ValueError (max_norm < 0, norm_type not positive) and RuntimeError (a non-finite norm with
    error_if_nonfinite=True).

    >>> import chainrule as cr
    >>> p = cr.ones(4, requires_grad=True); p.grad = cr.ones(4).numpy() * 3
    >>> float(clip_grad_norm_([p], 1.0))
    6.0
    >>> round(float(np.linalg.norm(p.grad)), 4)
    1.0
    """
    if not max_norm >= 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be non-negative, got {max_norm}")
    try:
        norm_type = float(norm_type)
    except (TypeError, ValueError):
        raise ValueError(f"clip_grad_norm_: norm_type must be a positive number or inf, got {norm_type!r}") from None
    if not norm_type > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be a positive number or inf, got {norm_type}")
    grads: list[np.ndarray] = [p.grad for p in _with_grads(parameters, "clip_grad_norm_")]  # type: ignore[misc]  # each has one
    if not grads:
        return Tensor(np.zeros((), np.float32))
    wide = [g.astype(np.result_type(g.dtype, np.float32), copy=False) for g in grads]
    if norm_type == math.inf:
        total = max(float(max_or(np.abs(g), None, False, 0.0)) for g in wide)  # |g| >= 0: 0 is the max's identity
    elif norm_type == 2.0:
        total = math.sqrt(sum(float(np.vdot(g, g)) for g in wide))  # BLAS dot: one pass, no temporaries
    else:
        total = sum(float(np.sum(np.abs(g.astype(np.float64)) ** norm_type)) for g in wide) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of the gradients is {total}; set "
                           "error_if_nonfinite=False to clip anyway")
    coefficient = max_norm / (total + 1e-6)  # PyTorch's clip coefficient, clamped at 1
    if not coefficient >= 1.0:  # NaN too: a NaN norm spreads to every gradient, as in PyTorch
        with np.errstate(invalid="ignore"):  # inf · 0 = NaN where a gradient is inf, as in PyTorch
            for g in grads:
                g *= coefficient
    return Tensor(np.asarray(total, dtype=np.result_type(np.float32, *grads)))


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float) -> None:
    """Clip every gradient element into [-clip_value, clip_value] in place.

    >>> import chainrule as cr
    >>> p = cr.ones(2, requires_grad=True); p.grad = np.array([-5.0, 0.5], np.float32)
    >>> clip_grad_value_([p], 1.0); p.grad.tolist()
    [-1.0, 0.5]
    """
    if not clip_value >= 0:
        raise ValueError(f"clip_grad_value_: clip_value must be non-negative, got {clip_value}")
    for p in _with_grads(parameters, "clip_grad_value_"):
        grad: np.ndarray = p.grad  # type: ignore[assignment]  # _with_grads yields parameters with a gradient
        # a bound beyond the dtype's range (1e6 for float16) clips nothing: cap it, not cast it to inf
        bound = min(clip_value, float(np.finfo(grad.dtype).max)) if grad.dtype.kind == "f" else clip_value
        np.clip(grad, -bound, bound, out=grad)
