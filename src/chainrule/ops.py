"""The primitive operations, each one's forward and backward side by side, and the ops composed of them.

Every backward receives the upstream gradient `g` and returns the downstream gradient of each input
(upstream × local). It is written with operators and methods that NumPy arrays and Tensors share, so
the same lines run on arrays in a normal backward and on Tensors under `create_graph=True`. Gradients
of broadcast inputs are summed back to the input's shape by the engine, not here.
"""
from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

from .backend import backend_name
from .function import Function
from .tensor import Tensor, _dtype, _operand

# -- helpers that accept an array or a Tensor (the two modes of backward) ---------------------------


def _exp(x: Any) -> Any:
    return x.exp() if isinstance(x, Tensor) else np.exp(x)


def _log(x: Any) -> Any:
    return x.log() if isinstance(x, Tensor) else np.log(x)


def _where(condition: np.ndarray, x: Any, y: Any) -> Any:
    """Select (never multiply by a mask: inf · 0 and NaN · 0 are NaN)."""
    if isinstance(x, Tensor) or isinstance(y, Tensor):
        return Where.apply(condition, x, y)
    return np.where(condition, x, y)


def _data(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _accumulation_dtype(dtype: np.dtype) -> Any:
    """float16 is summed in float32 (as PyTorch's CPU kernels do), so a sum never overflows on the way to a
    result that fits; other dtypes are summed in their own precision (None)."""
    return np.float32 if dtype == np.float16 else None


def _in_float32_for_float16(fn: Any, *arrays: Any) -> Any:
    """fn(*arrays), computed in float32 and rounded once when the arrays are float16 (PyTorch's CPU kernels
    do so: a sum inside a backward must not overflow float16 when the result fits); else as it is."""
    if builtins.any(a.dtype != np.float16 for a in arrays):
        return fn(*arrays)
    # a Tensor (create_graph) goes through the differentiable Cast, so the graph computes the same as here
    return fn(*(a.astype(np.float32) for a in arrays)).astype(np.float16)


def _scalar_power(x: Any, exponent: Any) -> Any:
    """x ** exponent for an array x; for float32 and float64 a Python-number exponent of 0.5 or -0.5 is
    sqrt(x) or 1 / sqrt(x), as in PyTorch's pow(Tensor, Scalar) (they differ from C's pow at -0 and -inf:
    sqrt(-0) = -0, sqrt(-inf) = NaN); float16, as in PyTorch, keeps C's pow."""
    if isinstance(exponent, (int, float)) and not isinstance(exponent, bool) and \
            getattr(x, "dtype", None) in (np.float32, np.float64):
        if exponent == 0.5:
            return np.sqrt(x)
        if exponent == -0.5:
            return np.reciprocal(np.sqrt(x))
        return np.power(x, exponent)
    out = np.power(x, exponent)
    if np.size(exponent) == 1 and np.asarray(exponent).dtype.kind == "f" and float(np.asarray(exponent).flat[0]) == 0.5:
        # NumPy takes a scalar exponent 0.5 as sqrt (-0 -> -0, -inf -> NaN); a Tensor exponent follows C's
        # pow, as in PyTorch's pow(Tensor, Tensor): pow(-0, 0.5) = +0, pow(-inf, 0.5) = +inf
        out = np.where(np.isneginf(x), np.asarray(np.inf, np.result_type(out)), out + np.zeros((), np.result_type(out)))
        out = out.astype(np.result_type(x, exponent), copy=False) if isinstance(out, np.ndarray) else out
    return out


def _power(x: Any, exponent: Any) -> Any:
    if isinstance(x, Tensor) or isinstance(exponent, Tensor):
        return Pow.apply(x, exponent)
    return _scalar_power(x, exponent)


def _matmul(x: Any, y: Any) -> Any:
    """x @ y; float16 arrays are multiplied in float32 and rounded once (PyTorch's CPU half matmul)."""
    if isinstance(x, Tensor) or isinstance(y, Tensor):
        return MatMul.apply(x, y)
    if x.dtype == np.float16 and y.dtype == np.float16:
        return np.matmul(x.astype(np.float32), y.astype(np.float32)).astype(np.float16)
    return np.matmul(x, y)


# -- local derivatives shared with `Value` (upstream g times ∂out/∂input, with PyTorch's conventions) --

def pow_gradients(g: Any, x: Any, y: Any, out: Any, need_x: bool = True, need_y: bool = True) -> tuple:
    """Gradients of out = x ** y (PyTorch's pow_backward):
    ∂/∂x = y x^(y-1), selected to 0 where y == 0 (even at x = 0, inf or NaN);
    ∂/∂y = x^y ln x, selected to 0 where x == 0 and y >= 0 (0 · ln 0 is the limit 0, not NaN);
    a negative base gives NaN for ∂/∂y (ln of a negative number), as in PyTorch."""
    grad_x = grad_y = None
    if need_x:
        if isinstance(y, (int, float)) and not isinstance(y, bool):
            grad_x = np.zeros(np.shape(_data(g)), _data(g).dtype) if y == 0 else g * (y * _power(x, y - 1))
        else:
            # y - 1 kept an array: NumPy turns a 0-d result into np.float64, a float, which would take the
            # Python-number (sqrt) convention at -0.5
            minus_one = y - 1 if isinstance(y, Tensor) else np.asarray(np.subtract(y, 1))
            grad_x = _where(pow_base_blocked(y), 0, g * (y * _power(x, minus_one)))
    if need_y:
        # selected inside, then multiplied by g, as PyTorch's pow_backward_exponent (inf upstream: NaN)
        at_zero = np.logical_and(np.equal(_data(x), 0), np.greater_equal(_data(y), 0))
        grad_y = g * _where(at_zero, 0, out * _log(x))
    return grad_x, grad_y


def pow_base_blocked(y: Any) -> Any:
    """Where the base's gradient is selected to 0 whatever the upstream one (inf, NaN): y == 0 (PyTorch's
    pow_backward selects it; the exponent's gradient at x = 0 is a selected 0 multiplied by the upstream)."""
    return np.equal(_data(y), 0)


def div_gradients(g: Any, x: Any, y: Any) -> tuple:
    """Gradients of x / y: g / y and -g (x / y) / y (PyTorch's order: -g · x / y² overflows sooner)."""
    return g / y, -g * ((x / y) / y)


def sigmoid_forward(x: Any) -> Any:
    """1 / (1 + e^-x) written so that neither branch overflows."""
    return np.exp(-np.logaddexp(0, -x)).astype(x.dtype, copy=False)


def relu_forward(x: Any) -> Any:
    """max(x, 0) as PyTorch's clamp_min: x where x >= 0 or NaN, so -0 stays -0 (np.maximum gives +0)."""
    return np.where(np.less(x, 0), np.zeros((), np.result_type(x)), x)


def relu_blocked(out: Any) -> Any:
    """Where relu passes no gradient: out <= 0 (PyTorch's threshold_backward; NaN passes its gradient)."""
    return np.less_equal(out, 0)


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


# -- arithmetic --------------------------------------------------------------------------------------

class Add(Function):
    """z = x + y: the add node distributes the upstream gradient to both inputs unchanged."""

    @staticmethod
    def forward(ctx, x, y):
        return x + y

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    @staticmethod
    def forward(ctx, x, y):
        return x - y

    @staticmethod
    def backward(ctx, g):
        return g, -g


class Mul(Function):
    """z = x * y: the multiply node swaps its inputs: dz/dx = y, dz/dy = x."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        need_x, need_y = ctx.inputs
        return (g * y if need_x is not None else None), (g * x if need_y is not None else None)


class Div(Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x / y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        grad_x, grad_y = div_gradients(g, x, y)
        return grad_x, (grad_y if ctx.inputs[1] is not None else None)


class Pow(Function):
    """z = x ** y; the gradients and their special points are in `pow_gradients`."""

    @staticmethod
    def forward(ctx, x, y):
        out = _scalar_power(x, y)
        ctx.save_for_backward(x, y, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, y, out = ctx.saved_tensors
        return pow_gradients(g, x, y, out, ctx.inputs[0] is not None, ctx.inputs[1] is not None)


class Sqrt(Function):
    """√x; d√x/dx = 1 / (2√x): inf at 0, -inf at -0 (PyTorch's sqrt_backward g / (2 out))."""

    @staticmethod
    def forward(ctx, x):
        out = np.sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g / (2 * out)


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
            if ctx.inputs[0] is not None:
                grad_x = _matmul(rows_g, y.mT).reshape(x.shape)
                grad_x = grad_x if axes is None else grad_x.transpose(np.argsort(axes))
            if ctx.inputs[1] is not None:
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
        if ctx.inputs[0] is not None:
            grad_x = _matmul(g2, y2.mT)
            if x.ndim == 1:
                grad_x = grad_x.reshape(grad_x.shape[:-2] + grad_x.shape[-1:])
        if ctx.inputs[1] is not None:
            grad_y = _matmul(x2.mT, g2)
            if y.ndim == 1:
                grad_y = grad_y.reshape(grad_y.shape[:-1])
        return grad_x, grad_y


class Neg(Function):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, g):
        return -g


# -- elementwise functions ---------------------------------------------------------------------------

class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        out = np.exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / x


class Tanh(Function):
    """The tanh node: dtanh(x)/dx = 1 - tanh(x)²."""

    @staticmethod
    def forward(ctx, x):
        out = np.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * (1 - out * out)


class Sigmoid(Function):
    """The sigmoid node: dσ(x)/dx = σ(x) (1 - σ(x))."""

    @staticmethod
    def forward(ctx, x):
        out = sigmoid_forward(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * (1 - out) * out


class Relu(Function):
    """max(x, 0) (NaN stays NaN); the gradient is selected: 0 where the output is <= 0, else g."""

    @staticmethod
    def forward(ctx, x):
        out = relu_forward(x)
        ctx.save_for_backward(relu_blocked(out))
        return out

    @staticmethod
    def backward(ctx, g):
        (blocked,) = ctx.saved_tensors
        return _where(blocked, 0, g)


class Abs(Function):
    """|x|; gradient g · sign(x), where sign(0) = sign(NaN) = 0 (PyTorch's sgn)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(np.greater(x, 0).astype(x.dtype) - np.less(x, 0))
        return np.abs(x)

    @staticmethod
    def backward(ctx, g):
        (sign,) = ctx.saved_tensors
        return g * sign


class Clip(Function):
    """Gradient 1 where low <= x <= high (PyTorch's clamp), 0 outside."""

    @staticmethod
    def forward(ctx, x, low, high):
        inside = np.ones(x.shape, bool)
        if low is not None:
            inside &= x >= low
        if high is not None:
            inside &= x <= high
        ctx.save_for_backward(inside)
        # PyTorch's clamp: x is kept where it equals a bound (-0 stays -0, np.clip gives the bound's +0)
        out = x
        if low is not None:
            out = np.where(np.less(out, low), low, out)
        if high is not None:
            out = np.where(np.greater(out, high), high, out)
        return out.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (inside,) = ctx.saved_tensors
        return _where(inside, g, 0), None, None


class Maximum(Function):
    """Elementwise max (NaN wins); where x == y the gradient is split equally, and where either is NaN
    both get g (PyTorch: x's gradient is g/2 on ties, 0 where x < y, else g; y's likewise)."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(np.less(x, y), np.equal(x, y), np.greater(x, y))
        return np.maximum(x, y)

    @staticmethod
    def backward(ctx, g):
        less, equal, greater = ctx.saved_tensors
        shared = _where(equal, g / 2, g)
        return _where(less, 0, shared), _where(greater, 0, shared)


class Where(Function):
    @staticmethod
    def forward(ctx, condition, x, y):
        ctx.save_for_backward(condition)
        return np.where(condition, x, y)

    @staticmethod
    def backward(ctx, g):
        (condition,) = ctx.saved_tensors
        return None, _where(condition, g, 0), _where(condition, 0, g)


class Cast(Function):
    @staticmethod
    def forward(ctx, x, dtype):
        ctx.input_dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.input_dtype), None


# -- reductions --------------------------------------------------------------------------------------

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
            return np.full(np.shape(total), np.nan, dtype)
        return (total / ctx.count).astype(dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        if ctx.count == 0:  # the input has no elements
            return np.zeros(ctx.input_shape, _data(g).dtype), None, None
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
        shift = np.max(wide, axis=axes, keepdims=True, initial=-np.inf)
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


class Softmax(Function):
    """The softmax node: dS/dx applied to g is S ⊙ (g - Σ g S)."""

    @staticmethod
    def forward(ctx, x, axis):
        wide = x.astype(_accumulation_dtype(x.dtype) or x.dtype, copy=False)  # float16 in float32
        # the max is subtracted even when infinite: a row of -inf or with +inf is NaN, as in PyTorch
        e = np.exp(wide - np.max(wide, axis=axis, keepdims=True, initial=-np.inf))
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
        wide = x.astype(_accumulation_dtype(x.dtype) or x.dtype, copy=False)  # float16 in float32
        shifted = wide - np.max(wide, axis=axis, keepdims=True, initial=-np.inf)
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


# -- shape and indexing ------------------------------------------------------------------------------

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


class GetItem(Function):
    """x[index]; with repeated advanced indices the gradients of the repeats are summed."""

    @staticmethod
    def forward(ctx, x, index):
        ctx.input_shape = x.shape
        ctx.index = index
        return x[index]

    @staticmethod
    def backward(ctx, g):
        return _scatter(g, ctx.input_shape, ctx.index), None


def scatter_rows(g: np.ndarray, shape: tuple[int, ...], index: np.ndarray) -> np.ndarray:
    """Sum the rows of g into the rows `index` names: the gradient of x[index] for an integer array
    (an embedding lookup), as an array of `shape`. numba: one compiled pass. NumPy: for a few rows, one
    matrix product with the one-hot matrix (onehotᵀ g); for many, sort and add runs.

    >>> scatter_rows(np.ones((3, 2)), (4, 2), np.array([1, 3, 1])).tolist()
    [[0.0, 0.0], [2.0, 2.0], [0.0, 0.0], [1.0, 1.0]]
    """
    rows = shape[0]
    flat = index.reshape(-1) % rows if index.size and index.min() < 0 else index.reshape(-1)
    values = g.reshape(flat.size, int(np.prod(shape[1:])))  # not -1: g may have no elements
    if backend_name() == "numba" and g.dtype != np.float16:  # numba has no float16 arithmetic
        from .numba_ops import scatter_add_rows
        out = np.zeros((rows, values.shape[1]), g.dtype)
        scatter_add_rows(out, flat, np.ascontiguousarray(values))
        return out.reshape(shape)
    if rows * flat.size <= 1 << 24:
        onehot = np.zeros((flat.size, rows), g.dtype)
        onehot[np.arange(flat.size), flat] = 1
        summed = onehot.T @ values
        if np.isfinite(summed).all():  # else 0 · inf would leak into other rows: add exactly below
            return summed.reshape(shape)
    out = np.zeros((rows, values.shape[1]), g.dtype)
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    out[ordered[starts]] = np.add.reduceat(values[order], starts, axis=0)
    return out.reshape(shape)


class Scatter(Function):
    """The adjoint of GetItem: place g at `index` in zeros of `shape`, summing repeats."""

    @staticmethod
    def forward(ctx, g, shape, index):
        if ctx is not None:
            ctx.index = index
        if isinstance(index, np.ndarray) and index.dtype.kind in "iu" and len(shape) >= 1:
            return scatter_rows(g, shape, index)
        out = np.zeros(shape, g.dtype)
        if _is_basic_index(index):
            out[index] = g
        else:
            np.add.at(out, index, g)
        return out

    @staticmethod
    def backward(ctx, g):
        return g[ctx.index], None, None


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


# -- public functions (PyTorch names; axis/keepdims with dim/keepdim as aliases) ----------------------

def _axis_alias(axis: Any, keepdims: bool | None, dim: Any, keepdim: bool | None,
                name: str = "reduction") -> tuple[Any, bool]:
    """NumPy's axis/keepdims or PyTorch's dim/keepdim; both spellings at once is a TypeError (as PyTorch)."""
    axis = _one_axis(axis, dim, None, name)
    if keepdims is not None and keepdim is not None:
        raise TypeError(f"{name}: got both keepdims={keepdims!r} and keepdim={keepdim!r}; they are the same "
                        "option (NumPy's and PyTorch's spelling): give one")
    return axis, bool(keepdim if keepdim is not None else keepdims)


def _one_axis(axis: Any, dim: Any, default: Any, name: str) -> Any:
    """The axis given as `axis` or as `dim` (else `default`); both at once is a TypeError (as PyTorch)."""
    if axis is not None and dim is not None:
        raise TypeError(f"{name}: got both axis={axis!r} and dim={dim!r}; they are the same option (NumPy's "
                        "and PyTorch's spelling): give one")
    if dim is not None:
        return dim
    return default if axis is None else axis


def _as_tensor(x: Any, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (np.ndarray, int, float, np.generic, list)):
        return Tensor(x)
    raise TypeError(f"{name}: expected a Tensor, got {type(x).__name__}")


def add(x: Any, y: Any) -> Tensor:
    """x + y with broadcasting.

    >>> import chainrule as cr
    >>> cr.add(cr.ones(2), 1).tolist()
    [2.0, 2.0]
    """
    return Add.apply(_operand(x, "+"), _operand(y, "+"))


def sub(x: Any, y: Any) -> Tensor:
    """x - y with broadcasting.

    >>> import chainrule as cr
    >>> cr.sub(cr.ones(2), 1).tolist()
    [0.0, 0.0]
    """
    return Sub.apply(_operand(x, "-"), _operand(y, "-"))


def mul(x: Any, y: Any) -> Tensor:
    """x * y with broadcasting.

    >>> import chainrule as cr
    >>> cr.mul(cr.ones(2), 3).tolist()
    [3.0, 3.0]
    """
    return Mul.apply(_operand(x, "*"), _operand(y, "*"))


def div(x: Any, y: Any) -> Tensor:
    """x / y with broadcasting.

    >>> import chainrule as cr
    >>> cr.div(cr.ones(2), 4).tolist()
    [0.25, 0.25]
    """
    return Div.apply(_operand(x, "/"), _operand(y, "/"))


def pow(x: Any, y: Any) -> Tensor:  # noqa: A001
    """x ** y with broadcasting.

    >>> import chainrule as cr
    >>> cr.pow(cr.tensor([3.0]), 2).tolist()
    [9.0]
    """
    return Pow.apply(_operand(x, "**"), _operand(y, "**"))


def matmul(x: Any, y: Any) -> Tensor:
    """Matrix product with NumPy's rules (1-D operands, broadcast batch dimensions).

    >>> import chainrule as cr
    >>> cr.matmul(cr.ones(2, 3), cr.ones(3, 4)).shape
    (2, 4)
    """
    return MatMul.apply(_operand(x, "@"), _operand(y, "@"))


def neg(x: Tensor) -> Tensor:
    """-x.

    >>> import chainrule as cr
    >>> cr.neg(cr.ones(1)).tolist()
    [-1.0]
    """
    return Neg.apply(_as_tensor(x, "neg"))


def exp(x: Tensor) -> Tensor:
    """e^x elementwise.

    >>> import chainrule as cr
    >>> cr.exp(cr.zeros(1)).tolist()
    [1.0]
    """
    return Exp.apply(_as_tensor(x, "exp"))


def log(x: Tensor) -> Tensor:
    """Natural logarithm elementwise.

    >>> import chainrule as cr
    >>> cr.log(cr.ones(1)).tolist()
    [0.0]
    """
    return Log.apply(_as_tensor(x, "log"))


def sqrt(x: Tensor) -> Tensor:
    """√x elementwise (x ** 0.5).

    >>> import chainrule as cr
    >>> cr.sqrt(cr.tensor([4.0])).tolist()
    [2.0]
    """
    return Sqrt.apply(_as_tensor(x, "sqrt"))


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent elementwise.

    >>> import chainrule as cr
    >>> cr.tanh(cr.zeros(1)).tolist()
    [0.0]
    """
    return Tanh.apply(_as_tensor(x, "tanh"))


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + e^-x) elementwise, stable for large |x|.

    >>> import chainrule as cr
    >>> cr.sigmoid(cr.zeros(1)).tolist()
    [0.5]
    """
    return Sigmoid.apply(_as_tensor(x, "sigmoid"))


def relu(x: Tensor) -> Tensor:
    """max(x, 0) elementwise.

    >>> import chainrule as cr
    >>> cr.relu(cr.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """
    return Relu.apply(_as_tensor(x, "relu"))


def abs(x: Tensor) -> Tensor:  # noqa: A001
    """|x| elementwise (gradient sign(x), 0 at 0 and at NaN, as PyTorch).

    >>> import chainrule as cr
    >>> cr.abs(cr.tensor([-2.0])).tolist()
    [2.0]
    """
    return Abs.apply(_as_tensor(x, "abs"))


def clip(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    """Limit x to [min, max] (either bound may be None), as `torch.clamp`.

    >>> import chainrule as cr
    >>> cr.clip(cr.tensor([-2.0, 0.5, 3.0]), -1, 1).tolist()
    [-1.0, 0.5, 1.0]
    """
    if min is None and max is None:
        raise ValueError("clip: give at least one of min and max")
    return Clip.apply(_as_tensor(x, "clip"), min, max)


clamp = clip


def maximum(x: Any, y: Any) -> Tensor:
    """Elementwise maximum with broadcasting.

    >>> import chainrule as cr
    >>> cr.maximum(cr.tensor([1.0, 5.0]), cr.tensor([3.0, 2.0])).tolist()
    [3.0, 5.0]
    """
    return Maximum.apply(_operand(x, "maximum"), _operand(y, "maximum"))


def minimum(x: Any, y: Any) -> Tensor:
    """Elementwise minimum with broadcasting: -maximum(-x, -y).

    >>> import chainrule as cr
    >>> cr.minimum(cr.tensor([1.0, 5.0]), cr.tensor([3.0, 2.0])).tolist()
    [1.0, 2.0]
    """
    return -maximum(-_as_tensor(x, "minimum"), -_as_tensor(y, "minimum"))


def where(condition: Any, x: Any, y: Any) -> Tensor:
    """x where condition holds, else y (broadcasting all three).

    >>> import chainrule as cr
    >>> cr.where(cr.tensor([True, False]), cr.ones(2), cr.zeros(2)).tolist()
    [1.0, 0.0]
    """
    condition = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    if condition.dtype != np.bool_:
        raise TypeError(f"where: the condition must be boolean, got {condition.dtype}")
    return Where.apply(condition, _operand(x, "where"), _operand(y, "where"))


def astype(x: Tensor, dtype: Any) -> Tensor:
    """Convert to another dtype (differentiable between floating types).

    >>> import chainrule as cr
    >>> cr.astype(cr.ones(1), "float64").dtype
    dtype('float64')
    """
    wanted = _dtype(dtype)
    if x.dtype == wanted:
        return x
    if x.requires_grad and wanted.kind != "f":
        return Tensor._from_array(x.data.astype(wanted))
    return Cast.apply(x, wanted)


def sum(x: Tensor, axis: Any = None, keepdims: bool | None = None, *, dim: Any = None,  # noqa: A001
        keepdim: bool | None = None) -> Tensor:
    """Sum over `axis` (all axes by default).

    >>> import chainrule as cr
    >>> cr.sum(cr.ones(2, 3), axis=1).tolist()
    [3.0, 3.0]
    """
    axis, keepdims = _axis_alias(axis, keepdims, dim, keepdim, "sum")
    return Sum.apply(x, _normalize_axes(axis, x.ndim), keepdims)


def mean(x: Tensor, axis: Any = None, keepdims: bool | None = None, *, dim: Any = None,
         keepdim: bool | None = None) -> Tensor:
    """Mean over `axis` (all axes by default): the sum divided by the count; NaN over an empty axis, as
    PyTorch; float16 is summed in float32.

    >>> import chainrule as cr
    >>> cr.mean(cr.tensor([1.0, 3.0])).item()
    2.0
    """
    axis, keepdims = _axis_alias(axis, keepdims, dim, keepdim, "mean")
    return Mean.apply(x, _normalize_axes(axis, x.ndim), keepdims)


def max(x: Tensor, axis: Any = None, keepdims: bool | None = None, *, dim: Any = None,  # noqa: A001
        keepdim: bool | None = None) -> Tensor:
    """Largest value over `axis` (all axes by default); ties share the gradient equally (PyTorch's amax).
    Raises IndexError when a reduced axis has size 0 (there is no identity for max).

    >>> import chainrule as cr
    >>> cr.max(cr.tensor([[1.0, 4.0], [3.0, 2.0]]), axis=0).tolist()
    [3.0, 4.0]
    """
    axis, keepdims = _axis_alias(axis, keepdims, dim, keepdim, "max")
    return Max.apply(x, _normalize_axes(axis, x.ndim), keepdims)


def min(x: Tensor, axis: Any = None, keepdims: bool | None = None, *, dim: Any = None,  # noqa: A001
        keepdim: bool | None = None) -> Tensor:
    """Smallest value over `axis`: -max(-x) (ties share the gradient; IndexError over an empty axis).

    >>> import chainrule as cr
    >>> cr.min(cr.tensor([1.0, -4.0])).item()
    -4.0
    """
    axis, keepdims = _axis_alias(axis, keepdims, dim, keepdim, "min")
    return -Max.apply(-x, _normalize_axes(axis, x.ndim), keepdims)


def logsumexp(x: Tensor, axis: Any = None, keepdims: bool | None = None, *, dim: Any = None,
              keepdim: bool | None = None) -> Tensor:
    """log(sum(exp(x))) over `axis`, computed without overflow; -inf over an empty axis (log 0).

    >>> import chainrule as cr
    >>> round(cr.logsumexp(cr.tensor([1e4, 1e4])).item(), 3)
    10000.693
    """
    axis, keepdims = _axis_alias(axis, keepdims, dim, keepdim, "logsumexp")
    return LogSumExp.apply(x, _normalize_axes(axis, x.ndim), keepdims)


def softmax(x: Tensor, axis: int | None = None, *, dim: int | None = None) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis`, shifted by the max for stability.

    >>> import chainrule as cr
    >>> cr.softmax(cr.zeros(4)).tolist()
    [0.25, 0.25, 0.25, 0.25]
    """
    axis = _one_axis(axis, dim, -1, "softmax")
    return Softmax.apply(x, _single_axis(axis, x.ndim))


def log_softmax(x: Tensor, axis: int | None = None, *, dim: int | None = None) -> Tensor:
    """x - logsumexp(x) along `axis`.

    >>> import chainrule as cr
    >>> round(cr.log_softmax(cr.zeros(2)).tolist()[0], 4)
    -0.6931
    """
    axis = _one_axis(axis, dim, -1, "log_softmax")
    return LogSoftmax.apply(x, _single_axis(axis, x.ndim))


def reshape(x: Tensor, shape: Any) -> Tensor:
    """The same data in a new shape (one axis may be -1).

    >>> import chainrule as cr
    >>> cr.reshape(cr.ones(6), (2, 3)).shape
    (2, 3)
    """
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if shape == x.shape:
        return x
    return Reshape.apply(x, shape)


def permute(x: Tensor, axes: Sequence[int] | None) -> Tensor:
    """Reorder the axes (None reverses them).

    >>> import chainrule as cr
    >>> cr.permute(cr.ones(2, 3, 4), (2, 0, 1)).shape
    (4, 2, 3)
    """
    if axes is not None:
        axes = tuple(int(a) % builtins.max(x.ndim, 1) for a in axes)
        if sorted(axes) != list(range(x.ndim)):
            raise ValueError(f"permute: {axes} is not a permutation of the {x.ndim} axes of shape {x.shape}")
    return Permute.apply(x, axes)


def swapaxes(x: Tensor, axis1: int, axis2: int) -> Tensor:
    """Exchange two axes (PyTorch's `transpose(dim0, dim1)`).

    >>> import chainrule as cr
    >>> cr.swapaxes(cr.ones(2, 3, 4), 0, 2).shape
    (4, 3, 2)
    """
    axes = list(range(x.ndim))
    a, b = _single_axis(axis1, x.ndim), _single_axis(axis2, x.ndim)
    if x.ndim < 2:
        return x
    axes[a], axes[b] = axes[b], axes[a]
    return Permute.apply(x, tuple(axes))


transpose = swapaxes


def unsqueeze(x: Tensor, axis: int) -> Tensor:
    """Insert an axis of size 1 at `axis`.

    >>> import chainrule as cr
    >>> cr.unsqueeze(cr.ones(3), 0).shape
    (1, 3)
    """
    axis = axis if axis >= 0 else axis + x.ndim + 1
    if not 0 <= axis <= x.ndim:
        raise IndexError(f"unsqueeze: axis out of range for a tensor with {x.ndim} dimensions")
    return Reshape.apply(x, x.shape[:axis] + (1,) + x.shape[axis:])


def squeeze(x: Tensor, axis: int | None = None) -> Tensor:
    """Remove axes of size 1 (only `axis`, if given).

    >>> import chainrule as cr
    >>> cr.squeeze(cr.ones(1, 3, 1)).shape
    (3,)
    """
    if axis is None:
        shape = tuple(s for s in x.shape if s != 1)
    else:
        axis = _single_axis(axis, x.ndim)
        shape = x.shape if x.ndim == 0 or x.shape[axis] != 1 else x.shape[:axis] + x.shape[axis + 1:]
    return reshape(x, shape)


def broadcast_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """View x with the given (broadcast) shape; the gradient is summed back.

    >>> import chainrule as cr
    >>> cr.broadcast_to(cr.ones(3), (2, 3)).shape
    (2, 3)
    """
    return BroadcastTo.apply(x, tuple(shape))


def concatenate(tensors: Sequence[Tensor], axis: int | None = None, *, dim: int | None = None) -> Tensor:
    """Join tensors along an existing axis.

    >>> import chainrule as cr
    >>> cr.concatenate([cr.ones(2), cr.zeros(3)]).shape
    (5,)
    """
    axis = _one_axis(axis, dim, 0, "concatenate")
    tensors = [_as_tensor(t, "concatenate") for t in tensors]
    if not tensors:
        raise ValueError("concatenate: expected at least one tensor")
    if tensors[0].ndim == 0:
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated (use stack)")
    axis = _single_axis(axis, tensors[0].ndim)
    return Concatenate.apply(*tensors, axis=axis)


cat = concatenate


def stack(tensors: Sequence[Tensor], axis: int | None = None, *, dim: int | None = None) -> Tensor:
    """Join tensors of one shape along a new axis (each gets a size-1 axis, then they are joined).

    >>> import chainrule as cr
    >>> cr.stack([cr.ones(3), cr.zeros(3)], axis=1).shape
    (3, 2)
    """
    axis = _one_axis(axis, dim, 0, "stack")
    tensors = [_as_tensor(t, "stack") for t in tensors]
    if not tensors:
        raise ValueError("stack: expected at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
    return Concatenate.apply(*(unsqueeze(t, axis) for t in tensors),
                             axis=axis if axis >= 0 else axis + tensors[0].ndim + 1)


def split(x: Tensor, split_size_or_sections: Any, axis: int | None = None, *, dim: int | None = None) -> tuple:
    """Cut x along `axis` into pieces of a given size (an int) or of the given sizes (a list), as PyTorch.

    >>> import chainrule as cr
    >>> [p.shape for p in cr.split(cr.ones(5, 2), [2, 3])]
    [(2, 2), (3, 2)]
    """
    axis = _one_axis(axis, dim, 0, "split")
    if x.ndim == 0:
        raise ValueError("split: a zero-dimensional tensor cannot be split")
    axis = _single_axis(axis, x.ndim)
    length = x.shape[axis]
    if isinstance(split_size_or_sections, (int, np.integer)):
        if split_size_or_sections <= 0:
            raise ValueError(f"split: the piece size must be positive, got {split_size_or_sections}")
        sizes = [split_size_or_sections] * (length // split_size_or_sections)
        if length % split_size_or_sections:
            sizes.append(length % split_size_or_sections)
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if builtins.sum(sizes) != length:
            raise ValueError(f"split: sizes {sizes} add up to {builtins.sum(sizes)}, but axis {axis} "
                             f"has length {length}")
    boundaries = list(np.cumsum(sizes)[:-1])
    return Split.apply(x, boundaries, axis)
