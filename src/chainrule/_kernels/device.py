"""Devices: where a tensor's array lives, and the one place that picks the array module for an array.

The engine's NumPy code runs unchanged on CuPy arrays (CuPy implements NumPy's ufunc and array-function
protocols), as Chainer's does; what NumPy and CuPy spell differently (creating arrays, `np.add.at` against
`cupyx.scatter_add`, copies between host and device) goes through `ArrayBackend` here. A NumPy array is on
"cpu" and costs one `type(array) is np.ndarray` test; nothing GPU-related is imported until a CUDA device is
asked for (`cuda_backend`). Nothing here imports any other part of chainrule.
"""
from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple

import numpy as np

GPU_EXTRA = "pip install 'chainrule[gpu]'   (CuPy for CUDA 12: cupy-cuda12x, and numba-cuda)"


class Device(NamedTuple):
    """A device: `type` "cpu" or "cuda", `index` the GPU's number (None for the CPU).

    >>> str(Device("cuda", 1)), str(CPU)
    ('cuda:1', 'cpu')
    """

    type: str
    index: int | None = None  # type: ignore[assignment]  # torch.device's name; shadows tuple.index

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"device(type={self.type!r}" + ("" if self.index is None else f", index={self.index}") + ")"


CPU = Device("cpu")
_SPEC = re.compile(r"(cpu|cuda)(?::(\d+))?")


def parse_device(spec: Any) -> Device:
    """A Device from "cpu", "cuda" (GPU 0), "cuda:N" or a Device.

    Raises TypeError for a spec that is not a str or Device, ValueError for an unknown name or "cpu:N".

    >>> parse_device("cuda"), parse_device("cuda:2"), parse_device(" CPU ")
    (device(type='cuda', index=0), device(type='cuda', index=2), device(type='cpu'))
    """
    if isinstance(spec, Device):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"a device is a string such as 'cpu', 'cuda' or 'cuda:1', got {type(spec).__name__}")
    match = _SPEC.fullmatch(spec.strip().lower())
    if match is None:
        raise ValueError(f"unknown device {spec!r}; expected 'cpu', 'cuda' or 'cuda:N' (N the GPU's number)")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        if index is not None and index != "0":
            raise ValueError(f"device {spec!r}: the CPU has no number; write 'cpu'")
        return CPU
    return Device("cuda", int(index or 0))


class ArrayBackend:
    """The array module of one kind of device and the operations it spells differently from NumPy.

    xp: the NumPy-like module (numpy, cupy, or a stand-in); array_type: its array class;
    device_index(array): the GPU number an array lives on; use(index): a context manager selecting a GPU;
    to_host(array): a NumPy copy; scatter_add(out, index, values): out[index] += values, repeats summed;
    cuda_kernels: whether numba.cuda kernels run on its arrays (CuPy's: yes; a stand-in's: under the simulator).
    """

    cuda_kernels = True

    def __init__(self, name: str, xp: Any, array_type: type, device_index: Callable[[Any], int],
                 use: Callable[[int], Any], to_host: Callable[[Any], np.ndarray],
                 scatter_add: Callable[[Any, Any, Any], None], device_count: Callable[[], int]) -> None:
        self.name, self.xp, self.array_type = name, xp, array_type
        self.device_index, self.use, self.to_host = device_index, use, to_host
        self.scatter_add, self.device_count = scatter_add, device_count

    def from_host(self, array: np.ndarray, index: int) -> Any:
        """A copy of a host array on GPU `index`."""
        with self.use(index):
            return self.xp.asarray(array)


class _NoContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


NUMPY = ArrayBackend("numpy", np, np.ndarray, lambda array: 0, lambda index: _NoContext(),
                     lambda array: array, lambda out, index, values: np.add.at(out, index, values), lambda: 1)
_cuda: dict[str, ArrayBackend | None] = {"backend": None}


def use_cuda_backend(backend: ArrayBackend | None) -> ArrayBackend | None:
    """Make `backend` the one "cuda" devices use (a stand-in in the tests; None: CuPy on next use). Returns
    the previous one."""
    previous, _cuda["backend"] = _cuda["backend"], backend
    return previous


def _cupy_backend() -> ArrayBackend:
    try:
        import cupy
        import cupyx
    except ImportError as error:
        raise RuntimeError(f"a CUDA device was asked for, but CuPy is not installed ({error}); install the GPU "
                           f"extra: {GPU_EXTRA}, or use device 'cpu'") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError: no driver, or no GPU visible
        raise RuntimeError(f"CuPy is installed, but it finds no CUDA GPU ({error}); check `nvidia-smi` and "
                           "CUDA_VISIBLE_DEVICES, or use device 'cpu'") from None
    if count == 0:
        raise RuntimeError("CuPy is installed, but it finds no CUDA GPU; check `nvidia-smi` and "
                           "CUDA_VISIBLE_DEVICES, or use device 'cpu'")
    return ArrayBackend("cupy", cupy, cupy.ndarray, lambda array: array.device.id, cupy.cuda.Device,
                        cupy.asnumpy, cupyx.scatter_add, lambda: count)


