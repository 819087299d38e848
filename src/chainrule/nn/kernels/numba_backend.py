"""Fused recurrent kernels with each step's gate arithmetic compiled by numba.

numba fuses a step's elementwise arithmetic, which NumPy does in a dozen calls with temporaries, into one
compiled pass. For the LSTM and the GRU the whole time loop is compiled as well, its per-step products
calling NumPy's own BLAS (`blas.gemm`); where that BLAS cannot be reached the loop stays in Python with
`np.matmul` around the same step kernels, as it does for the vanilla RNN (whose per-step products and
forward tanh go through NumPy). The backward has no transcendental functions left (the forward stored the
activations), so each of its steps is one compiled pass and one product, with no precomputed derivative
arrays.

Inside compiled loops tanh is `tanh` below: for float32 a rational approximation that LLVM vectorises
(numba's own tanh is a scalar libm call, about 30 times slower than NumPy's SIMD one); for float64 the
exact `math.tanh`, since float64 is the dtype of checking, not of speed.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from . import (back_product, blas, lstm_arrays, numpy_backend,
               recurrent_weight_gradient, reusable_empty, time_order)
from .blas import gemm

_state = {"compiled_loops": blas.AVAILABLE}


def compiled_time_loops(enabled: bool | None = None) -> bool:
    """Whether the LSTM's and GRU's time loops run compiled (needs `blas.AVAILABLE`); pass a bool to switch
    (tests run both). Returns the setting in force.

    >>> previous = compiled_time_loops()
    >>> compiled_time_loops(False)
    False
    >>> compiled_time_loops(previous) == previous
    True
    """
    if enabled is not None:
        if enabled and not blas.AVAILABLE:
            raise RuntimeError("compiled time loops need NumPy's BLAS, which chainrule could not find")
        _state["compiled_loops"] = enabled
    return _state["compiled_loops"]


# -- tanh for compiled loops ------------------------------------------------------------------------------

# tanh(x) ≈ x P(u) / Q(u), u = (x / 9)², for |x| ≤ 9 (beyond, tanh rounds to ±1 in float32). Coefficients
# from benchmarks/tanh_approximation.py (a weighted least-squares fit of the relative error, refined to
# minimax by Lawson's iteration): relative error 6.6e-9 in exact arithmetic; evaluated in float32 with
# fused multiply-adds, at most 5 units in the last place from the correctly rounded tanh, 0.67-0.69 on
# average (without FMA: 6 and 0.76; np.tanh: 1 and 0.36), and faster than without them and than np.tanh
# (65K values: 21.2 against 25.2 µs for np.tanh; 32K: 10.3 against 12.2 µs without FMA).
_CLAMP = np.float32(9.0)
_ONE = np.float32(1.0)
_SCALE = np.float32(1.0 / 81.0)
_P0, _P1, _P2, _P3 = (np.float32(0.9999999934693155), np.float32(10.598054424791691),
                      np.float32(20.36510722245495), np.float32(5.927886030956076))
_P4, _P5, _P6 = np.float32(-0.8706329358215648), np.float32(0.1840294070975276), np.float32(-0.023973903900649147)
_Q1, _Q2, _Q3 = np.float32(37.59804940700151), np.float32(160.71308306767037), np.float32(135.31311208979884)


@njit(cache=True, error_model="numpy", fastmath={"contract"})   # fused multiply-adds: faster and closer
def _tanh_float32(x):
    # comparisons written so that NaN passes through (min/max would not)
    v = _CLAMP if x > _CLAMP else x  # noqa: FURB136
    v = -_CLAMP if v < -_CLAMP else v  # noqa: FURB136
    u = v * v * _SCALE
    y = v * ((((((_P6 * u + _P5) * u + _P4) * u + _P3) * u + _P2) * u + _P1) * u + _P0) / (
        ((_Q3 * u + _Q2) * u + _Q1) * u + _ONE)
    # the rounding can overshoot 1 by an ulp near the clamp
    y = _ONE if y > _ONE else y  # noqa: FURB136
    return -_ONE if y < -_ONE else y  # noqa: FURB136


def tanh(x: float) -> float:
    """tanh of a scalar inside compiled kernels: float32 by the approximation above, float64 exactly.

    >>> from numba import njit
    >>> compiled = njit(lambda x: tanh(x))
    >>> compiled(0.5) == math.tanh(0.5), abs(compiled(np.float32(0.5)) - math.tanh(0.5)) < 6e-8
    (True, True)
    """
    return math.tanh(x)


@overload(tanh)
def _tanh_overload(x):
    if x == types.float32:
        return lambda x: _tanh_float32(x)
    return lambda x: math.tanh(x)


def _keep_table(mask, steps, batch):
    """keep[t, b]: whether sequence b is real (not padding) at step t."""
    if mask is None:
        return np.ones((steps, batch), np.bool_)
    return np.ascontiguousarray(mask[:, :, 0])


# -- vanilla RNN ------------------------------------------------------------------------------------------

@njit(cache=True, error_model="numpy")
def _rnn_step_back(d_h, d_output_t, h_t, keep, use_tanh, delta, carried):
    """δ_t = (dL/dh_t) act'(·); what padding passes on is kept in `carried`."""
    batch, hidden = h_t.shape
    for b in range(batch):
        for j in range(hidden):
            if keep[b]:
                d = d_h[b, j] + d_output_t[b, j]
                h = h_t[b, j]
                delta[b, j] = d * (1.0 - h * h) if use_tanh else (0.0 if h <= 0 else d)   # NaN passes, as Relu
                carried[b, j] = 0.0
            else:
                delta[b, j] = 0.0
                carried[b, j] = d_h[b, j]


