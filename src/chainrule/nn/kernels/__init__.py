"""The fused recurrent kernels, in two backends: plain NumPy, or numba-compiled elementwise steps.

Both run the same algorithm (a time loop with one BLAS product per step); the numba backend does each
step's gate arithmetic in one compiled pass instead of a dozen NumPy calls, and runs the LSTM's and GRU's
whole time loops compiled where it can call NumPy's BLAS itself (`blas`). Which backend runs is
`chainrule.backend.backend_name()`. Tests check both, and the numba one with its loops in Python too,
against the reference layers.
"""
from __future__ import annotations

import sys
import threading
from types import ModuleType

import numpy as np

from ...backward import _REFERENCES_COUNTED, c_ordered_copy
from ...backend import backend_name, numba_available, use_backend  # noqa: F401  (re-exported)


class ArrayPool:
    """Large arrays kept for reuse by later calls once nothing else refers to them.

    A training step allocates the same few arrays of megabytes (gates, states, δ) every step. Fresh ones
    cost a page fault per 4 KiB when the C allocator hands them back to the kernel between steps (2,500
    faults, ~12 ms of a 2×512 LSTM step here). An array is taken again only when the pool holds its only
    reference (counted as for leaf gradients, see `backward._only_engine_holds`), so one that a caller still
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
        if not _REFERENCES_COUNTED or int(np.prod(shape)) * dtype.itemsize < self.minimum_bytes:
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


_POOL = ArrayPool()


def reusable_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised array for a kernel's storage, from the module's ArrayPool."""
    return _POOL.empty(tuple(shape), dtype)


def time_order(steps: int, reverse: bool) -> range:
    return range(steps - 1, -1, -1) if reverse else range(steps)


def previous_states(states: np.ndarray, initial: np.ndarray, reverse: bool) -> np.ndarray:
    """The state each step started from: [h0, h_0, ..., h_{T-2}] (or the mirror image when reversed)."""
    previous = reusable_empty(states.shape, states.dtype)
    if reverse:
        previous[:-1], previous[-1] = states[1:], initial
    else:
        previous[1:], previous[0] = states[:-1], initial
    return previous


def matmul_sum(deltas: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """Σ_t δ_tᵀ x_t over all steps and sequences as one product: [G, T·B] @ [T·B, H]."""
    steps, batch, width = deltas.shape   # widths spelt out: a -1 cannot be inferred when T·B = 0
    return deltas.reshape(steps * batch, width).T @ inputs.reshape(steps * batch, inputs.shape[-1])


def recurrent_weight_gradient(deltas: np.ndarray, states: np.ndarray, initial: np.ndarray,
                              reverse: bool) -> np.ndarray:
    """dW_hh = Σ_t δ_tᵀ h_{t-1}, as matmul_sum(deltas, previous_states(...)) without the shifted copy of the
    states: one product over the steps whose h_{t-1} is a state, plus δᵀ h0 for the first step."""
    if states.shape[0] == 1:
        return deltas[0].T @ initial
    if reverse:   # step t started from h_{t+1}; the last step from the initial state
        later, first, previous = deltas[:-1], deltas[-1], states[1:]
    else:
        later, first, previous = deltas[1:], deltas[0], states[:-1]
    gradient = matmul_sum(later, previous)
    gradient += first.T @ initial
    return gradient


def back_product(delta: np.ndarray, weight_hh_t: np.ndarray) -> np.ndarray:
    """δ_t W_hh for a backward step, computed as (W_hhᵀ δ_tᵀ)ᵀ with the W_hhᵀ the forward made: for these
    skinny shapes OpenBLAS runs it 10-30% faster than δ_t @ W_hh on hot data (H = 512: 419 against 469 µs).
    (The numba LSTM and GRU do the same product from H = 512, into one [H, B] buffer copied across; below
    that they compute δ_t W_hh plainly: `numba_backend._back_product`.)"""
    return np.ascontiguousarray((weight_hh_t @ delta.T).T)


def lstm_arrays(shape: tuple[int, int, int], dtype: np.dtype) -> tuple[np.ndarray, ...]:
    """The LSTM forward's per-step storage: activated gates [T, B, 4H], then h_t, c_t and tanh(c_t) [T, B, H]."""
    steps, batch, gate_width = shape
    state_shape = (steps, batch, gate_width // 4)
    return (reusable_empty(shape, dtype), *(reusable_empty(state_shape, dtype) for _ in range(3)))


def right_operand(weight_hh: np.ndarray, steps: int) -> np.ndarray:
    """W_hhᵀ for the per-step products: a contiguous copy multiplies ~30% faster, which repays the copy
    over a sequence but not for one or two steps (sampling)."""
    if steps <= 4:
        return weight_hh.T
    return c_ordered_copy(weight_hh.T, out=reusable_empty(weight_hh.shape[::-1], weight_hh.dtype))


def backend() -> ModuleType:
    """The module of fused kernels for the backend in use (see `chainrule.backend`)."""
    if backend_name() == "numba":
        from . import numba_backend as module
    else:
        from . import numpy_backend as module
    return module