def cuda_backend(index: int | None = None) -> ArrayBackend:
    """The backend of "cuda" devices, loaded on first use. With `index`, checks that GPU exists.

    Raises RuntimeError when CuPy is missing, when it finds no GPU, or when GPU `index` is not there,
    saying which and how to install the extra.
    """
    backend = _cuda["backend"]
    if backend is None:
        backend = _cuda["backend"] = _cupy_backend()
    if index is not None and not 0 <= index < backend.device_count():
        raise RuntimeError(f"device cuda:{index} was asked for, but this machine has "
                           f"{backend.device_count()} CUDA GPU(s) (cuda:0 to cuda:{backend.device_count() - 1})")
    return backend


def backend_of(array: Any) -> ArrayBackend:
    """NUMPY for NumPy arrays, scalars and Python numbers; the CUDA backend for its arrays."""
    if type(array) is np.ndarray:
        return NUMPY
    backend = _cuda["backend"]
    if backend is not None and isinstance(array, backend.array_type):
        return backend
    return NUMPY


def array_module(*arrays: Any) -> Any:
    """The module to compute on these arrays with (numpy unless one lives on a GPU), as cupy.get_array_module.

    >>> array_module(np.zeros(2), 1.0) is np
    True
    """
    for array in arrays:
        if type(array) is not np.ndarray and backend_of(array) is not NUMPY:
            return backend_of(array).xp
    return np


def device_of(array: Any) -> Device:
    """The device an array lives on.

    >>> device_of(np.zeros(2))
    device(type='cpu')
    """
    backend = backend_of(array)
    return CPU if backend is NUMPY else Device("cuda", int(backend.device_index(array)))


def to_device(array: Any, device: Device) -> Any:
    """`array` on `device`: itself when already there, else a copy."""
    source = device_of(array)
    if source == device:
        return array
    host = backend_of(array).to_host(array) if source != CPU else np.asarray(array)
    if device == CPU:
        return host
    index = 0 if device.index is None else device.index
    return cuda_backend(index).from_host(host, index)


def to_host(array: Any) -> np.ndarray:
    """A NumPy array with `array`'s values: itself for a NumPy array, else a copy from the GPU."""
    return array if type(array) is np.ndarray else backend_of(array).to_host(array)


def check_same_device(arrays: Any) -> Device:
    """The one device of `arrays` (NumPy 0-d arrays and scalars go anywhere, as PyTorch's CPU scalars do).

    Raises RuntimeError naming two devices when the arrays live on more than one.
    """
    found: Device | None = None
    for array in arrays:
        if (not hasattr(array, "shape") or isinstance(array, np.generic)
                or (type(array) is np.ndarray and array.ndim == 0)):
            continue
        device = device_of(array)
        if found is None:
            found = device
        elif device != found:
            first, second = (found, device) if found != CPU else (device, found)
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                               f"{first} and {second}! (move them with .to(device) first)")
    return CPU if found is None else found


def empty_like_device(reference: Any, shape: tuple[int, ...], dtype: Any, fill: float | None = 0) -> Any:
    """zeros (or `fill`, or uninitialised for None) of `shape` on `reference`'s device."""
    backend = backend_of(reference)
    if backend is NUMPY:
        return np.empty(shape, dtype) if fill is None else np.full(shape, fill, dtype)
    with backend.use(backend.device_index(reference)):
        return backend.xp.empty(shape, dtype) if fill is None else backend.xp.full(shape, fill, dtype)


def scatter_add(out: Any, index: Any, values: Any) -> None:
    """out[index] += values with repeated indices summed (np.add.at; cupyx.scatter_add on a GPU)."""
    backend_of(out).scatter_add(out, index, values)


def max_or(x: Any, axis: Any, keepdims: bool, initial: float) -> Any:
    """np.max(x, axis, keepdims=keepdims, initial=initial): the max, or `initial` over no elements. CuPy's max
    has no `initial`: there it is the max joined with `initial` (NaN still propagates), or `initial` filled in."""
    if type(x) is np.ndarray:
        return np.max(x, axis=axis, keepdims=keepdims, initial=initial)
    xp = backend_of(x).xp
    if x.size == 0:  # the reduced shape, from an array of x's shape that holds no memory
        shape = np.max(np.zeros(x.shape, np.int8), axis=axis, keepdims=keepdims, initial=0).shape
        return xp.full(shape, initial, x.dtype)
    return xp.maximum(xp.max(x, axis=axis, keepdims=keepdims), x.dtype.type(initial))
