"""The public op functions, PyTorch's names (axis/keepdims with dim/keepdim as aliases): each checks its
inputs and applies a primitive of `chainrule.autograd.ops`, or composes several (mean, min, sqrt,
stack, ...). `chainrule` re-exports them all: `cr.add`, `cr.softmax`, `cr.stack`.
"""
from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._kernels.device import NUMPY, backend_of
from .tensor import Tensor, _operand, resolve_dtype
from .ops import (Abs, Add, BroadcastTo, Cast, Clip, Concatenate, Div, Exp, Log, LogSoftmax, LogSumExp, MatMul, Max,
                  Maximum, Mean, Mul, Neg, Permute, Pow, Relu, Reshape, Sigmoid, Softmax, Split, Sqrt, Sub, Sum,
                  Tanh, Where)
from .ops.shape import _normalize_axes, _single_axis


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
    condition = condition.data if isinstance(condition, Tensor) else condition
    if backend_of(condition) is NUMPY:
        condition = np.asarray(condition)
    if condition.dtype != np.bool_:
        raise TypeError(f"where: the condition must be boolean, got {condition.dtype}")
    return Where.apply(condition, _operand(x, "where"), _operand(y, "where"))


def astype(x: Tensor, dtype: Any) -> Tensor:
    """Convert to another dtype (differentiable between floating types).

    >>> import chainrule as cr
    >>> cr.astype(cr.ones(1), "float64").dtype
    dtype('float64')
    """
    wanted = resolve_dtype(dtype)
    if wanted is None:   # no dtype: the tensor unchanged, as PyTorch's Tensor.to(None)
        return x
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
    boundaries = list(np.cumsum(np.asarray(sizes, dtype=np.int64))[:-1])
    return Split.apply(x, boundaries, axis)


__all__ = ["abs", "add", "astype", "broadcast_to", "cat", "clamp", "clip", "concatenate", "div", "exp", "log",
           "log_softmax", "logsumexp", "matmul", "max", "maximum", "mean", "min", "minimum", "mul", "neg",
           "permute", "pow", "relu", "reshape", "sigmoid", "softmax", "split", "sqrt", "squeeze", "stack", "sub",
           "sum", "swapaxes", "tanh", "transpose", "unsqueeze", "where"]
