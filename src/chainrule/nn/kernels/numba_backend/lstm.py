"""The LSTM: each step's gate arithmetic is one compiled pass, and the whole time loop is compiled where
NumPy's BLAS is reachable (`blas`)."""
from __future__ import annotations

import numpy as np
from numba import njit

from ..contract import LSTMCache
from ..common import lstm_arrays, recurrent_weight_gradient, reusable_empty, time_order
from ..blas import gemm
from .base import (_back_product, _back_product_in_python, _back_product_operands, _copy_across, _keep_table,
                   _state_before, compiled_time_loops, tanh)


@njit(cache=True, error_model="numpy")
def _lstm_step(from_hidden, table, rows, bias, c_previous, h_previous, keep, scratch, gates, c_t, tanh_c_t, h_t):
    """One forward step after its product: from_hidden holds W_hh h_{t-1}ᵀ [4H, B]; sequence b's gates are
    its column b + p_t (row rows[b] of table) + the bias, activated (σ(x) = (1 + tanh(x/2)) / 2 for i, f, o);
    then c_t = f ⊙ c_{t-1} + i ⊙ g, h_t = o ⊙ tanh(c_t), or the previous state carried through padding.
    The gates are worked out in `scratch` [B, 4H], the same array every step, and written to `gates` row by
    row at the end: the copy across writes one cache line in each of B rows 16H bytes apart, which into a
    step's fresh gate storage waits for every line to come from memory
    (BENCHMARKS.md, "The LSTM step's scratch row")."""
    _copy_across(from_hidden, scratch)
    batch, width = gates.shape
    hidden = width // 4
    half = gates.dtype.type(0.5)
    if_bias, g_bias, o_bias = bias[:2 * hidden], bias[2 * hidden:3 * hidden], bias[3 * hidden:]
    for b in range(batch):
        # one 1-D slice per gate: LLVM vectorises it, not the row indexed at j, 2H + j, 3H + j
        row, projected = scratch[b], table[rows[b]]
        if_gates, i_gate, f_gate = row[:2 * hidden], row[:hidden], row[hidden:2 * hidden]
        g_gate, o_gate = row[2 * hidden:3 * hidden], row[3 * hidden:]
        if_projected = projected[:2 * hidden]
        g_projected, o_projected = projected[2 * hidden:3 * hidden], projected[3 * hidden:]
        for j in range(2 * hidden):
            if_gates[j] = half * (if_gates[j] + if_projected[j] + if_bias[j])
        for j in range(hidden):
            g_gate[j] = g_gate[j] + g_projected[j] + g_bias[j]
        for j in range(hidden):
            o_gate[j] = half * (o_gate[j] + o_projected[j] + o_bias[j])
        # the activations in their own passes: a loop that also adds stays scalar
        for j in range(width):
            row[j] = tanh(row[j])
        for j in range(2 * hidden):
            if_gates[j] = half * if_gates[j] + half
        for j in range(hidden):
            o_gate[j] = half * o_gate[j] + half
        c_row, tanh_c_row, h_row = c_t[b], tanh_c_t[b], h_t[b]
        c_before, h_before = c_previous[b], h_previous[b]
        if keep[b]:
            for j in range(hidden):
                c_row[j] = f_gate[j] * c_before[j] + i_gate[j] * g_gate[j]
        else:
            for j in range(hidden):
                c_row[j] = c_before[j]
        for j in range(hidden):
            tanh_c_row[j] = tanh(c_row[j])
        if keep[b]:
            for j in range(hidden):
                h_row[j] = o_gate[j] * tanh_c_row[j]
        else:
            for j in range(hidden):
                h_row[j] = h_before[j]
        gates_row = gates[b]
        for j in range(width):
            gates_row[j] = row[j]