def rnn_forward(projected, h0, weight_hh, mask, reverse, nonlinearity):
    # a step is already three NumPy calls (product, add, tanh): nothing for numba to fuse
    return numpy_backend.rnn_forward(projected, h0, weight_hh, mask, reverse, nonlinearity)


def rnn_backward(cache, weight_hh, d_output, d_h_last):
    d_output = np.ascontiguousarray(d_output)  # often a transposed view; compiled loops want rows
    states, h0, mask, reverse, nonlinearity, weight_hh_t = cache
    steps, batch, hidden = states.shape
    deltas = reusable_empty(states.shape, states.dtype)
    carried = np.empty((batch, hidden), states.dtype)
    d_h = np.ascontiguousarray(d_h_last)
    keep = _keep_table(mask, steps, batch)
    for t in time_order(steps, not reverse):
        _rnn_step_back(d_h, d_output[t], states[t], keep[t], nonlinearity == "tanh", deltas[t], carried)
        d_h = back_product(deltas[t], weight_hh_t)   # dL/dh_{t-1} = δ_t W_hh
        if mask is not None:
            d_h += carried
    return deltas, d_h, recurrent_weight_gradient(deltas, states, h0, reverse)


# -- LSTM -------------------------------------------------------------------------------------------------

# Constants are cast to the arrays' dtype (half = x.dtype.type(0.5)) so float32 stays float32, and each
# branch on padding is taken once per row, so the inner loops vectorise.
#
# The forward's per-step product is computed transposed, as W_hh h_{t-1}ᵀ [4H, B] (the GRU's likewise,
# [3H, B]): OpenBLAS runs that shape much faster than h_{t-1} W_hhᵀ (B = 32, H = 256: 99 against 168 µs;
# B = 64, H = 512: 702 against 905 µs), and copying it back across in blocks costs less than that (a whole
# 64-step forward: 12.7 against 15.6 ms at H = 256, 70 against 76 ms at H = 512). The backward's δ_t W_hh
# is computed so only from H = 512 (`_back_product`).
#
# Each step's arithmetic after its product is one compiled call (`_lstm_step`, `_lstm_step_back`). With
# NumPy's BLAS reachable from compiled code (`blas.AVAILABLE`) the whole time loop is compiled too
# (`_lstm_forward_loop`, `_lstm_backward_loop`), which saves the Python work around each step: a 64-step
# forward at H = 64, B = 1 went from 0.355 to 0.095 ms, at H = 128, B = 32 from 5.3 to 4.8 ms.

_BLOCK = 16


@njit(cache=True, error_model="numpy")
def _copy_across(product_t, out):
    """out[b, j] = product_t[j, b], 16 columns of out at a time: each block reads a contiguous run."""
    width, batch = product_t.shape
    full = width - width % _BLOCK
    for j0 in range(0, full, _BLOCK):
        for b in range(batch):
            for j in range(j0, j0 + _BLOCK):
                out[b, j] = product_t[j, b]
    for b in range(batch):
        for j in range(full, width):
            out[b, j] = product_t[j, b]


@njit(cache=True, error_model="numpy")
def _lstm_step(from_hidden, table, rows, bias, c_previous, h_previous, keep, scratch, gates, c_t, tanh_c_t, h_t):
    """One forward step after its product: from_hidden holds W_hh h_{t-1}ᵀ [4H, B]; sequence b's gates are
    its column b + p_t (row rows[b] of table) + the bias, activated (σ(x) = (1 + tanh(x/2)) / 2 for i, f, o);
    then c_t = f ⊙ c_{t-1} + i ⊙ g, h_t = o ⊙ tanh(c_t), or the previous state carried through padding.
    The gates are worked out in `scratch` [B, 4H], the same array every step, and written to `gates` row by
    row at the end: the copy across writes one cache line in each of B rows 16H bytes apart, which into a
    step's fresh gate storage waits for every line to come from memory (H = 512, B = 64: 135 against 52 µs a
    step; the row-by-row write-out costs 24)."""
    _copy_across(from_hidden, scratch)
    batch, width = gates.shape
    hidden = width // 4
    half = gates.dtype.type(0.5)
    if_bias, g_bias, o_bias = bias[:2 * hidden], bias[2 * hidden:3 * hidden], bias[3 * hidden:]
    for b in range(batch):
        # one 1-D slice per gate: faster than indexing the row at j, 2H + j, 3H + j (hot, B = 32: 13.9
        # against 18.7 µs at H = 256, 29.3 against 38.6 at H = 512)
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
        # the activations in their own passes: a loop that also adds stays scalar (25 against 12 µs)
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
def _state_before(states, initial, t, reverse):
    """The state step t started from: states[t - 1] (states[t + 1] when reversed), or the initial state."""
    previous_t = t + 1 if reverse else t - 1
    return states[previous_t] if 0 <= previous_t < states.shape[0] else initial


