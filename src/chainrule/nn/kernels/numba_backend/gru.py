"""The GRU: each step's gate arithmetic is one compiled pass, and the whole time loop is compiled where
NumPy's BLAS is reachable (`blas`)."""
from __future__ import annotations

import numpy as np
from numba import njit

from ..contract import GRUCache
from ..common import recurrent_weight_gradient, reusable_empty, time_order
from ..blas import gemm
from .base import (_back_product, _back_product_in_python, _back_product_operands, _copy_across, _keep_table,
                   _state_before, compiled_time_loops, tanh)


@njit(cache=True, error_model="numpy")
def _gru_step(from_hidden_t, from_hidden, bias_hh, projected_t, h_previous, keep, gates, hidden_n, h_t):
    """One forward step after its product: from_hidden_t holds W_hh h_{t-1}ᵀ [3H, B], copied across into
    from_hidden [B, 3H]. r, z = σ(p + W_h{r,z} h_{t-1} + b_h{r,z}) (as (1 + tanh(x/2)) / 2), hidden_n =
    W_hn h_{t-1} + b_hn (kept for backward), n = tanh(p_n + r ⊙ hidden_n), h_t = n + z ⊙ (h_{t-1} - n), or
    h_{t-1} carried through padding."""
    _copy_across(from_hidden_t, from_hidden)
    batch, width = gates.shape
    hidden = width // 3
    half = gates.dtype.type(0.5)
    rz_bias, n_bias = bias_hh[:2 * hidden], bias_hh[2 * hidden:]
    for b in range(batch):
        row, projected, product = gates[b], projected_t[b], from_hidden[b]
        rz_gates, r_gate, z_gate, n_gate = row[:2 * hidden], row[:hidden], row[hidden:2 * hidden], row[2 * hidden:]
        rz_projected, n_projected = projected[:2 * hidden], projected[2 * hidden:]
        rz_product, n_product = product[:2 * hidden], product[2 * hidden:]
        n_hidden = hidden_n[b]
        for j in range(2 * hidden):
            rz_gates[j] = half * (rz_projected[j] + rz_product[j] + rz_bias[j])
        for j in range(hidden):
            n_hidden[j] = n_product[j] + n_bias[j]
        # the activations in their own passes, as in the LSTM's step: LLVM vectorises them there
        for j in range(2 * hidden):
            rz_gates[j] = tanh(rz_gates[j])
        for j in range(2 * hidden):
            rz_gates[j] = half * rz_gates[j] + half
        for j in range(hidden):
            n_gate[j] = n_projected[j] + r_gate[j] * n_hidden[j]
        for j in range(hidden):
            n_gate[j] = tanh(n_gate[j])
        h_row, h_before = h_t[b], h_previous[b]
        if keep[b]:
            for j in range(hidden):
                h_row[j] = n_gate[j] + z_gate[j] * (h_before[j] - n_gate[j])
        else:
            for j in range(hidden):
                h_row[j] = h_before[j]


@njit(cache=True, error_model="numpy")
def _gru_forward_loop(projected, bias_hh, weight_hh, h0, keep, reverse, gates_all, hidden_n_all, h_states,
                      from_hidden_t, from_hidden):
    steps = gates_all.shape[0]
    h = h0
    for step in range(steps):
        t = steps - 1 - step if reverse else step
        gemm(weight_hh, h, from_hidden_t, True, False)   # W_hh h_{t-1}ᵀ
        _gru_step(from_hidden_t, from_hidden, bias_hh, projected[t], h, keep[t], gates_all[t], hidden_n_all[t],
                  h_states[t])
        h = h_states[t]


@njit(cache=True, error_model="numpy")
def _gru_step_back(d_h, d_output_t, gates, hidden_n, h_previous, keep, d_input, d_hidden, direct):
    """δ for the input side (d_input) and the hidden side (d_hidden); `direct` is dL/dh_{t-1} not via W_hh
    (z ⊙ dL/dh_t, or all of dL/dh_t through padding)."""
    batch, width = gates.shape
    hidden = width // 3
    one = gates.dtype.type(1.0)
    for b in range(batch):
        d_input_row, d_hidden_row, direct_row, d_h_row = d_input[b], d_hidden[b], direct[b], d_h[b]
        if not keep[b]:
            for j in range(width):
                d_input_row[j] = 0
                d_hidden_row[j] = 0
            for j in range(hidden):
                direct_row[j] = d_h_row[j]
            continue
        row, d_output_row, n_hidden, h_before = gates[b], d_output_t[b], hidden_n[b], h_previous[b]
        r_gate, z_gate, n_gate = row[:hidden], row[hidden:2 * hidden], row[2 * hidden:]
        d_input_r, d_input_z, d_input_n = d_input_row[:hidden], d_input_row[hidden:2 * hidden], d_input_row[2 * hidden:]
        d_hidden_r, d_hidden_z = d_hidden_row[:hidden], d_hidden_row[hidden:2 * hidden]
        d_hidden_n = d_hidden_row[2 * hidden:]
        for j in range(hidden):
            d = d_h_row[j] + d_output_row[j]
            r, z, n = r_gate[j], z_gate[j], n_gate[j]
            d_n = d * (one - z) * (one - n * n)
            d_z = d * (h_before[j] - n) * z * (one - z)
            d_r = d_n * n_hidden[j] * r * (one - r)
            d_input_r[j] = d_r
            d_hidden_r[j] = d_r
            d_input_z[j] = d_z
            d_hidden_z[j] = d_z
            d_input_n[j] = d_n
            d_hidden_n[j] = d_n * r
            direct_row[j] = d * z