@njit(cache=True, error_model="numpy")
def _lstm_forward_loop(table, rows, bias, weight_hh, h0, c0, keep, reverse, gates_all, h_states, c_states,
                       tanh_c_all, from_hidden, scratch):
    steps = gates_all.shape[0]
    h, c = h0, c0
    for step in range(steps):
        t = steps - 1 - step if reverse else step
        gemm(weight_hh, h, from_hidden, True, False)   # W_hh h_{t-1}ᵀ
        _lstm_step(from_hidden, table, rows[t], bias, c, h, keep[t], scratch, gates_all[t], c_states[t],
                   tanh_c_all[t], h_states[t])
        h, c = h_states[t], c_states[t]


@njit(cache=True, error_model="numpy")
def _lstm_step_back(d_h, d_output_t, d_c, gates, tanh_c, c_previous, keep, carried):
    """From dL/dh_t (d_h + output's) and dL/dc_t (d_c): δ for the 4 gates, written over the gates (each
    element is read before it is written, and nothing reads the gates afterwards); d_c becomes
    dL/dc_{t-1}. Reading and writing the same slices lets LLVM vectorise: with δ in another array its
    runtime overlap check fell back to scalar code whenever the two were one
    (BENCHMARKS.md, "δ written over the gates")."""
    batch, width = gates.shape
    hidden = width // 4
    one = gates.dtype.type(1.0)
    for b in range(batch):
        row = gates[b]
        if not keep[b]:
            for j in range(width):
                row[j] = 0
            for j in range(hidden):
                carried[b, j] = d_h[b, j]
            continue
        i_gate, f_gate = row[:hidden], row[hidden:2 * hidden]
        g_gate, o_gate = row[2 * hidden:3 * hidden], row[3 * hidden:]
        d_h_row, d_output_row, d_c_row = d_h[b], d_output_t[b], d_c[b]
        tanh_c_row, c_before, carried_row = tanh_c[b], c_previous[b], carried[b]
        for j in range(hidden):
            dh = d_h_row[j] + d_output_row[j]
            i, f, g, o = i_gate[j], f_gate[j], g_gate[j], o_gate[j]
            tc = tanh_c_row[j]
            dc = d_c_row[j] + dh * o * (one - tc * tc)   # dL/dc_t += dL/dh_t ⊙ o ⊙ (1 - tanh²(c_t))
            i_gate[j] = dc * g * i * (one - i)
            f_gate[j] = dc * c_before[j] * f * (one - f)
            g_gate[j] = dc * i * (one - g * g)
            o_gate[j] = dh * tc * o * (one - o)
            d_c_row[j] = dc * f
            carried_row[j] = 0


@njit(cache=True, error_model="numpy")
def _lstm_backward_loop(d_output, d_h, d_c, deltas, tanh_c_all, c_states, c0, keep, reverse, masked, carried,
                        weight_hh, weight_hh_t, d_h_t):
    """deltas holds the activated gates on entry and δ on return; weight_hh_t is W_hhᵀ [H, 4H] when the step
    product is to be computed transposed (see `_back_product`), else unused."""
    steps = deltas.shape[0]
    for step in range(steps):
        t = step if reverse else steps - 1 - step
        c_previous = _state_before(c_states, c0, t, reverse)
        _lstm_step_back(d_h, d_output[t], d_c, deltas[t], tanh_c_all[t], c_previous, keep[t], carried)
        _back_product(deltas[t], weight_hh, weight_hh_t, d_h_t, d_h)   # dL/dh_{t-1} = δ_t W_hh
        if masked:
            d_h += carried   # (+ what padding carries)


