"""The fused recurrent kernels, in two backends: plain NumPy, or numba-compiled elementwise steps.

Both run the same algorithm (the time loop in Python, one BLAS product per step through NumPy); the numba
backend does each step's gate arithmetic in one compiled pass instead of a dozen NumPy calls. Which one
runs is `chainrule.backend.backend_name()`. Tests check both against the reference layers.
"""
from __future__ import annotations

from types import ModuleType

import numpy as np

from ...backward import c_ordered_copy
from ...backend import backend_name, numba_available, use_backend  # noqa: F401  (re-exported)


def time_order(steps: int, reverse: bool) -> range:
    return range(steps - 1, -1, -1) if reverse else range(steps)


def previous_states(states: np.ndarray, initial: np.ndarray, reverse: bool) -> np.ndarray:
    """The state each step started from: [h0, h_0, ..., h_{T-2}] (or the mirror image when reversed)."""
    previous = np.empty_like(states)
    if reverse:
        previous[:-1], previous[-1] = states[1:], initial
    else:
        previous[1:], previous[0] = states[:-1], initial
    return previous


def matmul_sum(deltas: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """Σ_t δ_tᵀ x_t over all steps and sequences as one product: [G, T·B] @ [T·B, H]."""
    steps, batch, _ = deltas.shape
    return deltas.reshape(steps * batch, -1).T @ inputs.reshape(steps * batch, -1)


def back_product(delta: np.ndarray, weight_hh_t: np.ndarray) -> np.ndarray:
    """δ_t W_hh for a backward step, computed as (W_hhᵀ δ_tᵀ)ᵀ with the W_hhᵀ the forward made: for these
    skinny shapes OpenBLAS runs it 10-30% faster than δ_t @ W_hh (H = 512: 419 against 469 µs)."""
    return np.ascontiguousarray((weight_hh_t @ delta.T).T)


def lstm_arrays(shape: tuple[int, int, int], dtype: np.dtype) -> tuple[np.ndarray, ...]:
    """The LSTM forward's per-step storage: activated gates [T, B, 4H], then h_t, c_t and tanh(c_t) [T, B, H]."""
    steps, batch, gate_width = shape
    state_shape = (steps, batch, gate_width // 4)
    return (np.empty(shape, dtype), *(np.empty(state_shape, dtype) for _ in range(3)))


def right_operand(weight_hh: np.ndarray, steps: int) -> np.ndarray:
    """W_hhᵀ for the per-step products: a contiguous copy multiplies ~30% faster, which repays the copy
    over a sequence but not for one or two steps (sampling)."""
    return c_ordered_copy(weight_hh.T) if steps > 4 else weight_hh.T


def backend() -> ModuleType:
    """The module of fused kernels for the backend in use (see `chainrule.backend`)."""
    if backend_name() == "numba":
        from . import numba_backend as module
    else:
        from . import numpy_backend as module
    return module