@njit(cache=True, error_model="numpy")
def _gru_backward_loop(d_output, d_h, gates_all, hidden_n_all, h_states, h0, keep, reverse, d_input, d_hidden,
                       direct, weight_hh, weight_hh_t, d_h_t):
    steps = gates_all.shape[0]
    for step in range(steps):
        t = step if reverse else steps - 1 - step
        h_previous = _state_before(h_states, h0, t, reverse)
        _gru_step_back(d_h, d_output[t], gates_all[t], hidden_n_all[t], h_previous, keep[t], d_input[t],
                       d_hidden[t], direct)
        _back_product(d_hidden[t], weight_hh, weight_hh_t, d_h_t, d_h)   # dL/dh_{t-1} = δ_t W_hh + direct
        d_h += direct


def gru_forward(projected: np.ndarray, h0: np.ndarray, weight_hh: np.ndarray, bias_hh: np.ndarray | None,
                mask: np.ndarray | None, reverse: bool) -> tuple[np.ndarray, np.ndarray, GRUCache]:
    """r, z = σ(p_{r,z} + h_{t-1} W_h{r,z}ᵀ + b_h{r,z}); n = tanh(p_n + r ⊙ (h_{t-1} W_hnᵀ + b_hn)); h_t = n + z ⊙
    (h_{t-1} - n) (PyTorch's GRU).

    Shapes, dtypes and what is returned: `contract.KernelBackend.gru_forward`.
    """
    steps, batch, gate_width = projected.shape
    hidden = gate_width // 3
    dtype = projected.dtype
    projected = np.ascontiguousarray(projected)
    gates_all = reusable_empty(projected.shape, dtype)
    hidden_n_all = reusable_empty((steps, batch, hidden), dtype)
    h_states = reusable_empty((steps, batch, hidden), dtype)
    from_hidden_t, from_hidden = np.empty((gate_width, batch), dtype), np.empty((batch, gate_width), dtype)
    bias = np.zeros(gate_width, dtype) if bias_hh is None else np.ascontiguousarray(bias_hh, dtype=dtype)
    weight_hh = np.ascontiguousarray(weight_hh, dtype=dtype)
    h = np.ascontiguousarray(h0, dtype=dtype)
    keep = _keep_table(mask, steps, batch)
    if compiled_time_loops():
        _gru_forward_loop(projected, bias, weight_hh, h, keep, reverse, gates_all, hidden_n_all, h_states,
                          from_hidden_t, from_hidden)
    else:
        for t in time_order(steps, reverse):
            np.matmul(weight_hh, h.T, out=from_hidden_t)
            _gru_step(from_hidden_t, from_hidden, bias, projected[t], h, keep[t], gates_all[t], hidden_n_all[t],
                      h_states[t])
            h = h_states[t]
    last = 0 if reverse else steps - 1
    return h_states, h_states[last], GRUCache(gates_all, hidden_n_all, h_states, h0, mask, reverse, None)


def gru_backward(cache: GRUCache, weight_hh: np.ndarray, d_output: np.ndarray,
                 d_h_last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BPTT of `gru_forward`. d_output [T, B, H], d_h_last [B, H].

    Shapes, dtypes and what is returned: `contract.KernelBackend.gru_backward`.
    """
    d_output = np.ascontiguousarray(d_output)  # often a transposed view; compiled loops want rows
    gates_all, hidden_n_all, h_states, h0, mask, reverse, _ = cache
    steps, batch, gate_width = gates_all.shape
    dtype = gates_all.dtype
    d_input = reusable_empty(gates_all.shape, dtype)
    d_hidden = reusable_empty(gates_all.shape, dtype)
    direct = np.empty((batch, gate_width // 3), dtype)
    h_before = np.ascontiguousarray(h0, dtype=dtype)
    d_h = np.array(d_h_last, dtype=dtype, order="C", copy=True)
    keep = _keep_table(mask, steps, batch)
    weight_hh, weight_hh_t = _back_product_operands(weight_hh, dtype)
    d_h_t = np.empty((gate_width // 3, batch), dtype)
    if compiled_time_loops():
        _gru_backward_loop(d_output, d_h, gates_all, hidden_n_all, h_states, h_before, keep, reverse, d_input,
                           d_hidden, direct, weight_hh, weight_hh_t, d_h_t)
    else:
        for t in time_order(steps, not reverse):
            h_previous = _state_before(h_states, h_before, t, reverse)
            _gru_step_back(d_h, d_output[t], gates_all[t], hidden_n_all[t], h_previous, keep[t],
                           d_input[t], d_hidden[t], direct)
            _back_product_in_python(d_hidden[t], weight_hh, weight_hh_t, d_h_t, d_h)
            d_h += direct
    return (d_input, d_h, recurrent_weight_gradient(d_hidden, h_states, h_before, reverse),
            d_hidden.sum(axis=(0, 1)))
