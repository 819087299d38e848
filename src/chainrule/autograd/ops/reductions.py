"""Reductions, forward and backward side by side: sum, mean, max, logsumexp, softmax, log_softmax.
"""
from __future__ import annotations

import numpy as np

from ..._kernels.device import max_or

from ..function import Function
from .elementwise import _accumulation_dtype, _data, _exp, _in_float32_for_float16
from .shape import _broadcast_to, _kept_shape


class Sum(Function):
    @staticmethod
    def forward(ctx, x, axes, keepdims):
        ctx.input_shape = x.shape
        ctx.kept_shape = _kept_shape(x.shape, axes)
        wide = _accumulation_dtype(x.dtype)
        out = np.sum(x, axis=axes, keepdims=keepdims, dtype=wide)
        return out if wide is None else out.astype(x.dtype)

    @staticmethod
    def backward(ctx, g):
        return _broadcast_to(g.reshape(ctx.kept_shape), ctx.input_shape), None, None


class Mean(Function):
    """Mean over axes: the sum (float16 summed in float32) divided by the count; NaN over an empty axis
    (0 / 0, as PyTorch). Gradient g / count to every element."""

    @staticmethod
    def forward(ctx, x, axes, keepdims):
        ctx.input_shape = x.shape
        ctx.kept_shape = _kept_shape(x.shape, axes)
        ctx.count = int(np.prod([x.shape[a] for a in axes]))
        total = np.sum(x, axis=axes, keepdims=keepdims, dtype=_accumulation_dtype(x.dtype))
        dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)  # integers: a float mean
        if ctx.count == 0:
            return np.full_like(total, np.nan, dtype=dtype, shape=np.shape(total))   # on x's device
        return (total / ctx.count).astype(dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        if ctx.count == 0:  # the input has no elements
            return np.zeros_like(_data(g), shape=ctx.input_shape), None, None   # on g's device
        count, kept_shape = ctx.count, ctx.kept_shape  # a float16 count above 65504 would be inf
        share = _in_float32_for_float16(lambda g: g.reshape(kept_shape) / count, g)
        return _broadcast_to(share, ctx.input_shape), None, None


def _check_reducible(x: np.ndarray, axes: tuple[int, ...], what: str) -> None:
    empty = [a for a in axes if x.shape[a] == 0]
    if empty:
        raise IndexError(f"{what}: axis {empty[0]} of the input of shape {x.shape} has "
                         f"size 0, and {what} of nothing has no value (no identity); reduce over a "
                         "non-empty axis, or check for empty input first")


class Max(Function):
    """Max over axes; tied maxima share the gradient equally (PyTorch's amax)."""

    @staticmethod
    def forward(ctx, x, axes, keepdims):
        _check_reducible(x, axes, "max/min")
        out = np.max(x, axis=axes, keepdims=True)
        # a NaN is the max (np.max propagates it): the NaNs share the gradient, as torch.max() full reduction
        # (and torch.max(dim) with one NaN) give; torch.amax's backward gives NaN everywhere (NaN != NaN)
        is_max = x == out
        if np.issubdtype(x.dtype, np.inexact):
            is_max |= np.isnan(x) & np.isnan(out)
        ctx.save_for_backward(is_max / is_max.sum(axis=axes, keepdims=True).astype(x.dtype))
        ctx.kept_shape = out.shape
        return out if keepdims else np.squeeze(out, axis=axes)

    @staticmethod
    def backward(ctx, g):
        (share,) = ctx.saved_tensors
        return g.reshape(ctx.kept_shape) * share, None, None


class LogSumExp(Function):
    """log Σ exp(x), shifted by the max so logits of 1e4 do not overflow; gradient softmax(x).

    An infinite max is not subtracted (PyTorch: a row of -inf gives -inf, a +inf gives +inf); an empty axis
    gives -inf (log 0); float16 is computed in float32 and rounded once."""

    @staticmethod
    def forward(ctx, x, axes, keepdims):
        wide = x.astype(_accumulation_dtype(x.dtype) or x.dtype, copy=False)
        shift = max_or(wide, axes, True, -np.inf)
        shift = np.where(np.isinf(shift), 0, shift)
        out = (np.log(np.sum(np.exp(wide - shift), axis=axes, keepdims=True)) + shift).astype(x.dtype)
        ctx.kept_shape = out.shape
        out = out if keepdims else np.squeeze(out, axis=axes)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        return g.reshape(ctx.kept_shape) * _exp(x - out.reshape(ctx.kept_shape)), None, None


def _shifted_by_max(x: np.ndarray, axis: int) -> np.ndarray:
    """x - max(x) along `axis` (kept), float16 widened to float32: what softmax and log-softmax exponentiate.
    The max is subtracted even when infinite: a row of -inf, or one holding +inf, is NaN, as in PyTorch."""
    wide = x.astype(_accumulation_dtype(x.dtype) or x.dtype, copy=False)
    return wide - max_or(wide, axis, True, -np.inf)


class Softmax(Function):
    """The softmax node: dS/dx applied to g is S ⊙ (g - Σ g S)."""

    @staticmethod
    def forward(ctx, x, axis):
        e = np.exp(_shifted_by_max(x, axis))
        out = (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        axis = ctx.axis
        return _in_float32_for_float16(lambda g, out: out * (g - (g * out).sum(axis=axis, keepdims=True)),
                                       g, out), None


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, axis):
        shifted = _shifted_by_max(x, axis)
        out = (shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))).astype(x.dtype)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        axis = ctx.axis
        return _in_float32_for_float16(lambda g, out: g - _exp(out) * g.sum(axis=axis, keepdims=True),
                                       g, out), None
