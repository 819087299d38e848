"""Fused recurrent kernels in plain NumPy.

Forward: per step, one product h_{t-1} W_hhᵀ into a preallocated row of the gate array, then the gate
arithmetic in place. Backward: the local derivatives of all steps at once (a few whole-array passes),
then per step one product δ_t W_hh and a handful of elementwise products.

Padding (mask False) is always selected away with np.where, never multiplied by 0: a padded step's gates
may be inf or NaN (from a NaN in the padded input), and so may the gradient arriving at a padded output.
"""
from __future__ import annotations

import numpy as np

from .contract import GRUCache, LSTMCache, RNNCache
from .common import (back_product, lstm_arrays, matmul_sum, previous_states, recurrent_weight_gradient,
                     right_operand, time_order)


def sigmoid_(x: np.ndarray) -> np.ndarray:
    """σ(x) = (1 + tanh(x/2)) / 2 in place: exact, no overflow, and one fast ufunc."""
    np.multiply(x, 0.5, out=x)
    np.tanh(x, out=x)
    np.multiply(x, 0.5, out=x)
    np.add(x, 0.5, out=x)
    return x


def _carry_masked(states: np.ndarray, t: int, previous: np.ndarray, mask: np.ndarray | None) -> None:
    if mask is not None:
        np.copyto(states[t], previous, where=~mask[t])


# -- vanilla RNN ------------------------------------------------------------------------------------------

def rnn_forward(projected: np.ndarray, h0: np.ndarray, weight_hh: np.ndarray, mask: np.ndarray | None, reverse: bool,
                nonlinearity: str) -> tuple[np.ndarray, np.ndarray, RNNCache]:
    """h_t = act(p_t + h_{t-1} W_hhᵀ), act = tanh or relu (`nonlinearity`).

    Shapes, dtypes and what is returned: `contract.KernelBackend.rnn_forward`.
    """
    states = np.empty(projected.shape, projected.dtype)   # h_t, carried through padding
    weight_hh_t = right_operand(weight_hh, projected.shape[0])
    h = h0
    for t in time_order(projected.shape[0], reverse):
        h_t = states[t]
        np.matmul(h, weight_hh_t, out=h_t)
        h_t += projected[t]
        if nonlinearity == "tanh":
            np.tanh(h_t, out=h_t)
        else:
            np.copyto(h_t, 0, where=h_t < 0)   # relu as PyTorch's: -0 and NaN stay
        _carry_masked(states, t, h, mask)
        h = h_t
    return states, h, RNNCache(states, h0, mask, reverse, nonlinearity, weight_hh_t)


