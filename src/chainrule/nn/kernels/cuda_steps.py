"""The recurrent cells' elementwise steps as CUDA kernels (numba.cuda), one launch per step and direction.

Each kernel is one thread per (sequence b, hidden unit j): it reads that unit's gate pre-activations (the
step's product h_{t-1} W_hhᵀ, made by cuBLAS before the launch, plus p_t), applies the cell's equations
and writes the new state, or in the backward the unit's δ. Arrays arrive as CuPy arrays (numba reads their
`__cuda_array_interface__`), or as NumPy arrays under numba's simulator (NUMBA_ENABLE_CUDASIM=1), which
is how the tests run these kernels without a GPU. `cuda_backend` launches them; the arithmetic and its
order follow `numpy_backend`, so results agree to rounding.

`mask` is a [B, 1] bool array of the step (True: a real step), read only when `has_mask`; a padded step
carries the state through and sends no δ, as in the other backends.
"""
from __future__ import annotations

import math

from numba import config, cuda

# (sequences, units) per block: a warp reads 32 consecutive units of one row. The simulator runs a Python
# thread per GPU thread: small blocks there, which also make small tests span several blocks.
THREADS = (2, 4) if config.ENABLE_CUDASIM else (8, 32)  # type: ignore[attr-defined]  # set at numba's import
# numba would synchronise CuPy's stream before every launch that takes CuPy arrays (CUDA array interface v3);
# both launch on the same (default) stream, which orders the work already, so that wait buys nothing
config.CUDA_ARRAY_INTERFACE_SYNC = False  # type: ignore[attr-defined]  # set at numba's import


