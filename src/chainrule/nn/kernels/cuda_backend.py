"""Fused recurrent kernels on a GPU: the contract of `contract.KernelBackend` on CuPy arrays.

The same algorithm as `numpy_backend`: per step one product through cuBLAS into preallocated storage
(`xp.matmul(..., out=)`), then the cell's elementwise step as one CUDA kernel (`cuda_steps`, numba.cuda);
dW_hh = Σ_t δ_tᵀ h_{t-1} as one product after the loop. The array module `xp` is the inputs' own
(`chainrule._kernels.device.array_module`): CuPy on a GPU, NumPy under numba's CUDA simulator, where the
tests run this module. numba.cuda is imported on the first recurrent call, never by `import chainrule`.
"""
from __future__ import annotations

from typing import Any

from ..._kernels.device import array_module
from .common import matmul_sum, recurrent_weight_gradient, time_order
from .contract import GRUCache, LSTMCache, RNNCache


def _steps() -> Any:
    from . import cuda_steps  # numba.cuda, loaded on first use
    return cuda_steps


def _launch(kernel: Any, rows: int, columns: int, *args: Any) -> None:
    steps = _steps()
    kernel[steps.blocks(rows, columns), steps.THREADS](*args)


def _mask_args(xp: Any, mask: Any, t: int, no_mask: Any) -> tuple[Any, bool]:
    """The step's [B, 1] mask and whether there is one (numba needs an array either way: `no_mask`)."""
    if mask is None:
        return no_mask, False
    return mask[t], True


def _previous(xp: Any, states: Any, initial: Any, t: int, reverse: bool) -> Any:
    """h_{t-1} of step t: the neighbouring step's state, or the initial one at the first step."""
    first = states.shape[0] - 1 if reverse else 0
    if t == first:
        return initial
    return states[t + 1] if reverse else states[t - 1]


def _previous_all(xp: Any, states: Any, initial: Any, reverse: bool) -> Any:
    previous = xp.empty_like(states)
    if reverse:
        previous[:-1], previous[-1] = states[1:], initial
    else:
        previous[1:], previous[0] = states[:-1], initial
    return previous


def _c_ordered_t(xp: Any, weight: Any) -> Any:
    return xp.ascontiguousarray(weight.T)


# -- vanilla RNN --------------------------------------------------------------------------------------------

def rnn_forward(projected, h0, weight_hh, mask, reverse, nonlinearity):
    """Shapes, dtypes and what is returned: `contract.KernelBackend.rnn_forward`."""
    xp = array_module(projected)
    steps, batch, hidden = projected.shape
    states = xp.empty(projected.shape, projected.dtype)
    weight_hh_t = _c_ordered_t(xp, weight_hh)
    kernel, relu = _steps().rnn_forward_step, nonlinearity == "relu"
    h = h0
    no_mask = xp.ones((1, 1), bool)
    for t in time_order(steps, reverse):
        xp.matmul(h, weight_hh_t, out=states[t])
        step_mask, has_mask = _mask_args(xp, mask, t, no_mask)
        _launch(kernel, batch, hidden, states[t], projected[t], h, step_mask, has_mask, relu)
        h = states[t]
    return states, h, RNNCache(states, h0, mask, reverse, nonlinearity, weight_hh_t)


def rnn_backward(cache, weight_hh, d_output, d_h_last):
    """Shapes, dtypes and what is returned: `contract.KernelBackend.rnn_backward`."""
    states, h0, mask, reverse, nonlinearity, weight_hh_t = cache
    xp = array_module(states)
    d_output = xp.ascontiguousarray(d_output)   # may be a broadcast (read-only) view
    steps, batch, hidden = states.shape
    deltas = xp.empty_like(states)
    carried = xp.zeros_like(d_h_last)
    product = xp.array(d_h_last, copy=True)
    kernel, relu = _steps().rnn_backward_step, nonlinearity == "relu"
    no_mask = xp.ones((1, 1), bool)
    for t in time_order(steps, not reverse):
        step_mask, has_mask = _mask_args(xp, mask, t, no_mask)
        _launch(kernel, batch, hidden, deltas[t], carried, states[t], product, d_output[t], step_mask, has_mask, relu)
        xp.matmul(deltas[t], weight_hh, out=product)          # δ_t W_hh
    return deltas, product + carried, recurrent_weight_gradient(deltas, states, h0, reverse)


# -- LSTM ---------------------------------------------------------------------------------------------------

def lstm_forward(projected, h0, c0, weight_hh, bias, mask, reverse, tokens=None):
    """Shapes, dtypes and what is returned: `contract.KernelBackend.lstm_forward`."""
    xp = array_module(projected)
    if tokens is not None:  # a [vocabulary, 4H] table: all rows looked up at once
        projected = projected[xp.asarray(tokens)]
    if bias is not None:
        projected = projected + bias
    steps, batch, gate_width = projected.shape
    hidden, dtype = gate_width // 4, projected.dtype
    gates_all = xp.empty(projected.shape, dtype)
    h_states, c_states, tanh_c_all = (xp.empty((steps, batch, hidden), dtype) for _ in range(3))
    weight_hh_t = _c_ordered_t(xp, weight_hh)
    kernel = _steps().lstm_forward_step
    h, c = h0, c0
    no_mask = xp.ones((1, 1), bool)
    for t in time_order(steps, reverse):
        xp.matmul(h, weight_hh_t, out=gates_all[t])
        step_mask, has_mask = _mask_args(xp, mask, t, no_mask)
        _launch(kernel, batch, hidden, gates_all[t], projected[t], c, h, c_states[t], tanh_c_all[t], h_states[t],
                step_mask, has_mask)
        h, c = h_states[t], c_states[t]
    return h_states, h, c, LSTMCache(gates_all, h_states, c_states, tanh_c_all, h0, c0, mask, reverse, weight_hh_t)