def lstm_forward(projected: np.ndarray, h0: np.ndarray, c0: np.ndarray, weight_hh: np.ndarray,
                 bias: np.ndarray | None, mask: np.ndarray | None, reverse: bool,
                 tokens: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, LSTMCache]:
    """[i, f, g, o] = [σ, σ, tanh, σ](p_t + bias + h_{t-1} W_hhᵀ); c_t = f ⊙ c_{t-1} + i ⊙ g; h_t = o ⊙ tanh(c_t).

    Shapes, dtypes and what is returned: `contract.KernelBackend.lstm_forward`.
    """
    shape = projected.shape if tokens is None else tokens.shape + projected.shape[1:]
    steps, batch, gate_width = shape
    dtype = projected.dtype
    gates_all, h_states, c_states, tanh_c_all = lstm_arrays(shape, dtype)
    # p_t for sequence b: row t·B + b of the projections as [T·B, 4H], or row tokens[t, b] of the table
    if tokens is None:
        # the width spelt out: a -1 cannot be inferred when T·B = 0
        table, rows = projected.reshape(steps * batch, gate_width), np.arange(steps * batch).reshape(steps, batch)
    else:
        table, rows = projected, tokens
    bias = np.zeros(gate_width, dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)
    weight_hh = np.ascontiguousarray(weight_hh, dtype=dtype)
    from_hidden, scratch = np.empty((gate_width, batch), dtype), np.empty((batch, gate_width), dtype)
    h, c = np.ascontiguousarray(h0, dtype=dtype), np.ascontiguousarray(c0, dtype=dtype)
    keep = _keep_table(mask, steps, batch)
    if compiled_time_loops():
        _lstm_forward_loop(table, rows, bias, weight_hh, h, c, keep, reverse, gates_all, h_states, c_states,
                           tanh_c_all, from_hidden, scratch)
    else:
        for t in time_order(steps, reverse):
            np.matmul(weight_hh, h.T, out=from_hidden)
            _lstm_step(from_hidden, table, rows[t], bias, c, h, keep[t], scratch, gates_all[t], c_states[t],
                       tanh_c_all[t], h_states[t])
            h, c = h_states[t], c_states[t]
    last = 0 if reverse else steps - 1
    return (h_states, h_states[last], c_states[last],
            LSTMCache(gates_all, h_states, c_states, tanh_c_all, h0, c0, mask, reverse, None))


def lstm_backward(cache: LSTMCache, weight_hh: np.ndarray, d_output: np.ndarray, d_h_last: np.ndarray,
                  d_c_last: np.ndarray,
                  overwrite_cache: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BPTT of `lstm_forward`. d_output [T, B, H], d_h_last and d_c_last [B, H].

    Shapes, dtypes and what is returned: `contract.KernelBackend.lstm_backward`.
    """
    d_output = np.ascontiguousarray(d_output)  # often a transposed view; compiled loops want rows
    gates_all, h_states, c_states, tanh_c_all, h0, c0, mask, reverse, _ = cache
    steps, batch, gate_width = gates_all.shape
    dtype = gates_all.dtype
    # step t's δ replaces its gates, which nothing reads afterwards; to keep them, δ goes to a copy
    deltas = gates_all
    if not overwrite_cache:
        deltas = reusable_empty(gates_all.shape, dtype)
        np.copyto(deltas, gates_all)
    carried = np.empty((batch, gate_width // 4), dtype)
    d_h = np.array(d_h_last, dtype=dtype, order="C", copy=True)
    d_c = np.array(d_c_last, dtype=dtype, order="C", copy=True)
    c_before = np.ascontiguousarray(c0, dtype=dtype)
    keep = _keep_table(mask, steps, batch)
    weight_hh, weight_hh_t = _back_product_operands(weight_hh, dtype)
    d_h_t = np.empty((gate_width // 4, batch), dtype)
    if compiled_time_loops():
        _lstm_backward_loop(d_output, d_h, d_c, deltas, tanh_c_all, c_states, c_before, keep, reverse,
                            mask is not None, carried, weight_hh, weight_hh_t, d_h_t)
    else:
        for t in time_order(steps, not reverse):
            c_previous = _state_before(c_states, c_before, t, reverse)
            _lstm_step_back(d_h, d_output[t], d_c, deltas[t], tanh_c_all[t], c_previous, keep[t], carried)
            _back_product_in_python(deltas[t], weight_hh, weight_hh_t, d_h_t, d_h)
            if mask is not None:
                d_h += carried
    return deltas, d_h, d_c, recurrent_weight_gradient(deltas, h_states, h0, reverse)