def blocks(rows: int, columns: int) -> tuple[int, int]:
    return (max(1, (rows + THREADS[0] - 1) // THREADS[0]), max(1, (columns + THREADS[1] - 1) // THREADS[1]))


@cuda.jit(device=True)
def _sigmoid(x):
    # σ(x) = (1 + tanh(x/2)) / 2, as numpy_backend.sigmoid_: exact, no overflow
    return math.tanh(x * 0.5) * 0.5 + 0.5


# -- vanilla RNN --------------------------------------------------------------------------------------------

@cuda.jit
def rnn_forward_step(h_t, p_t, h_prev, mask, has_mask, relu):
    """h_t ← act(h_t + p_t) in place (h_t holds h_{t-1} W_hhᵀ); at padding h_t ← h_{t-1}."""
    b, j = cuda.grid(2)
    if b >= h_t.shape[0] or j >= h_t.shape[1]:
        return
    if has_mask and not mask[b, 0]:
        h_t[b, j] = h_prev[b, j]
        return
    value = h_t[b, j] + p_t[b, j]
    if relu:
        if value < 0:   # relu as PyTorch's: -0 and NaN stay
            value = value * 0
    else:
        value = math.tanh(value)
    h_t[b, j] = value


@cuda.jit
def rnn_backward_step(delta, carried, h_t, product, d_out, mask, has_mask, relu):
    """dL/dh_t = product + carried (product = δ_{t+1} W_hh); δ_t = (dL/dh_t + d_out) ⊙ act'(h_t).
    carried ← what passes to the previous step besides the product (dL/dh_t itself at padding, else 0)."""
    b, j = cuda.grid(2)
    if b >= delta.shape[0] or j >= delta.shape[1]:
        return
    d_h = product[b, j] + carried[b, j]
    if has_mask and not mask[b, 0]:
        delta[b, j] = 0.0
        carried[b, j] = d_h
        return
    h = h_t[b, j]
    if relu:
        local = 0.0 if h <= 0 else 1.0   # a NaN state passes its gradient, as PyTorch's threshold_backward
    else:
        local = 1 - h * h
    delta[b, j] = (d_h + d_out[b, j]) * local
    carried[b, j] = 0.0


# -- LSTM ---------------------------------------------------------------------------------------------------

@cuda.jit
def lstm_forward_step(gates, p_t, c_prev, h_prev, c_t, tanh_c, h_t, mask, has_mask):
    """gates [B, 4H] holds h_{t-1} W_hhᵀ: add p_t, activate [σ, σ, tanh, σ] in place; c_t = f c_{t-1} + i g,
    h_t = o tanh(c_t); at padding c_t, h_t ← c_{t-1}, h_{t-1} (the gates are stored, never read there)."""
    b, j = cuda.grid(2)
    hidden = c_t.shape[1]
    if b >= c_t.shape[0] or j >= hidden:
        return
    i = _sigmoid(gates[b, j] + p_t[b, j])
    f = _sigmoid(gates[b, hidden + j] + p_t[b, hidden + j])
    g = math.tanh(gates[b, 2 * hidden + j] + p_t[b, 2 * hidden + j])
    o = _sigmoid(gates[b, 3 * hidden + j] + p_t[b, 3 * hidden + j])
    gates[b, j], gates[b, hidden + j], gates[b, 2 * hidden + j], gates[b, 3 * hidden + j] = i, f, g, o
    if has_mask and not mask[b, 0]:
        c_t[b, j], h_t[b, j] = c_prev[b, j], h_prev[b, j]
        tanh_c[b, j] = math.tanh(c_prev[b, j])
        return
    c = f * c_prev[b, j] + i * g
    tc = math.tanh(c)
    c_t[b, j], tanh_c[b, j], h_t[b, j] = c, tc, o * tc


@cuda.jit
def lstm_backward_step(delta, d_c, carried, c_prev, tanh_c, product, d_out, mask, has_mask):
    """One BPTT step: dL/dh_t = product + carried; d_c ← dL/dc_t (from step t+1) + dL/dh_t o (1 - tanh²c_t);
    δ_t = [d_c g σ'(i), d_c c_{t-1} σ'(f), d_c i (1 - g²), (dL/dh_t + d_out) tanh(c_t) σ'(o)]; then d_c ← d_c f
    for step t-1. At padding δ_t = 0 and dL/dh, dL/dc pass on unchanged. `delta` [B, 4H] holds the step's
    activated gates on entry (each thread reads its unit's four before writing them): one array, so that no
    two arguments alias each other."""
    b, j = cuda.grid(2)
    hidden = d_c.shape[1]
    if b >= d_c.shape[0] or j >= hidden:
        return
    d_h = product[b, j] + carried[b, j]
    if has_mask and not mask[b, 0]:
        delta[b, j] = delta[b, hidden + j] = delta[b, 2 * hidden + j] = delta[b, 3 * hidden + j] = 0.0
        carried[b, j] = d_h
        return
    i, f = delta[b, j], delta[b, hidden + j]
    g, o = delta[b, 2 * hidden + j], delta[b, 3 * hidden + j]
    tc = tanh_c[b, j]
    d_total = d_h + d_out[b, j]
    dc = d_c[b, j] + d_total * (o * (1 - tc * tc))
    delta[b, j] = dc * (g * (i * (1 - i)))
    delta[b, hidden + j] = dc * (c_prev[b, j] * (f * (1 - f)))
    delta[b, 2 * hidden + j] = dc * (i * (1 - g * g))
    delta[b, 3 * hidden + j] = d_total * (tc * (o * (1 - o)))
    d_c[b, j] = dc * f
    carried[b, j] = 0.0


# -- GRU ----------------------------------------------------------------------------------------------------

@cuda.jit
def gru_forward_step(gates, hidden_n, h_t, p_t, from_hidden, bias_hh, has_bias, h_prev, mask, has_mask):
    """from_hidden [B, 3H] = h_{t-1} W_hhᵀ; r, z = σ(p + from_hidden + b_h), hidden_n = from_hidden_n + b_hn,
    n = tanh(p_n + r hidden_n), h_t = n + z (h_{t-1} - n); at padding h_t ← h_{t-1}."""
    b, j = cuda.grid(2)
    hidden = h_t.shape[1]
    if b >= h_t.shape[0] or j >= hidden:
        return
    fr, fz, fn = from_hidden[b, j], from_hidden[b, hidden + j], from_hidden[b, 2 * hidden + j]
    if has_bias:
        fr, fz, fn = fr + bias_hh[j], fz + bias_hh[hidden + j], fn + bias_hh[2 * hidden + j]
    r = _sigmoid(p_t[b, j] + fr)
    z = _sigmoid(p_t[b, hidden + j] + fz)
    n = math.tanh(r * fn + p_t[b, 2 * hidden + j])
    gates[b, j], gates[b, hidden + j], gates[b, 2 * hidden + j] = r, z, n
    hidden_n[b, j] = fn
    if has_mask and not mask[b, 0]:
        h_t[b, j] = h_prev[b, j]
        return
    h_t[b, j] = (h_prev[b, j] - n) * z + n


@cuda.jit
def gru_backward_step(d_input, d_hidden, carried, gates, hidden_n, h_prev, product, d_out, mask, has_mask):
    """dL/dh_t = product + carried; with d = dL/dh_t + d_out: δ_n = d (1-z)(1-n²), δ_z = d (h_{t-1} - n) σ'(z),
    δ_r = δ_n hidden_n σ'(r) (d_input), the hidden side's n part δ_n r (d_hidden); carried ← d z. At padding
    δ = 0 and carried ← dL/dh_t."""
    b, j = cuda.grid(2)
    hidden = carried.shape[1]
    if b >= carried.shape[0] or j >= hidden:
        return
    d_h = product[b, j] + carried[b, j]
    if has_mask and not mask[b, 0]:
        for k in range(3):
            d_input[b, k * hidden + j] = 0.0
            d_hidden[b, k * hidden + j] = 0.0
        carried[b, j] = d_h
        return
    r, z, n = gates[b, j], gates[b, hidden + j], gates[b, 2 * hidden + j]
    d_total = d_h + d_out[b, j]
    local_n = (1 - z) * (1 - n * n)
    local_z = (h_prev[b, j] - n) * (z * (1 - z))
    local_r = (local_n * hidden_n[b, j]) * (r * (1 - r))
    d_input[b, j] = local_r * d_total
    d_input[b, hidden + j] = local_z * d_total
    d_input[b, 2 * hidden + j] = local_n * d_total
    d_hidden[b, j] = local_r * d_total
    d_hidden[b, hidden + j] = local_z * d_total
    d_hidden[b, 2 * hidden + j] = (local_n * r) * d_total
    carried[b, j] = d_total * z
