"""Fused recurrent layers: one graph node per layer and direction, with hand-written BPTT.

Inputs are time-major: x [T, B, I], states [B, H]. `mask` is None or a boolean [T, B, 1] array: where it
is False the step is padding, the state passes through unchanged and the output is 0. `reverse` runs
time backwards, so with a mask each sequence is read from its own last step back to its first.

Forward: the input projections of all time steps as one matrix product, then the recurrent loop.
Backward: the loop in reverse, then the weight gradients as one matrix product each:
dW_ih = Σ_t δ_tᵀ x_t, dW_hh = Σ_t δ_tᵀ h_{t-1}, over all steps at once.
"""
from __future__ import annotations

import numpy as np

from ..function import Function


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0, -x)).astype(x.dtype, copy=False)


def _project_inputs(x: np.ndarray, weight_ih: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    steps, batch, features = x.shape
    projected = x.reshape(steps * batch, features) @ weight_ih.T
    if bias is not None:
        projected += bias
    return projected.reshape(steps, batch, -1)


def _time_order(steps: int, reverse: bool) -> range:
    return range(steps - 1, -1, -1) if reverse else range(steps)


def _input_and_weight_grads(x: np.ndarray, h_previous: np.ndarray, weight_ih: np.ndarray,
                            d_input_pre: np.ndarray, d_hidden_pre: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx = δ_x W_ih, dW_ih = δ_xᵀ x, dW_hh = δ_hᵀ h_{t-1}, each one product over all steps."""
    steps, batch, features = x.shape
    delta_x = d_input_pre.reshape(steps * batch, -1)
    delta_h = d_hidden_pre.reshape(steps * batch, -1)
    d_x = (delta_x @ weight_ih).reshape(steps, batch, features)
    d_weight_ih = delta_x.T @ x.reshape(steps * batch, features)
    d_weight_hh = delta_h.T @ h_previous.reshape(steps * batch, -1)
    return d_x, d_weight_ih, d_weight_hh


class FusedRNN(Function):
    """h_t = act(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh), act tanh or relu."""

    differentiable_backward = False

    @staticmethod
    def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh, mask, reverse, nonlinearity):
        bias = None if bias_ih is None else bias_ih + bias_hh
        projected = _project_inputs(x, weight_ih, bias)
        steps = x.shape[0]
        hidden_all = np.empty(projected.shape, x.dtype)      # h_t before masking
        h_previous = np.empty(projected.shape, x.dtype)
        output = np.empty(projected.shape, x.dtype)
        h = h0
        weight_hh_t = weight_hh.T
        for t in _time_order(steps, reverse):
            h_previous[t] = h
            pre = projected[t] + h @ weight_hh_t
            h_new = np.tanh(pre) if nonlinearity == "tanh" else np.maximum(pre, 0)
            hidden_all[t] = h_new
            if mask is None:
                output[t] = h = h_new
            else:
                output[t] = h_new * mask[t]
                h = np.where(mask[t], h_new, h)
        ctx.save_for_backward(x, weight_ih, weight_hh)
        ctx.cache = (hidden_all, h_previous, mask, reverse, nonlinearity, bias_ih is not None)
        return output, h

    @staticmethod
    def backward(ctx, d_output, d_h_last):
        x, weight_ih, weight_hh = ctx.saved_tensors
        hidden_all, h_previous, mask, reverse, nonlinearity, has_bias = ctx.cache
        d_pre = np.empty(hidden_all.shape, x.dtype)
        d_h = d_h_last
        for t in _time_order(x.shape[0], not reverse):
            if mask is None:
                d_h_new, carried = d_h + d_output[t], 0.0
            else:
                d_h_new, carried = (d_h + d_output[t]) * mask[t], d_h * ~mask[t]
            h_t = hidden_all[t]
            # δ_t = dL/dh_t ⊙ act'(·); dL/dh_{t-1} = δ_t W_hh (the seed's W_hhᵀ δ in column form)
            d_pre[t] = d_h_new * (1 - h_t * h_t) if nonlinearity == "tanh" else d_h_new * (h_t > 0)
            d_h = d_pre[t] @ weight_hh + carried
        d_x, d_weight_ih, d_weight_hh = _input_and_weight_grads(x, h_previous, weight_ih, d_pre, d_pre)
        d_bias = d_pre.sum(axis=(0, 1)) if has_bias else None
        return d_x, d_h, d_weight_ih, d_weight_hh, d_bias, d_bias, None, None, None


class FusedLSTM(Function):
    """Gates i, f, g, o = σ, σ, tanh, σ of x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh;
    c_t = f ⊙ c_{t-1} + i ⊙ g, h_t = o ⊙ tanh(c_t)."""

    differentiable_backward = False

    @staticmethod
    def forward(ctx, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, mask, reverse):
        bias = None if bias_ih is None else bias_ih + bias_hh
        projected = _project_inputs(x, weight_ih, bias)
        steps, batch, _ = x.shape
        hidden = weight_hh.shape[1]
        gates_all = np.empty(projected.shape, x.dtype)       # activated i, f, g, o
        state_shape = (steps, batch, hidden)
        c_previous, h_previous = np.empty(state_shape, x.dtype), np.empty(state_shape, x.dtype)
        tanh_c_all, output = np.empty(state_shape, x.dtype), np.empty(state_shape, x.dtype)
        h, c = h0, c0
        weight_hh_t = weight_hh.T
        for t in _time_order(steps, reverse):
            h_previous[t], c_previous[t] = h, c
            gates = projected[t] + h @ weight_hh_t
            gates[:, :2 * hidden] = _sigmoid(gates[:, :2 * hidden])
            gates[:, 2 * hidden:3 * hidden] = np.tanh(gates[:, 2 * hidden:3 * hidden])
            gates[:, 3 * hidden:] = _sigmoid(gates[:, 3 * hidden:])
            gates_all[t] = gates
            i, f, g, o = gates[:, :hidden], gates[:, hidden:2 * hidden], gates[:, 2 * hidden:3 * hidden], gates[:, 3 * hidden:]
            c_new = f * c + i * g
            tanh_c = np.tanh(c_new)
            tanh_c_all[t] = tanh_c
            h_new = o * tanh_c
            if mask is None:
                output[t] = h = h_new
                c = c_new
            else:
                output[t] = h_new * mask[t]
                h = np.where(mask[t], h_new, h)
                c = np.where(mask[t], c_new, c)
        ctx.save_for_backward(x, weight_ih, weight_hh)
        ctx.cache = (gates_all, c_previous, h_previous, tanh_c_all, mask, reverse, bias_ih is not None)
        return output, h, c

    @staticmethod
    def backward(ctx, d_output, d_h_last, d_c_last):
        x, weight_ih, weight_hh = ctx.saved_tensors
        gates_all, c_previous, h_previous, tanh_c_all, mask, reverse, has_bias = ctx.cache
        hidden = weight_hh.shape[1]
        d_gates_all = np.empty(gates_all.shape, x.dtype)
        d_h, d_c = d_h_last, d_c_last
        for t in _time_order(x.shape[0], not reverse):
            gates = gates_all[t]
            i, f, g, o = gates[:, :hidden], gates[:, hidden:2 * hidden], gates[:, 2 * hidden:3 * hidden], gates[:, 3 * hidden:]
            if mask is None:
                d_h_new, d_c_new = d_h + d_output[t], d_c
                carried_h = carried_c = 0.0
            else:
                keep = mask[t]
                d_h_new, d_c_new = (d_h + d_output[t]) * keep, d_c * keep
                carried_h, carried_c = d_h * ~keep, d_c * ~keep
            tanh_c = tanh_c_all[t]
            # dL/dc_t += dL/dh_t ⊙ o ⊙ (1 - tanh²(c_t))
            d_c_new = d_c_new + d_h_new * o * (1 - tanh_c * tanh_c)
            d_gates = d_gates_all[t]
            d_gates[:, :hidden] = d_c_new * g * i * (1 - i)
            d_gates[:, hidden:2 * hidden] = d_c_new * c_previous[t] * f * (1 - f)
            d_gates[:, 2 * hidden:3 * hidden] = d_c_new * i * (1 - g * g)
            d_gates[:, 3 * hidden:] = d_h_new * tanh_c * o * (1 - o)
            d_h = d_gates @ weight_hh + carried_h
            d_c = d_c_new * f + carried_c
        d_x, d_weight_ih, d_weight_hh = _input_and_weight_grads(x, h_previous, weight_ih, d_gates_all, d_gates_all)
        d_bias = d_gates_all.sum(axis=(0, 1)) if has_bias else None
        return d_x, d_h, d_c, d_weight_ih, d_weight_hh, d_bias, d_bias, None, None


class FusedGRU(Function):
    """r, z = σ(x W_i{r,z}ᵀ + b_i{r,z} + h W_h{r,z}ᵀ + b_h{r,z}); n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn));
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}."""

    differentiable_backward = False

    @staticmethod
    def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh, mask, reverse):
        projected = _project_inputs(x, weight_ih, bias_ih)
        steps, batch, _ = x.shape
        hidden = weight_hh.shape[1]
        gates_all = np.empty(projected.shape, x.dtype)       # r, z, n
        hidden_n_all = np.empty((steps, batch, hidden), x.dtype)  # h W_hnᵀ + b_hn, which r scales
        h_previous, output = np.empty((steps, batch, hidden), x.dtype), np.empty((steps, batch, hidden), x.dtype)
        h = h0
        weight_hh_t = weight_hh.T
        for t in _time_order(steps, reverse):
            h_previous[t] = h
            from_hidden = h @ weight_hh_t
            if bias_hh is not None:
                from_hidden += bias_hh
            x_t = projected[t]
            gates = gates_all[t]
            gates[:, :2 * hidden] = _sigmoid(x_t[:, :2 * hidden] + from_hidden[:, :2 * hidden])
            r, z = gates[:, :hidden], gates[:, hidden:2 * hidden]
            hidden_n_all[t] = from_hidden[:, 2 * hidden:]
            n = gates[:, 2 * hidden:] = np.tanh(x_t[:, 2 * hidden:] + r * from_hidden[:, 2 * hidden:])
            h_new = n + z * (h - n)
            if mask is None:
                output[t] = h = h_new
            else:
                output[t] = h_new * mask[t]
                h = np.where(mask[t], h_new, h)
        ctx.save_for_backward(x, weight_ih, weight_hh)
        ctx.cache = (gates_all, hidden_n_all, h_previous, mask, reverse, bias_ih is not None)
        return output, h

    @staticmethod
    def backward(ctx, d_output, d_h_last):
        x, weight_ih, weight_hh = ctx.saved_tensors
        gates_all, hidden_n_all, h_previous, mask, reverse, has_bias = ctx.cache
        hidden = weight_hh.shape[1]
        d_input_pre = np.empty(gates_all.shape, x.dtype)   # gradient of x W_ihᵀ + b_ih
        d_hidden_pre = np.empty(gates_all.shape, x.dtype)  # gradient of h W_hhᵀ + b_hh
        d_h = d_h_last
        for t in _time_order(x.shape[0], not reverse):
            gates = gates_all[t]
            r, z, n = gates[:, :hidden], gates[:, hidden:2 * hidden], gates[:, 2 * hidden:]
            if mask is None:
                d_h_new, carried = d_h + d_output[t], 0.0
            else:
                d_h_new, carried = (d_h + d_output[t]) * mask[t], d_h * ~mask[t]
            d_n_pre = d_h_new * (1 - z) * (1 - n * n)
            d_z_pre = d_h_new * (h_previous[t] - n) * z * (1 - z)
            d_r_pre = d_n_pre * hidden_n_all[t] * r * (1 - r)
            d_in, d_hid = d_input_pre[t], d_hidden_pre[t]
            d_in[:, :hidden] = d_hid[:, :hidden] = d_r_pre
            d_in[:, hidden:2 * hidden] = d_hid[:, hidden:2 * hidden] = d_z_pre
            d_in[:, 2 * hidden:] = d_n_pre
            d_hid[:, 2 * hidden:] = d_n_pre * r
            d_h = d_hid @ weight_hh + d_h_new * z + carried
        d_x, d_weight_ih, d_weight_hh = _input_and_weight_grads(x, h_previous, weight_ih, d_input_pre, d_hidden_pre)
        d_bias_ih = d_input_pre.sum(axis=(0, 1)) if has_bias else None
        d_bias_hh = d_hidden_pre.sum(axis=(0, 1)) if has_bias else None
        return d_x, d_h, d_weight_ih, d_weight_hh, d_bias_ih, d_bias_hh, None, None