# The backward's step product dL/dh_{t-1} = δ_t W_hh: from H = 512 it runs faster transposed, as W_hhᵀ δ_tᵀ
# into an [H, B] buffer (the wide matrix first, as in the forward) copied across, with W_hhᵀ made once per
# call; below that the plain form into d_h is as fast or faster. Whole training steps, the two forms
# alternating (batch 32): H = 128 0.96-0.98x, 256 0.98-1.00x, 384 1.00x, 512 1.03-1.04x for the transposed one.
_TRANSPOSED_BACK_PRODUCT_FROM = 512


def _back_product_operands(weight_hh, dtype):
    """W_hh contiguous, and W_hhᵀ where the rule above says transposed (else an empty array)."""
    weight_hh = np.ascontiguousarray(weight_hh, dtype=dtype)
    if weight_hh.shape[1] < _TRANSPOSED_BACK_PRODUCT_FROM:
        return weight_hh, np.empty((0, 0), dtype)
    weight_hh_t = reusable_empty(weight_hh.shape[::-1], dtype)
    _copy_across(weight_hh, weight_hh_t)   # blocked: NumPy's copy of the transpose took 9x as long at H = 512
    return weight_hh, weight_hh_t


@njit(cache=True, error_model="numpy")
def _back_product(delta, weight_hh, weight_hh_t, d_h_t, d_h):
    """d_h = δ W_hh; through W_hhᵀ δᵀ into d_h_t, copied across, when weight_hh_t is not empty."""
    if weight_hh_t.size:
        gemm(weight_hh_t, delta, d_h_t, True, False)
        _copy_across(d_h_t, d_h)
    else:
        gemm(delta, weight_hh, d_h, False, False)


def _back_product_in_python(delta, weight_hh, weight_hh_t, d_h_t, d_h):
    """`_back_product` for the Python time loops, through np.matmul (no NumPy BLAS reachable from numba)."""
    if weight_hh_t.size:
        np.matmul(weight_hh_t, delta.T, out=d_h_t)
        _copy_across(d_h_t, d_h)
    else:
        np.matmul(delta, weight_hh, out=d_h)


@njit(cache=True, error_model="numpy")
def _lstm_step_back(d_h, d_output_t, d_c, gates, tanh_c, c_previous, keep, carried):
    """From dL/dh_t (d_h + output's) and dL/dc_t (d_c): δ for the 4 gates, written over the gates (each
    element is read before it is written, and nothing reads the gates afterwards); d_c becomes
    dL/dc_{t-1}. Reading and writing the same slices lets LLVM vectorise: with δ in another array its
    runtime overlap check fell back to scalar code whenever the two were one (hot, H = 256, B = 32: 22
    against 11 µs)."""
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


def lstm_forward(projected, h0, c0, weight_hh, bias, mask, reverse, tokens=None):
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
            (gates_all, h_states, c_states, tanh_c_all, h0, c0, mask, reverse, weight_hh))


def lstm_backward(cache, weight_hh, d_output, d_h_last, d_c_last, overwrite_cache=False):
    d_output = np.ascontiguousarray(d_output)  # often a transposed view; compiled loops want rows
    gates_all, h_states, c_states, tanh_c_all, h0, c0, mask, reverse, weight_hh = cache
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


# -- GRU --------------------------------------------------------------------------------------------------

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


def gru_forward(projected, h0, weight_hh, bias_hh, mask, reverse):
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
    return h_states, h_states[last], (gates_all, hidden_n_all, h_states, h0, mask, reverse, weight_hh)


def gru_backward(cache, weight_hh, d_output, d_h_last):
    d_output = np.ascontiguousarray(d_output)  # often a transposed view; compiled loops want rows
    gates_all, hidden_n_all, h_states, h0, mask, reverse, weight_hh = cache
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


# -- dropout ----------------------------------------------------------------------------------------------

@njit(cache=True, error_model="numpy")
def _dropout(x, draws, threshold, scale, out):
    """out = x ⊙ [draws ≥ threshold] · scale over [I, J, K] arrays of any strides (a factor of 0, not a
    select, so a dropped NaN stays NaN as in x · mask)."""
    zero = out.dtype.type(0.0)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            for k in range(x.shape[2]):
                out[i, j, k] = x[i, j, k] * (scale if draws[i, j, k] >= threshold else zero)


def apply_dropout(x, draws, threshold, scale):
    if x.ndim > 3 or x.size == 0 or x.dtype == np.float16:   # numba has no float16 arithmetic
        return numpy_backend.apply_dropout(x, draws, threshold, scale)
    out = np.empty(x.shape, x.dtype)
    as_3d = (1,) * (3 - x.ndim) + x.shape
    _dropout(x.reshape(as_3d), draws.reshape(as_3d), threshold, x.dtype.type(scale), out.reshape(as_3d))
    return out
