"""Memory helpers shared by the engine and the kernels: C-ordered copies and a pool of reusable arrays.

Nothing here imports chainrule: the engine (`chainrule.autograd`) and the layers above it build on it.
"""
from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np

# Whether `sys.getrefcount` tells exactly who holds an array, so an array that no one else refers to can
# be reused or handed on without a copy. True for CPython up to 3.13 with the GIL; 3.14 may borrow
# references without counting them, and the free-threaded build counts per thread, so there the callers
# copy (or allocate) instead.
REFERENCES_COUNTED = (sys.implementation.name == "cpython" and sys.version_info < (3, 14)
                      and getattr(sys, "_is_gil_enabled", lambda: True)())


def c_ordered_copy(array: np.ndarray, dtype: Any = None, band: int = 16, out: np.ndarray | None = None) -> np.ndarray:
    """A C-ordered copy of `array`. An F-ordered matrix (a transposed view, or a product's transposed
    gradient) is copied a band of its columns at a time: np.array(array, order="C") reads whole columns and
    misses the cache on every element (BENCHMARKS.md, "Banded copies"). `out`, a C-ordered array of the same
    shape and dtype, receives the copy instead of a new array.

    Raises ValueError when `out` is not C-ordered or differs in shape or dtype.

    >>> c_ordered_copy(np.arange(6.0).reshape(2, 3).T).flags.c_contiguous
    True
    """
    dtype = array.dtype if dtype is None else np.dtype(dtype)
    if out is None and type(array) is not np.ndarray and hasattr(array, "astype"):  # a GPU's array: copied there
        return array.astype(dtype, order="C", copy=True)
    if out is not None and (out.shape != array.shape or out.dtype != dtype or not out.flags.c_contiguous):
        raise ValueError(f"c_ordered_copy: out must be C-ordered {dtype} of shape {array.shape}, got "
                         f"{out.dtype} of shape {out.shape}")
    if array.ndim != 2 or array.flags.c_contiguous or not array.flags.f_contiguous:
        if out is None:
            return np.array(array, dtype=dtype, order="C", copy=True)
        np.copyto(out, array)
        return out
    copy = np.empty(array.shape, dtype) if out is None else out
    for start in range(0, array.shape[1], band):
        copy[:, start:start + band] = array[:, start:start + band]
    return copy


class ArrayPool:
    """Large arrays kept for reuse by later calls once nothing else refers to them.

    A training step allocates the same few arrays of megabytes (gates, states, δ) every step. Fresh ones
    cost a page fault per 4 KiB when the C allocator hands them back to the kernel between steps
    (BENCHMARKS.md, "The array pool"). An array is taken again only when the pool holds its only
    reference (counted as for leaf gradients, see `chainrule.autograd.engine`), so one that a caller still
    uses, directly or through a view, is never overwritten.

    >>> pool = ArrayPool(minimum_bytes=0)
    >>> a = pool.empty((2, 3), np.float32)
    >>> pool.empty((2, 3), np.float32) is a      # `a` is still referred to here
    False
    >>> del a
    >>> len(pool.arrays), pool.empty((2, 3), np.float32).shape
    (2, (2, 3))
    """

    # references to a pooled array while `empty` looks at it: the list, the loop variable, getrefcount's argument
    _OWN_REFERENCES = 3

    def __init__(self, minimum_bytes: int = 1 << 20, capacity: int = 64) -> None:
        self.minimum_bytes, self.capacity = minimum_bytes, capacity
        self.arrays: list[np.ndarray] = []
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """np.empty(shape, dtype), reusing a pooled array that no one else refers to."""
        dtype = np.dtype(dtype)
        if not REFERENCES_COUNTED or int(np.prod(shape)) * dtype.itemsize < self.minimum_bytes:
            return np.empty(shape, dtype)
        with self._lock:
            for array in self.arrays:
                if (array.shape == shape and array.dtype == dtype
                        and sys.getrefcount(array) == self._OWN_REFERENCES):
                    return array
            array = np.empty(shape, dtype)
            self.arrays.append(array)
            if len(self.arrays) > self.capacity:  # forget the oldest arrays (freed once their users let go)
                del self.arrays[:len(self.arrays) - self.capacity]
            return array