def rnn_backward(cache: RNNCache, weight_hh: np.ndarray, d_output: np.ndarray,
                 d_h_last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BPTT of `rnn_forward`: δ_t = (dL/dh_t) ⊙ act'(·), dL/dh_{t-1} = δ_t W_hh (+ what padding carried).

    Shapes, dtypes and what is returned: `contract.KernelBackend.rnn_backward`.
    """
    states, h0, mask, reverse, nonlinearity, weight_hh_t = cache
    # δ_t = dL/dh_t ⊙ act'(·): tanh' = 1 - h_t², relu' = 1 - [h_t <= 0] (a NaN state passes its gradient,
    # as the Relu op and PyTorch's threshold_backward)
    local = 1 - states * states if nonlinearity == "tanh" else np.logical_not(states <= 0).astype(states.dtype)
    deltas = np.empty_like(states)
    zero = states.dtype.type(0)
    d_h = d_h_last
    for t in time_order(states.shape[0], not reverse):
        d_total = d_h + d_output[t]
        carried = None
        if mask is not None:   # padding: no δ (its output's gradient is dropped), and dL/dh passes on unchanged
            d_total = np.where(mask[t], d_total, zero)
            carried = np.where(mask[t], zero, d_h)
        np.multiply(d_total, local[t], out=deltas[t])
        # dL/dh_{t-1} = δ_t W_hh (min-char-rnn's W_hhᵀ δ, in column form), plus what padding carried
        d_h = back_product(deltas[t], weight_hh_t)
        if carried is not None:
            d_h += carried
    return deltas, d_h, recurrent_weight_gradient(deltas, states, h0, reverse)


# -- LSTM -------------------------------------------------------------------------------------------------

def lstm_forward(projected: np.ndarray, h0: np.ndarray, c0: np.ndarray, weight_hh: np.ndarray,
                 bias: np.ndarray | None, mask: np.ndarray | None, reverse: bool,
                 tokens: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, LSTMCache]:
    """[i, f, g, o] = [σ, σ, tanh, σ](p_t + bias + h_{t-1} W_hhᵀ); c_t = f ⊙ c_{t-1} + i ⊙ g; h_t = o ⊙ tanh(c_t).

    Shapes, dtypes and what is returned: `contract.KernelBackend.lstm_forward`.
    """
    if tokens is not None:  # projected is a [vocabulary, 4H] table: look all rows up at once
        projected = projected[tokens]
    if bias is not None:
        projected = projected + bias
    steps, batch, gate_width = projected.shape
    hidden, dtype = gate_width // 4, projected.dtype
    gates_all, h_states, c_states, tanh_c_all = lstm_arrays(projected.shape, dtype)
    product = np.empty((batch, hidden), dtype)
    weight_hh_t = right_operand(weight_hh, steps)
    h, c = h0, c0
    for t in time_order(steps, reverse):
        gates = gates_all[t]
        np.matmul(h, weight_hh_t, out=gates)
        gates += projected[t]
        sigmoid_(gates[:, :2 * hidden])
        np.tanh(gates[:, 2 * hidden:3 * hidden], out=gates[:, 2 * hidden:3 * hidden])
        sigmoid_(gates[:, 3 * hidden:])
        c_t, tanh_c, h_t = c_states[t], tanh_c_all[t], h_states[t]
        np.multiply(gates[:, hidden:2 * hidden], c, out=c_t)                          # f ⊙ c_{t-1}
        np.multiply(gates[:, :hidden], gates[:, 2 * hidden:3 * hidden], out=product)  # i ⊙ g
        c_t += product
        np.tanh(c_t, out=tanh_c)
        np.multiply(gates[:, 3 * hidden:], tanh_c, out=h_t)
        _carry_masked(c_states, t, c, mask)
        _carry_masked(h_states, t, h, mask)
        h, c = h_t, c_t
    return h_states, h, c, LSTMCache(gates_all, h_states, c_states, tanh_c_all, h0, c0, mask, reverse, weight_hh_t)


def lstm_backward(cache: LSTMCache, weight_hh: np.ndarray, d_output: np.ndarray, d_h_last: np.ndarray,
                  d_c_last: np.ndarray,
                  overwrite_cache: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BPTT of `lstm_forward`. d_output [T, B, H], d_h_last and d_c_last [B, H].

    Shapes, dtypes and what is returned: `contract.KernelBackend.lstm_backward`.
    """
    gates_all, h_states, c_states, tanh_c_all, h0, c0, mask, reverse, weight_hh_t = cache
    steps, batch, gate_width = gates_all.shape
    hidden = gate_width // 4
    gates4 = gates_all.reshape(steps, batch, 4, hidden)
    i, f, g, o = gates4[:, :, 0], gates4[:, :, 1], gates4[:, :, 2], gates4[:, :, 3]
    # local derivatives of every step at once: with dc the gradient reaching c_t,
    # dL/d[i, f, g] pre-activations = dc ⊙ [g σ'(i), c_{t-1} σ'(f), i (1 - g²)], dL/do = dh ⊙ tanh(c_t) σ'(o)
    local = np.empty((steps, batch, 4, hidden), gates_all.dtype)
    np.multiply(g, i * (1 - i), out=local[:, :, 0])
    np.multiply(previous_states(c_states, c0, reverse), f * (1 - f), out=local[:, :, 1])
    np.multiply(i, 1 - g * g, out=local[:, :, 2])
    np.multiply(tanh_c_all, o * (1 - o), out=local[:, :, 3])
    # dL/dc_t += dL/dh_t ⊙ o ⊙ (1 - tanh²(c_t))
    h_to_c = o * (1 - tanh_c_all * tanh_c_all)
    zero = gates_all.dtype.type(0)
    if mask is not None:
        np.copyto(local, zero, where=~mask[:, :, :, None])
        np.copyto(h_to_c, zero, where=~mask)
        f = np.where(mask, f, gates_all.dtype.type(1))        # padding carries dc unchanged
    deltas = local  # each step's δ replaces its local derivatives
    d_h, d_c = d_h_last, d_c_last.copy()
    for t in time_order(steps, not reverse):
        d_total = d_h + d_output[t]
        if mask is not None:
            d_total = np.where(mask[t], d_total, d_h)   # output at padding is 0: its gradient is dropped
        d_c += d_total * h_to_c[t]
        delta = deltas[t]
        delta[:, :3] *= d_c[:, None]  # i, f, g take dc; o takes dh
        delta[:, 3] *= d_total
        carried = np.where(mask[t], zero, d_h) if mask is not None else None
        d_h = back_product(delta.reshape(batch, gate_width), weight_hh_t)  # type: ignore[arg-type]  # this forward always keeps W_hhᵀ
        if carried is not None:
            d_h += carried
        d_c *= f[t]
    deltas = deltas.reshape(steps, batch, gate_width)
    return deltas, d_h, d_c, recurrent_weight_gradient(deltas, h_states, h0, reverse)


# -- GRU --------------------------------------------------------------------------------------------------

def gru_forward(projected: np.ndarray, h0: np.ndarray, weight_hh: np.ndarray, bias_hh: np.ndarray | None,
                mask: np.ndarray | None, reverse: bool) -> tuple[np.ndarray, np.ndarray, GRUCache]:
    """r, z = σ(p_{r,z} + h_{t-1} W_h{r,z}ᵀ + b_h{r,z}); n = tanh(p_n + r ⊙ (h_{t-1} W_hnᵀ + b_hn)); h_t = n + z ⊙
    (h_{t-1} - n) (PyTorch's GRU).

    Shapes, dtypes and what is returned: `contract.KernelBackend.gru_forward`.
    """
    steps, batch, gate_width = projected.shape
    hidden = gate_width // 3
    dtype = projected.dtype
    gates_all = np.empty(projected.shape, dtype)             # r, z, n
    hidden_n_all = np.empty((steps, batch, hidden), dtype)   # h W_hnᵀ + b_hn, which r scales
    h_states = np.empty((steps, batch, hidden), dtype)
    from_hidden = np.empty((batch, gate_width), dtype)
    weight_hh_t = right_operand(weight_hh, steps)
    h = h0
    for t in time_order(steps, reverse):
        np.matmul(h, weight_hh_t, out=from_hidden)
        if bias_hh is not None:
            from_hidden += bias_hh
        gates, p = gates_all[t], projected[t]
        np.add(p[:, :2 * hidden], from_hidden[:, :2 * hidden], out=gates[:, :2 * hidden])
        sigmoid_(gates[:, :2 * hidden])
        hidden_n_all[t] = from_hidden[:, 2 * hidden:]
        n = gates[:, 2 * hidden:]
        np.multiply(gates[:, :hidden], from_hidden[:, 2 * hidden:], out=n)
        n += p[:, 2 * hidden:]
        np.tanh(n, out=n)
        h_t = h_states[t]
        np.subtract(h, n, out=h_t)
        h_t *= gates[:, hidden:2 * hidden]
        h_t += n
        _carry_masked(h_states, t, h, mask)
        h = h_t
    return h_states, h, GRUCache(gates_all, hidden_n_all, h_states, h0, mask, reverse, weight_hh_t)


def gru_backward(cache: GRUCache, weight_hh: np.ndarray, d_output: np.ndarray,
                 d_h_last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BPTT of `gru_forward`. d_output [T, B, H], d_h_last [B, H].

    Shapes, dtypes and what is returned: `contract.KernelBackend.gru_backward`.
    """
    gates_all, hidden_n_all, h_states, h0, mask, reverse, weight_hh_t = cache
    steps, batch, gate_width = gates_all.shape
    hidden = gate_width // 3
    gates3 = gates_all.reshape(steps, batch, 3, hidden)
    r, z, n = gates3[:, :, 0], gates3[:, :, 1], gates3[:, :, 2]
    previous = previous_states(h_states, h0, reverse)
    # with d = dL/dh_t: dL/dn_pre = d (1-z)(1-n²), dL/dz_pre = d (h_{t-1} - n) σ'(z),
    # dL/dr_pre = dL/dn_pre ⊙ (h W_hnᵀ + b_hn) σ'(r); the hidden side sees r ⊙ dL/dn_pre for its n part
    local_input = np.empty((steps, batch, 3, hidden), gates_all.dtype)
    np.multiply(1 - z, 1 - n * n, out=local_input[:, :, 2])
    np.multiply(previous - n, z * (1 - z), out=local_input[:, :, 1])
    np.multiply(local_input[:, :, 2] * hidden_n_all, r * (1 - r), out=local_input[:, :, 0])
    local_hidden = local_input.copy()
    local_hidden[:, :, 2] *= r
    direct = z
    if mask is not None:
        zero = gates_all.dtype.type(0)
        np.copyto(local_input, zero, where=~mask[:, :, :, None])
        np.copyto(local_hidden, zero, where=~mask[:, :, :, None])
        direct = np.where(mask, z, gates_all.dtype.type(1))   # padding carries dh unchanged
    d_input = np.empty((steps, batch, 3, hidden), gates_all.dtype)
    d_hidden = np.empty((steps, batch, 3, hidden), gates_all.dtype)
    d_h = d_h_last
    for t in time_order(steps, not reverse):
        d_total = d_h + d_output[t]
        if mask is not None:
            d_total = np.where(mask[t], d_total, d_h)   # output at padding is 0: its gradient is dropped
        np.multiply(local_input[t], d_total[:, None, :], out=d_input[t])
        np.multiply(local_hidden[t], d_total[:, None, :], out=d_hidden[t])
        d_h = back_product(d_hidden[t].reshape(batch, gate_width), weight_hh_t)  # type: ignore[arg-type]  # as above
        d_h += d_total * direct[t]
    d_hidden = d_hidden.reshape(steps, batch, gate_width)
    return (d_input.reshape(steps, batch, gate_width), d_h, matmul_sum(d_hidden, previous),
            d_hidden.sum(axis=(0, 1)))


# -- dropout ----------------------------------------------------------------------------------------------

def apply_dropout(x: np.ndarray, draws: np.ndarray, threshold: int, scale: float) -> np.ndarray:
    """x ⊙ [draws ≥ threshold] · scale (a dropped NaN stays NaN, as x · 0 does)."""
    factor = (draws >= threshold).astype(x.dtype)   # not np.where with two scalars (BENCHMARKS.md, "The dropout mask")
    factor *= x.dtype.type(scale)
    return x * factor
