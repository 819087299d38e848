"""The matrix product, forward and backward side by side (batched and 1-D operands as NumPy's matmul).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..function import Function
from ..tensor import Tensor


def _matmul(x: Any, y: Any) -> Any:
    """x @ y; float16 arrays are multiplied in float32 and rounded once (PyTorch's CPU half matmul)."""
    if isinstance(x, Tensor) or isinstance(y, Tensor):
        return MatMul.apply(x, y)
    if x.dtype == np.float16 and y.dtype == np.float16:
        return np.matmul(x.astype(np.float32), y.astype(np.float32)).astype(np.float16)
    return np.matmul(x, y)


def _memory_order(x: Any) -> tuple[int, ...] | None:
    """The order of x's axes (the last kept last) in which an array x is C-contiguous, when it is not
    already (e.g. (1, 0, 2) for a [B, T, H] view of a [T, B, H] array); else None."""
    if not isinstance(x, np.ndarray) or x.ndim < 3 or x.flags.c_contiguous:
        return None
    leading = sorted(range(x.ndim - 1), key=lambda axis: -x.strides[axis])
    axes = (*leading, x.ndim - 1)
    return axes if x.transpose(axes).flags.c_contiguous else None


class MatMul(Function):
    """z = x @ y (batched, broadcasting): dz/dx = g @ yᵀ, dz/dy = xᵀ @ g.

    [..., K] @ [K, N] is one product of [rows, K] @ [K, N], its rows taken in x's memory order: a [B, T, H]
    view of a time-major [T, B, H] array (a recurrent layer's batch-first output) is then multiplied
    without a copy, and the result and the gradients come back in the same layout.
    """

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        if x.ndim > 2 and y.ndim == 2:
            axes = _memory_order(x)
            rows = x if axes is None else x.transpose(axes)
            count = int(np.prod(rows.shape[:-1]))  # not -1: a zero-size x has no inferable row count
            product = _matmul(rows.reshape(count, x.shape[-1]), y).reshape(rows.shape[:-1] + y.shape[-1:])
            return product if axes is None else product.transpose(np.argsort(axes))
        return _matmul(x, y)

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        if x.ndim == 1 and y.ndim == 1:
            return g * y, g * x
        if x.ndim > 2 and y.ndim == 2:  # dy = Σ over all rows of xᵀ g: one product, not a batch of them
            axes = _memory_order(x) if isinstance(g, np.ndarray) else None   # (not under create_graph)
            if axes is not None:
                x, g = x.transpose(axes), g.transpose(axes)
            count = int(np.prod(x.shape[:-1]))
            rows_x, rows_g = x.reshape((count, x.shape[-1])), g.reshape((count, g.shape[-1]))
            grad_x = grad_y = None
            needs_x, needs_y = ctx.needs_input_grad
            if needs_x:
                grad_x = _matmul(rows_g, y.mT).reshape(x.shape)
                grad_x = grad_x if axes is None else grad_x.transpose(np.argsort(axes))
            if needs_y:
                grad_y = _matmul(rows_x.mT, rows_g)
            return grad_x, grad_y
        x2 = x.reshape((1, x.shape[0])) if x.ndim == 1 else x
        y2 = y.reshape((y.shape[0], 1)) if y.ndim == 1 else y
        g2 = g
        if x.ndim == 1:
            g2 = g2.reshape(g2.shape[:-1] + (1,) + g2.shape[-1:])
        if y.ndim == 1:
            g2 = g2.reshape(g2.shape + (1,))
        grad_x = grad_y = None
        needs_x, needs_y = ctx.needs_input_grad
        if needs_x:
            grad_x = _matmul(g2, y2.mT)
            if x.ndim == 1:
                grad_x = grad_x.reshape(grad_x.shape[:-2] + grad_x.shape[-1:])
        if needs_y:
            grad_y = _matmul(x2.mT, g2)
            if y.ndim == 1:
                grad_y = grad_y.reshape(grad_y.shape[:-1])
        return grad_x, grad_y
