"""Gradient clipping, as `torch.nn.utils`."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..autograd.tensor import Tensor


def _with_grads(parameters: Any) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale all gradients together so their joint norm is at most `max_norm`; returns the norm before.

    >>> import chainrule as cr
    >>> p = cr.ones(4, requires_grad=True); p.grad = cr.ones(4).numpy() * 3
    >>> float(clip_grad_norm_([p], 1.0))
    6.0
    >>> round(float(np.linalg.norm(p.grad)), 4)
    1.0
    """
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be non-negative, got {max_norm}")
    grads = [p.grad for p in _with_grads(parameters)]
    if not grads:
        return Tensor(np.zeros((), np.float32))
    if norm_type == float("inf"):
        total = max(float(np.abs(g).max(initial=0.0)) for g in grads)
    elif norm_type == 2.0:
        total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))  # BLAS dot: one pass, no temporaries
    else:
        total = float(sum(float(np.sum(np.abs(g.astype(np.float64)) ** norm_type)) for g in grads) ** (1.0 / norm_type))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of the gradients is {total}; set "
                           "error_if_nonfinite=False to clip anyway")
    scale = min(max_norm / (total + 1e-6), 1.0)  # PyTorch's clip coefficient, clamped at 1
    if scale < 1.0:
        for g in grads:
            g *= scale
    return Tensor(np.asarray(total, dtype=grads[0].dtype))


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float) -> None:
    """Clip every gradient element into [-clip_value, clip_value] in place.

    >>> import chainrule as cr
    >>> p = cr.ones(2, requires_grad=True); p.grad = np.array([-5.0, 0.5], np.float32)
    >>> clip_grad_value_([p], 1.0); p.grad.tolist()
    [-1.0, 0.5]
    """
    if clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be non-negative, got {clip_value}")
    for p in _with_grads(parameters):
        np.clip(p.grad, -clip_value, clip_value, out=p.grad)
