"""A stand-in "cuda" device for the tests: NumPy arrays of a subclass that remembers its GPU number.

It is registered through the one place the engine asks about devices (`chainrule._kernels.device`), as
CuPy is on a GPU machine, so the device plumbing (moving tensors, modules and optimizer state, mixed-device
errors, host copies for checkpoints) runs in CI. It is faithful where it matters for that: an array made
by NumPy's constructors (np.zeros, np.asarray, ...) is a plain ndarray, i.e. on the CPU, so a code path
that leaves the device shows up as a mixed-device error or a CPU result; what it cannot show is CuPy's own
refusals (np.asarray of a CuPy array raises, here it silently makes a CPU array).
"""
from __future__ import annotations

import contextlib
import os
import numpy as np

from chainrule._kernels import device

GPUS = 2


class FakeCudaArray(np.ndarray):
    """An array on stand-in GPU `gpu`; results of ufuncs and slicing stay on the GPU of their first input."""

    gpu = 0

    def __array_finalize__(self, obj):
        self.gpu = getattr(obj, "gpu", _current["gpu"])

    def __getitem__(self, index):
        # as CuPy: an element is a 0-d device array, not a host scalar
        item = super().__getitem__(index)
        return _rewrap(item, self.gpu) if isinstance(item, np.generic) else item

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # as CuPy: host arrays (even 0-d ones) are refused as operands, and so are another GPU's arrays
        outs = kwargs.get("out") or ()
        for operand in (*inputs, *outs):
            if type(operand) is np.ndarray:
                raise TypeError(f"Unsupported type {type(operand)} (the stand-in GPU, as CuPy, refuses host "
                                f"arrays: move them to the device first)")
            if isinstance(operand, FakeCudaArray) and operand.gpu != self.gpu:
                raise ValueError(f"array on stand-in GPU {operand.gpu} used with one on GPU {self.gpu}")
        plain = [a.view(np.ndarray) if isinstance(a, FakeCudaArray) else a for a in inputs]
        if outs:
            kwargs["out"] = tuple(o.view(np.ndarray) for o in outs)
        result = getattr(ufunc, method)(*plain, **kwargs)
        if outs:
            return outs[0] if len(outs) == 1 else outs
        return _rewrap(result, self.gpu)

    def __array_function__(self, func, types, args, kwargs):
        if func in (np.max, np.amax, np.min, np.amin) and "initial" in kwargs:
            raise TypeError(f"{func.__name__}() got an unexpected keyword argument 'initial' (as CuPy's)")
        # as CuPy: a NumPy function given a device array (np.concatenate, np.zeros_like, ...) computes there
        return _rewrap(super().__array_function__(func, types, args, kwargs), self.gpu)


def _rewrap(result, gpu):
    if isinstance(result, np.generic):   # CuPy's reductions give 0-d device arrays, not host scalars
        result = np.asarray(result)
    if type(result) is np.ndarray:
        result = result.view(FakeCudaArray)
        result.gpu = gpu
    elif isinstance(result, (tuple, list)):
        result = type(result)(_rewrap(item, gpu) for item in result)
    return result


_current = {"gpu": 0}


@contextlib.contextmanager
def use(index):
    previous, _current["gpu"] = _current["gpu"], index
    try:
        yield
    finally:
        _current["gpu"] = previous


def _on_device(array):
    out = np.array(array, copy=True).view(FakeCudaArray)
    out.gpu = _current["gpu"]
    return out


class _ArrayModule:
    """The stand-in's `cupy`: NumPy's functions, their array results placed on the current stand-in GPU."""

    ndarray = FakeCudaArray

    def __getattr__(self, name):
        function = getattr(np, name)
        if not callable(function) or isinstance(function, type):
            return function

        def on_device(*args, **kwargs):
            return _rewrap(function(*args, **kwargs), _current["gpu"])
        return on_device

    def asarray(self, array, dtype=None):
        return _on_device(np.asarray(array, dtype))


xp = _ArrayModule()


def _to_host(array):
    return np.array(array, copy=True).view(np.ndarray)


BACKEND = device.ArrayBackend("fake-cuda", xp, FakeCudaArray, lambda a: a.gpu, use, _to_host,
                              lambda out, index, values: np.add.at(out, index, values), lambda: GPUS)
BACKEND.cuda_kernels = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"   # numba.cuda runs them only there


@contextlib.contextmanager
def fake_cuda():
    """Register the stand-in as the "cuda" backend for the duration."""
    previous = device.use_cuda_backend(BACKEND)
    try:
        yield BACKEND
    finally:
        device.use_cuda_backend(previous)
