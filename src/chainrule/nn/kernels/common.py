"""What the NumPy and numba kernel backends share: the storage pool, the time order, the products over all
steps (dW_hh = Σ_t δ_tᵀ h_{t-1}) and the per-step back product δ_t W_hh.
"""
from __future__ import annotations

import numpy as np

from ..._kernels.memory import ArrayPool, c_ordered_copy

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
    """δ_t W_hh [B, H] for a backward step, computed as (W_hhᵀ δ_tᵀ)ᵀ with the W_hhᵀ [H, G] the forward made:
    for these skinny shapes BLAS runs that form faster (BENCHMARKS.md, "The backward step product"). The
    numba LSTM and GRU choose between the two forms by H: `numba_backend.base._back_product`."""
    return np.ascontiguousarray((weight_hh_t @ delta.T).T)


def lstm_arrays(shape: tuple[int, int, int], dtype: np.dtype) -> tuple[np.ndarray, ...]:
    """The LSTM forward's per-step storage: activated gates [T, B, 4H], then h_t, c_t and tanh(c_t) [T, B, H]."""
    steps, batch, gate_width = shape
    state_shape = (steps, batch, gate_width // 4)
    return (reusable_empty(shape, dtype), *(reusable_empty(state_shape, dtype) for _ in range(3)))


def right_operand(weight_hh: np.ndarray, steps: int) -> np.ndarray:
    """W_hhᵀ for the per-step products: a contiguous copy multiplies faster, which repays the copy over a
    sequence but not for a few steps (sampling), which take the view (BENCHMARKS.md, "A contiguous W_hhᵀ")."""
    if steps <= 4:
        return weight_hh.T
    return c_ordered_copy(weight_hh.T, out=reusable_empty(weight_hh.shape[::-1], weight_hh.dtype))
