"""`Tensor`: a NumPy array that records the operations applied to it, and its constructors."""
from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .._kernels.device import CPU, NUMPY, Device, backend_of, cuda_backend, device_of, parse_device, to_device, to_host
from . import function as _function
from .engine import _seed_gradient, run_backward

float16, float32, float64 = np.float16, np.float32, np.float64
int8, int16, int32, int64, uint8, bool_ = np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_

_OPERAND_TYPES = (int, float, bool, np.ndarray, np.generic)
_FAST_OPERAND_TYPES = frozenset({int, float, np.ndarray})  # checked first; Tensor added below
_DEFAULT_FLOAT = np.dtype(np.float32)

# The primitive ops that Tensor's operators and methods call (`_ops.Add.apply(...)`). The ops are defined
# on top of Tensor, so they cannot be imported here: `chainrule.autograd.ops` registers itself with
# `register_ops` when it is imported (the `chainrule.autograd` package imports it right after this module).
_ops: Any = None


def register_ops(namespace: Any) -> None:
    """Make `namespace` (a module, or an object with the ops as attributes) the ops Tensor's methods call."""
    global _ops
    _ops = namespace


def resolve_dtype(dtype: Any) -> np.dtype | None:
    if dtype is None:
        return None
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unknown dtype {dtype!r}; expected e.g. 'float32', 'float64', 'int64'") from None
    if resolved.kind not in "biuf":
        raise TypeError(f"unsupported dtype {resolved}; tensors hold bool, integer or floating data")
    return resolved


def _as_array(data: Any, dtype: Any = None) -> np.ndarray:
    """Data of a new tensor: arrays keep their dtype, Python floats become float32 (PyTorch's rule)."""
    wanted = resolve_dtype(dtype)
    if isinstance(data, Tensor):
        array = data.data
    elif isinstance(data, np.ndarray) or backend_of(data) is not NUMPY:
        array = data
    else:
        if isinstance(data, str) or data is None:
            raise TypeError(f"cannot make a tensor from {type(data).__name__}; expected a number, a "
                            "(nested) list of numbers or a NumPy array")
        try:
            array = np.asarray(data)
        except ValueError as error:
            raise ValueError(f"cannot make a tensor from this data: {error} (ragged nested lists?)") from None
        if array.dtype == np.float64 and wanted is None and not isinstance(data, np.generic):
            array = array.astype(_DEFAULT_FLOAT)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"cannot make a tensor with dtype {array.dtype}; expected bool, integer or "
                        "floating data")
    if wanted is not None and array.dtype != wanted:
        array = array.astype(wanted)
    return array


def _operand(value: Any, op: str) -> Any:
    if value.__class__ in _FAST_OPERAND_TYPES or isinstance(value, (Tensor, *_OPERAND_TYPES)):
        return value
    if backend_of(value) is not NUMPY:  # an array of a GPU's module
        return value
    if isinstance(value, numbers.Number):
        return float(value)  # type: ignore[arg-type]  # every numbers.Number but complex converts
    raise TypeError(f"unsupported operand for {op}: Tensor and {type(value).__name__} "
                    "(expected a Tensor, a Python number or a NumPy array)")


def _as_result(value: Any) -> Any:
    """An array from a NumPy function's result: NumPy scalars become 0-d arrays, a GPU's arrays stay as they are."""
    return np.asarray(value) if backend_of(value) is NUMPY else value