def lstm_backward(cache, weight_hh, d_output, d_h_last, d_c_last, overwrite_cache=False):
    """Shapes, dtypes and what is returned: `contract.KernelBackend.lstm_backward`. The δ are written over the
    cache's gates when `overwrite_cache`, else over a copy of them."""
    gates_all, h_states, c_states, tanh_c_all, h0, c0, mask, reverse, _ = cache
    xp = array_module(gates_all)
    d_output = xp.ascontiguousarray(d_output)   # may be a broadcast (read-only) view
    steps, batch, gate_width = gates_all.shape
    hidden = gate_width // 4
    deltas = gates_all if overwrite_cache else gates_all.copy()   # the kernel turns gates into δ in place
    d_c = xp.array(d_c_last, copy=True)
    carried = xp.zeros_like(d_h_last)
    product = xp.array(d_h_last, copy=True)
    kernel = _steps().lstm_backward_step
    no_mask = xp.ones((1, 1), bool)
    for t in time_order(steps, not reverse):
        step_mask, has_mask = _mask_args(xp, mask, t, no_mask)
        c_prev = _previous(xp, c_states, c0, t, reverse)
        _launch(kernel, batch, hidden, deltas[t], d_c, carried, c_prev, tanh_c_all[t], product,
                d_output[t], step_mask, has_mask)
        xp.matmul(deltas[t], weight_hh, out=product)          # δ_t W_hh
    return deltas, product + carried, d_c, recurrent_weight_gradient(deltas, h_states, h0, reverse)


# -- GRU ----------------------------------------------------------------------------------------------------

def gru_forward(projected, h0, weight_hh, bias_hh, mask, reverse):
    """Shapes, dtypes and what is returned: `contract.KernelBackend.gru_forward`."""
    xp = array_module(projected)
    steps, batch, gate_width = projected.shape
    hidden, dtype = gate_width // 3, projected.dtype
    gates_all = xp.empty(projected.shape, dtype)
    hidden_n_all = xp.empty((steps, batch, hidden), dtype)
    h_states = xp.empty((steps, batch, hidden), dtype)
    from_hidden = xp.empty((batch, gate_width), dtype)
    weight_hh_t = _c_ordered_t(xp, weight_hh)
    bias = bias_hh if bias_hh is not None else xp.zeros((1,), dtype)
    kernel = _steps().gru_forward_step
    h = h0
    no_mask = xp.ones((1, 1), bool)
    for t in time_order(steps, reverse):
        xp.matmul(h, weight_hh_t, out=from_hidden)
        step_mask, has_mask = _mask_args(xp, mask, t, no_mask)
        _launch(kernel, batch, hidden, gates_all[t], hidden_n_all[t], h_states[t], projected[t], from_hidden, bias,
                bias_hh is not None, h, step_mask, has_mask)
        h = h_states[t]
    return h_states, h, GRUCache(gates_all, hidden_n_all, h_states, h0, mask, reverse, weight_hh_t)


def gru_backward(cache, weight_hh, d_output, d_h_last):
    """Shapes, dtypes and what is returned: `contract.KernelBackend.gru_backward`."""
    gates_all, hidden_n_all, h_states, h0, mask, reverse, _ = cache
    xp = array_module(gates_all)
    d_output = xp.ascontiguousarray(d_output)   # may be a broadcast (read-only) view
    steps, batch, gate_width = gates_all.shape
    hidden = gate_width // 3
    d_input = xp.empty_like(gates_all)
    d_hidden = xp.empty_like(gates_all)
    carried = xp.zeros_like(d_h_last)
    product = xp.array(d_h_last, copy=True)
    kernel = _steps().gru_backward_step
    no_mask = xp.ones((1, 1), bool)
    for t in time_order(steps, not reverse):
        step_mask, has_mask = _mask_args(xp, mask, t, no_mask)
        h_prev = _previous(xp, h_states, h0, t, reverse)
        _launch(kernel, batch, hidden, d_input[t], d_hidden[t], carried, gates_all[t], hidden_n_all[t], h_prev,
                product, d_output[t], step_mask, has_mask)
        xp.matmul(d_hidden[t], weight_hh, out=product)        # (δ of the hidden side) W_hh
    previous = _previous_all(xp, h_states, h0, reverse)
    return d_input, product + carried, matmul_sum(d_hidden, previous), d_hidden.sum(axis=(0, 1))


# -- dropout ------------------------------------------------------------------------------------------------

def apply_dropout(x, draws, threshold, scale):
    """x ⊙ [draws ≥ threshold] · scale, on x's device (the formula of numpy_backend.apply_dropout, which CuPy
    runs as it is)."""
    factor = (draws >= threshold).astype(x.dtype)
    factor *= x.dtype.type(scale)
    return x * factor
