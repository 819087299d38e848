"""Shape and indexing primitives, forward and backward side by side: reshape, permute, broadcast_to,
getitem and its adjoint scatter, concatenate, split; and the axis helpers the reductions share.
"""
from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..._kernels.device import device_of, scatter_add, to_device
from ..._kernels.rows import scatter_rows
from ..function import Function
from ..tensor import Tensor


def _broadcast_to(x: Any, shape: tuple[int, ...]) -> Any:
    return BroadcastTo.apply(x, shape) if isinstance(x, Tensor) else np.broadcast_to(x, shape)


def _scatter(g: Any, shape: tuple[int, ...], index: Any) -> Any:
    return Scatter.apply(g, shape, index) if isinstance(g, Tensor) else Scatter.forward(None, g, shape, index)


def _concatenate(pieces: Sequence[Any], axis: int) -> Any:
    if builtins.any(isinstance(piece, Tensor) for piece in pieces):
        return Concatenate.apply(*pieces, axis=axis)
    return np.concatenate(pieces, axis=axis)


def _normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    low, high = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)  # a 0-d tensor accepts axis 0 or -1
    for a in axes:
        if not low <= a <= high:
            raise IndexError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
    return () if ndim == 0 else tuple(sorted({int(a) % ndim for a in axes}))


def _single_axis(axis: int, ndim: int) -> Any:
    axes = _normalize_axes(axis, ndim)
    return axes[0] if axes else ()


def _kept_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if i in axes else size for i, size in enumerate(shape))


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.input_shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.input_shape), None


class Permute(Function):
    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = axes
        return np.transpose(x, axes)

    @staticmethod
    def backward(ctx, g):
        inverse = None if ctx.axes is None else tuple(np.argsort(ctx.axes))
        return g.transpose(inverse), None


class BroadcastTo(Function):
    @staticmethod
    def forward(ctx, x, shape):
        return np.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, g):
        return g, None  # the engine sums g back to x's shape


def _is_basic_index(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return builtins.all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in items)


def _index_on_device(index: Any, device: Any) -> Any:
    if isinstance(index, tuple):
        return tuple(to_device(i, device) if isinstance(i, np.ndarray) else i for i in index)
    return to_device(index, device) if isinstance(index, np.ndarray) else index


class GetItem(Function):
    """x[index]; with repeated advanced indices the gradients of the repeats are summed."""

    @staticmethod
    def forward(ctx, x, index):
        if type(x) is not np.ndarray and not _is_basic_index(index):  # index arrays join x on its device
            index = _index_on_device(index, device_of(x))
        ctx.input_shape = x.shape
        ctx.index = index
        return x[index]

    @staticmethod
    def backward(ctx, g):
        return _scatter(g, ctx.input_shape, ctx.index), None


class Scatter(Function):
    """The adjoint of GetItem: place g at `index` in zeros of `shape`, summing repeats."""

    @staticmethod
    def forward(ctx, g, shape, index):
        if ctx is not None:
            ctx.index = index
        if isinstance(index, np.ndarray) and index.dtype.kind in "iu" and len(shape) >= 1:
            return scatter_rows(g, shape, index)
        out = np.zeros_like(g, shape=shape)  # on g's device
        if _is_basic_index(index):
            out[index] = g
        else:
            scatter_add(out, index, g)
        return out

    @staticmethod
    def backward(ctx, g):
        return g[ctx.index], None, None


class ToDevice(Function):
    """A copy of x on another device; the gradient is copied back to x's device."""

    @staticmethod
    def forward(ctx, x, device):
        ctx.source = device_of(x)
        return to_device(x, device)

    @staticmethod
    def backward(ctx, g):
        return (g.to(ctx.source) if isinstance(g, Tensor) else to_device(g, ctx.source)), None


class Concatenate(Function):
    @staticmethod
    def forward(ctx, *pieces, axis):
        ctx.axis = axis
        ctx.bounds = np.cumsum([0] + [piece.shape[axis] for piece in pieces])
        return np.concatenate(pieces, axis=axis)

    @staticmethod
    def backward(ctx, g):
        lead = (slice(None),) * (ctx.axis % g.ndim)
        return tuple(g[lead + (slice(start, stop),)] for start, stop in zip(ctx.bounds[:-1], ctx.bounds[1:]))


class Split(Function):
    """Cut x along an axis into pieces (a node with several outputs)."""

    @staticmethod
    def forward(ctx, x, sections, axis):
        ctx.axis = axis
        return tuple(np.split(x, sections, axis=axis))

    @staticmethod
    def backward(ctx, *grads):
        return _concatenate(grads, ctx.axis), None, None