def _index_operand(index: Any) -> Any:
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(item.data if isinstance(item, Tensor) else item for item in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


class Tensor:
    """An n-dimensional array that remembers how it was computed, so `backward()` can differentiate it.

    >>> import chainrule as cr
    >>> x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> loss = (x * x).sum()
    >>> loss.backward()
    >>> x.grad
    array([2., 4., 6.], dtype=float32)
    """

    __slots__ = ("data", "_requires_grad", "grad", "_node", "_index", "__weakref__")
    __array_ufunc__ = None  # NumPy defers `array + tensor` to Tensor.__radd__

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        self.data = _as_array(data, dtype)
        self.grad: np.ndarray | None = None
        self._node: Any = None
        self._index = 0
        self._requires_grad = False
        if requires_grad:
            self.requires_grad = True

    @classmethod
    def _from_array(cls, array: np.ndarray, node: Any = None, index: int = 0) -> Tensor:
        tensor = object.__new__(Tensor)
        tensor.data = array
        tensor.grad = None
        tensor._node = node
        tensor._index = index
        tensor._requires_grad = node is not None
        return tensor

    # -- autograd state -------------------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self.data.dtype.kind != "f":
            raise RuntimeError(f"only floating-point tensors can require gradients; this one is "
                               f"{self.data.dtype}")
        if not value and self._node is not None:
            raise RuntimeError("requires_grad can only be switched off on leaf tensors; use .detach()")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set `requires_grad` in place and return self.

        >>> import chainrule as cr
        >>> cr.zeros(2).requires_grad_().requires_grad
        True
        """
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self) -> Any:
        """The graph node that produced this tensor (None for leaves)."""
        return self._node

    @property
    def output_nr(self) -> int:
        """Which output of `grad_fn` this tensor is (0 for leaves and single-output ops), as in PyTorch."""
        return self._index

    def retain_grad(self) -> None:
        """Keep the gradient of this intermediate tensor in `.grad` after backward.

        >>> import chainrule as cr
        >>> x = cr.tensor([1.0, 2.0], requires_grad=True)
        >>> h = x * 3
        >>> h.retain_grad()
        >>> (h * h).sum().backward()
        >>> h.grad
        array([ 6., 12.], dtype=float32)
        """
        if self._node is None:
            return
        if self._node._retained is None:
            self._node._retained = {}
        self._node._retained[self._index] = self

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, cut from the graph (used to carry RNN state across chunks).

        >>> import chainrule as cr
        >>> h = cr.ones(2, requires_grad=True) * 2
        >>> h.detach().requires_grad
        False
        """
        return Tensor._from_array(self.data)

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's `.grad`, as `torch.Tensor.backward`.

        >>> import chainrule as cr
        >>> a = cr.tensor(3.0, requires_grad=True)
        >>> b = a * 2
        >>> (b * b).backward()
        >>> float(a.grad)
        24.0
        """
        if not self._requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph "
                               "(did you create it under no_grad, or forget requires_grad=True?)")
        seed = _seed_gradient(self, gradient, False, "backward")
        run_backward([self], [seed], retain_graph=retain_graph, create_graph=False)

    # -- array facts ----------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        """Number of elements (NumPy's meaning; `numel()` is the PyTorch name)."""
        return self.data.size

    def numel(self) -> int:
        return self.data.size

    def dim(self) -> int:
        return self.data.ndim

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array: shared, not copied, on the CPU; a copy from a GPU (where PyTorch
        raises and asks for .cpu() first).

        >>> import chainrule as cr
        >>> cr.ones(2).numpy()
        array([1., 1.], dtype=float32)
        """
        return to_host(self.data)

    # -- devices --------------------------------------------------------------------------------------
    @property
    def device(self) -> Device:
        """Where the data lives: device(type='cpu'), or device(type='cuda', index=N) for GPU N.

        >>> import chainrule as cr
        >>> str(cr.ones(2).device)
        'cpu'
        """
        return CPU if type(self.data) is np.ndarray else device_of(self.data)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def to(self, device: Any = None, dtype: Any = None) -> Tensor:
        """This tensor on `device` ("cpu", "cuda", "cuda:N") and/or as `dtype`; itself when nothing changes.
        Differentiable: the gradient goes back to the source's device. A dtype is accepted in the first
        place too (`t.to("float64")`, `t.to(np.float64)`), as `Module.to` takes it.

        Raises ValueError/TypeError for an unknown device, RuntimeError when CUDA is asked for without CuPy
        or without a GPU (the message says which, and how to install `chainrule[gpu]`).

        >>> import chainrule as cr
        >>> cr.ones(2).to("cpu").device, cr.ones(2).to("float64").dtype
        (device(type='cpu'), dtype('float64'))
        """
        names_device = isinstance(device, Device) or (isinstance(device, str)
                                                      and device.split(":")[0].strip().lower() in ("cpu", "cuda"))
        if device is not None and not names_device:
            if isinstance(device, str):
                try:
                    resolve_dtype(device)
                except TypeError:
                    raise ValueError(f"unknown device or dtype {device!r}; expected 'cpu', 'cuda', 'cuda:N' or a "
                                     "dtype such as 'float32'") from None
            device, dtype = None, device  # t.to(dtype), as Module.to takes it
        result = self
        if dtype is not None and resolve_dtype(dtype) != self.dtype:
            result = _ops.astype(result, dtype)
        if device is not None:
            target = parse_device(device)
            if target.type == "cuda":
                cuda_backend(target.index)  # the clear error when CuPy or the GPU is missing
            if target != result.device:
                result = _ops.ToDevice.apply(result, target)
        return result

    def cpu(self) -> Tensor:
        """This tensor in host memory (itself when it is there already)."""
        return self.to(CPU)

    def cuda(self, device: int | None = None) -> Tensor:
        """This tensor on GPU `device` (0 unless given)."""
        return self.to(Device("cuda", 0 if device is None else int(device)))

    def item(self) -> float | int | bool:
        """The value of a one-element tensor as a Python number.

        >>> import chainrule as cr
        >>> cr.tensor([2.5]).item()
        2.5
        """
        if self.data.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted to a Python number; "
                             f"this one has shape {self.shape}")
        return self.data.item()

    def tolist(self) -> Any:
        return to_host(self.data).tolist()

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor with {self.data.size} elements is ambiguous")
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        host = to_host(self.data)
        return host if dtype is None else host.astype(dtype)

    def __repr__(self) -> str:
        body = np.array2string(to_host(self.data), separator=", ", prefix="tensor(")
        extras = "" if type(self.data) is np.ndarray else f", device='{self.device}'"
        if self.data.dtype != _DEFAULT_FLOAT:
            extras += f", dtype={self.data.dtype}"
        if self._node is not None:
            extras += f", grad_fn=<{self._node.name}>"
        elif self._requires_grad:
            extras += ", requires_grad=True"
        return f"tensor({body}{extras})"

    __hash__ = object.__hash__

    # -- arithmetic -----------------------------------------------------------------------------------
    def __add__(self, other: Any) -> Tensor:
        return _ops.Add.apply(self, _operand(other, "+"))

    def __radd__(self, other: Any) -> Tensor:
        return _ops.Add.apply(_operand(other, "+"), self)

    def __sub__(self, other: Any) -> Tensor:
        return _ops.Sub.apply(self, _operand(other, "-"))

    def __rsub__(self, other: Any) -> Tensor:
        return _ops.Sub.apply(_operand(other, "-"), self)

    def __mul__(self, other: Any) -> Tensor:
        return _ops.Mul.apply(self, _operand(other, "*"))

    def __rmul__(self, other: Any) -> Tensor:
        return _ops.Mul.apply(_operand(other, "*"), self)

    def __truediv__(self, other: Any) -> Tensor:
        return _ops.Div.apply(self, _operand(other, "/"))

    def __rtruediv__(self, other: Any) -> Tensor:
        return _ops.Div.apply(_operand(other, "/"), self)

    def __pow__(self, other: Any) -> Tensor:
        return _ops.Pow.apply(self, _operand(other, "**"))

    def __rpow__(self, other: Any) -> Tensor:
        return _ops.Pow.apply(_operand(other, "**"), self)

    def __matmul__(self, other: Any) -> Tensor:
        return _ops.MatMul.apply(self, _operand(other, "@"))

    def __rmatmul__(self, other: Any) -> Tensor:
        return _ops.MatMul.apply(_operand(other, "@"), self)

    def __neg__(self) -> Tensor:
        return _ops.Neg.apply(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return _ops.Abs.apply(self)

    # comparisons give boolean tensors outside the graph
    def _compare(self, other: Any, ufunc: Any, op: str) -> Tensor:
        other = _operand(other, op)
        return Tensor._from_array(ufunc(self.data, other.data if isinstance(other, Tensor) else other))

    def __lt__(self, other: Any) -> Tensor:
        return self._compare(other, np.less, "<")

    def __le__(self, other: Any) -> Tensor:
        return self._compare(other, np.less_equal, "<=")

    def __gt__(self, other: Any) -> Tensor:
        return self._compare(other, np.greater, ">")

    def __ge__(self, other: Any) -> Tensor:
        return self._compare(other, np.greater_equal, ">=")

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, np.equal, "==")

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, np.not_equal, "!=")

    def __getitem__(self, index: Any) -> Tensor:
        return _ops.GetItem.apply(self, _index_operand(index))

    # -- elementwise functions ------------------------------------------------------------------------
    def exp(self) -> Tensor:
        return _ops.Exp.apply(self)

    def log(self) -> Tensor:
        return _ops.Log.apply(self)

    def sqrt(self) -> Tensor:
        return _ops.Sqrt.apply(self)

    def tanh(self) -> Tensor:
        return _ops.Tanh.apply(self)

    def sigmoid(self) -> Tensor:
        return _ops.Sigmoid.apply(self)

    def relu(self) -> Tensor:
        return _ops.Relu.apply(self)

    def abs(self) -> Tensor:
        return _ops.Abs.apply(self)

    def clip(self, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
        return _ops.clip(self, min, max)

    clamp = clip

    def astype(self, dtype: Any) -> Tensor:
        return _ops.astype(self, dtype)

    def float(self) -> Tensor:
        return _ops.astype(self, np.float32)

    def double(self) -> Tensor:
        return _ops.astype(self, np.float64)

    # -- reductions -----------------------------------------------------------------------------------
    def sum(self, axis: Any = None, keepdims: bool | None = None, *, dim: Any = None,
            keepdim: bool | None = None) -> Tensor:
        return _ops.sum(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def mean(self, axis: Any = None, keepdims: bool | None = None, *, dim: Any = None,
             keepdim: bool | None = None) -> Tensor:
        return _ops.mean(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def max(self, axis: Any = None, keepdims: bool | None = None, *, dim: Any = None,
            keepdim: bool | None = None) -> Tensor:
        return _ops.max(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def min(self, axis: Any = None, keepdims: bool | None = None, *, dim: Any = None,
            keepdim: bool | None = None) -> Tensor:
        return _ops.min(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def all(self) -> bool:
        """True when every element is non-zero (a Python bool; not differentiable)."""
        return bool(self.data.all())

    def any(self) -> bool:
        """True when some element is non-zero (a Python bool; not differentiable)."""
        return bool(self.data.any())

    def argmax(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        return Tensor._from_array(_as_result(np.argmax(self.data, axis=axis, keepdims=keepdims)))

    def argmin(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        return Tensor._from_array(_as_result(np.argmin(self.data, axis=axis, keepdims=keepdims)))

    def softmax(self, axis: int | None = None, *, dim: int | None = None) -> Tensor:
        return _ops.softmax(self, axis, dim=dim)

    def log_softmax(self, axis: int | None = None, *, dim: int | None = None) -> Tensor:
        return _ops.log_softmax(self, axis, dim=dim)

    def logsumexp(self, axis: Any = None, keepdims: bool | None = None, *, dim: Any = None,
                  keepdim: bool | None = None) -> Tensor:
        return _ops.logsumexp(self, axis, keepdims, dim=dim, keepdim=keepdim)

    # -- shape ----------------------------------------------------------------------------------------
    def reshape(self, *shape: Any) -> Tensor:
        return _ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    view = reshape

    def flatten(self) -> Tensor:
        return _ops.reshape(self, (-1,))

    def transpose(self, *axes: Any) -> Tensor:
        """No axes: reverse them all (NumPy); two ints: swap those two (PyTorch); else a permutation."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            return _ops.permute(self, tuple(axes[0]))
        if len(axes) == 1 and axes[0] is None:
            return _ops.permute(self, None)
        if len(axes) == 2:
            return _ops.swapaxes(self, axes[0], axes[1])
        return _ops.permute(self, axes or None)

    def permute(self, *axes: Any) -> Tensor:
        return _ops.permute(self, tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list))
                            else axes)

    def swapaxes(self, axis1: int, axis2: int) -> Tensor:
        return _ops.swapaxes(self, axis1, axis2)

    @property
    def T(self) -> Tensor:  # noqa: N802
        return _ops.permute(self, None)

    @property
    def mT(self) -> Tensor:  # noqa: N802
        return _ops.swapaxes(self, -1, -2)

    def unsqueeze(self, axis: int) -> Tensor:
        return _ops.unsqueeze(self, axis)

    def squeeze(self, axis: int | None = None) -> Tensor:
        return _ops.squeeze(self, axis)

    def split(self, split_size_or_sections: Any, axis: int | None = None, *, dim: int | None = None) -> tuple:
        return _ops.split(self, split_size_or_sections, axis, dim=dim)

    def broadcast_to(self, shape: Sequence[int]) -> Tensor:
        return _ops.broadcast_to(self, shape)

    expand = broadcast_to

    def matmul(self, other: Any) -> Tensor:
        return self @ other

    def __iter__(self):
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self.data)))


# -- constructors -------------------------------------------------------------------------------------

def tensor(data: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """A new tensor holding a copy of `data`; Python floats become float32 unless `dtype` says otherwise.

    >>> import chainrule as cr
    >>> cr.tensor([[1, 2], [3, 4]]).dtype
    dtype('int64')
    >>> cr.tensor([0.5], dtype="float64", requires_grad=True).requires_grad
    True
    """
    array = _as_array(data, dtype)
    array = array.copy() if device is None else _on(array, device, copy=True)
    return Tensor(array, requires_grad=requires_grad)


def from_numpy(array: np.ndarray, requires_grad: bool = False) -> Tensor:
    """A tensor sharing the memory of a NumPy array (its dtype kept).

    >>> import numpy as np, chainrule as cr
    >>> cr.from_numpy(np.zeros(3)).dtype
    dtype('float64')
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a NumPy array, got {type(array).__name__}")
    return Tensor(array, requires_grad=requires_grad)


def unique_tensors(tensors: Iterable[Tensor]) -> tuple[list[Tensor], list[int]]:
    """Each tensor once, by identity, in first-seen order, and the positions where one was listed again.

    >>> a, b = zeros(1), zeros(1)
    >>> kept, repeats = unique_tensors([a, b, a])
    >>> len(kept), repeats
    (2, [2])
    """
    seen: set[int] = set()
    unique, repeats = [], []
    for position, t in enumerate(tensors):
        if id(t) in seen:
            repeats.append(position)
        else:
            seen.add(id(t))
            unique.append(t)
    return unique, repeats


def _shape_of(shape: tuple) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for size in shape:
        if not isinstance(size, (int, np.integer)) or size < 0:
            raise ValueError(f"a shape is a sequence of non-negative integers; got {shape!r}")
    return tuple(int(s) for s in shape)


def _on(array: np.ndarray, device: Any, copy: bool = False) -> Any:
    """`array` moved to `device` (None: where it is); a copy when `copy` even if it is there already."""
    if device is None:
        return array
    target = parse_device(device)
    if target.type == "cuda":
        cuda_backend(target.index)
    moved = to_device(array, target)
    return moved.copy() if copy and moved is array else moved


def _float_dtype(dtype: Any) -> np.dtype:
    resolved = resolve_dtype(dtype)
    return resolved if resolved is not None else _DEFAULT_FLOAT


def zeros(*shape: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """A tensor of zeros (float32 by default).

    >>> import chainrule as cr
    >>> cr.zeros(2, 3).shape
    (2, 3)
    """
    return Tensor(_on(np.zeros(_shape_of(shape), _float_dtype(dtype)), device), requires_grad=requires_grad)


def ones(*shape: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """A tensor of ones (float32 by default).

    >>> import chainrule as cr
    >>> cr.ones(2).tolist()
    [1.0, 1.0]
    """
    return Tensor(_on(np.ones(_shape_of(shape), _float_dtype(dtype)), device), requires_grad=requires_grad)


def full(shape: Sequence[int], fill_value: float, dtype: Any = None, requires_grad: bool = False,
         device: Any = None) -> Tensor:
    """A tensor filled with one value.

    >>> import chainrule as cr
    >>> cr.full((2,), 7.0).tolist()
    [7.0, 7.0]
    """
    return Tensor(_on(np.full(_shape_of((shape,)), fill_value, _float_dtype(dtype)), device),
                  requires_grad=requires_grad)


def zeros_like(other: Tensor, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """Zeros with the shape (and dtype, unless given) of `other`.

    >>> import chainrule as cr
    >>> cr.zeros_like(cr.ones(3)).tolist()
    [0.0, 0.0, 0.0]
    """
    array = np.zeros(other.shape, resolve_dtype(dtype) or other.dtype)
    return Tensor(_on(array, other.device if device is None else device), requires_grad=requires_grad)


def ones_like(other: Tensor, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """Ones with the shape (and dtype, unless given) of `other`.

    >>> import chainrule as cr
    >>> cr.ones_like(cr.zeros(2)).tolist()
    [1.0, 1.0]
    """
    array = np.ones(other.shape, resolve_dtype(dtype) or other.dtype)
    return Tensor(_on(array, other.device if device is None else device), requires_grad=requires_grad)


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None,
           requires_grad: bool = False, device: Any = None) -> Tensor:
    """Evenly spaced values in [start, stop); integers give int64, as in PyTorch.

    >>> import chainrule as cr
    >>> cr.arange(3).tolist()
    [0, 1, 2]
    """
    values = np.arange(start, stop, step) if stop is not None else np.arange(start)
    if dtype is None and values.dtype == np.float64:
        values = values.astype(_DEFAULT_FLOAT)
    return Tensor(_on(np.asarray(values, resolve_dtype(dtype)), device), requires_grad=requires_grad)


class _RandomState:
    generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Seed chainrule's global random generator (used by randn, rand, dropout and initialisation).

    >>> import chainrule as cr
    >>> _ = cr.manual_seed(0); a = cr.randn(2)
    >>> _ = cr.manual_seed(0); bool((a == cr.randn(2)).all())
    True
    """
    _RandomState.generator = np.random.default_rng(seed)
    return _RandomState.generator


def default_generator() -> np.random.Generator:
    """The global random generator (NumPy `Generator`)."""
    return _RandomState.generator


def randn(*shape: Any, dtype: Any = None, requires_grad: bool = False,
          generator: np.random.Generator | None = None, device: Any = None) -> Tensor:
    """Standard normal samples (float32 by default).

    >>> import chainrule as cr
    >>> cr.randn(2, 3).shape
    (2, 3)
    """
    rng = generator or _RandomState.generator
    values = rng.standard_normal(_shape_of(shape)).astype(_float_dtype(dtype))
    return Tensor(_on(values, device), requires_grad=requires_grad)


def rand(*shape: Any, dtype: Any = None, requires_grad: bool = False,
          generator: np.random.Generator | None = None, device: Any = None) -> Tensor:
    """Uniform samples in [0, 1) (float32 by default).

    >>> import chainrule as cr
    >>> bool((cr.rand(5) < 1).all())
    True
    """
    rng = generator or _RandomState.generator
    values = rng.random(_shape_of(shape)).astype(_float_dtype(dtype))
    return Tensor(_on(values, device), requires_grad=requires_grad)


_FAST_OPERAND_TYPES = _FAST_OPERAND_TYPES | {Tensor}
_function._register_tensor_class(Tensor)
