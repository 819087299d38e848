"""Fused recurrent layers: one graph node per layer and direction, with hand-written BPTT.

Each node takes the input projections of all time steps, computed beforehand as one matrix product
(`projected` [T, B, G] = x W_ihᵀ + biases), so it holds only the recurrence:

- forward: the time loop, writing every step's gates and states into preallocated arrays;
- backward: the time loop in reverse, one small matrix product δ_t W_hh per step; then the gradient of
  W_hh as one product over all steps: dW_hh = Σ_t δ_tᵀ h_{t-1}.

The gradient returned for `projected` flows on through the engine to x, W_ih and the biases. The loops
live in `kernels` (a NumPy backend and a numba one, chosen by `kernels.use_backend`).

States are [B, H]. `mask` is None or a boolean [T, B, 1]: where it is False the step is padding, the state
passes through unchanged and the output is 0, selected (never multiplied by 0, which keeps an inf or NaN of
a padded step away from the outputs and gradients of the real ones). `reverse` runs time backwards, so with
a mask each sequence is read from its own last step back to its first. Any batch size works, 0 included.

float16: the kernels run in float32 (`_COMPUTE_DTYPE`) and the results are rounded to float16 once, so no
sum over steps or sequences (dW_hh = Σ_t δ_tᵀ h_{t-1}, the bias gradient, a token table's rows) and no state
carried from step to step is rounded to float16 on the way: float16 stores, float32 computes.
"""
from __future__ import annotations

import numpy as np

from .._kernels.device import array_module
from .._kernels.rows import scatter_rows
from ..autograd.function import Function, is_graph_retained
from .kernels import kernel_module


# the dtype the kernels compute in for each stored dtype (float16 has no BLAS, and its sums overflow or stall)
_COMPUTE_DTYPE = {np.dtype(np.float16): np.dtype(np.float32)}


def _compute(*arrays):
    """The arrays in the kernels' compute dtype (None passes through), and the dtype to store results in."""
    stored = next(a.dtype for a in arrays if a is not None)
    wanted = _COMPUTE_DTYPE.get(stored)
    if wanted is None:
        return arrays, None
    return tuple(None if a is None else a.astype(wanted) for a in arrays), stored


def _stored(dtype, *arrays):
    """Results back in the stored dtype (unchanged when the kernels ran in it)."""
    if dtype is None:
        return arrays
    return tuple(None if a is None else a.astype(dtype) for a in arrays)


def _output(states, mask):
    """The layer's output: the states, 0 at padding (a select: a state there may be inf)."""
    return states if mask is None else np.where(mask, states, states.dtype.type(0))


class _FusedFunction(Function):
    differentiable_backward = False

    def release(self) -> None:
        """Also free the kernels' per-step arrays (gates, states), which are most of a layer's memory."""
        super().release()
        self.cache = None


def _add_bias(projected, bias):
    """p_t + b in the compute dtype (so that its gradient, Σ over steps and sequences, is summed there too)."""
    return projected if bias is None else projected + bias


def _token_rows(ctx, table, tokens):
    """With `tokens` ([T, B] ids), `table` is [vocabulary, G]: check the ids, remember what backward needs."""
    ctx.tokens, ctx.table_shape = tokens, table.shape
    if tokens is not None:
        _check_tokens(tokens, table.shape)


def _table_gradient(ctx, d_projected):
    """The gradient of the table: each step's δ summed into its token's row (in the compute dtype)."""
    return d_projected if ctx.tokens is None else scatter_rows(d_projected, ctx.table_shape, ctx.tokens)


class FusedRNN(_FusedFunction):
    """h_t = act(p_t + b + h_{t-1} W_hhᵀ) with p_t = x_t W_ihᵀ and b = b_ih + b_hh (or None); act is tanh or relu.
    With `tokens` ([T, B] ids), `projected` is a [vocabulary, H] table and p_t its rows tokens[t]."""

    @staticmethod
    def forward(ctx, projected, h0, weight_hh, bias, mask, reverse, nonlinearity, tokens=None):
        kernels = kernel_module(weight_hh)
        _token_rows(ctx, projected, tokens)
        (projected, h0, weight_hh, bias), ctx.stored = _compute(projected, h0, weight_hh, bias)
        ctx.has_bias = bias is not None
        projected = _add_bias(projected if tokens is None else projected[tokens], bias)
        states, h, ctx.cache = kernels.rnn_forward(projected, h0, weight_hh, mask, reverse, nonlinearity)
        ctx.kernels = kernels
        ctx.save_for_backward(weight_hh)
        return _stored(ctx.stored, _output(states, mask), h.copy())

    @staticmethod
    def backward(ctx, d_output, d_h_last):
        (weight_hh,) = ctx.saved_tensors
        (d_output, d_h_last), _ = _compute(d_output, d_h_last)
        d_projected, d_h0, d_weight_hh = ctx.kernels.rnn_backward(ctx.cache, weight_hh, d_output, d_h_last)
        d_bias = d_projected.sum(axis=(0, 1)) if ctx.has_bias else None
        return (*_stored(ctx.stored, _table_gradient(ctx, d_projected), d_h0, d_weight_hh, d_bias), None, None, None)


def _check_tokens(tokens, table_shape):
    """The kernels index the table with the ids unchecked (compiled code): check them once here."""
    if not isinstance(tokens, np.ndarray) or tokens.dtype.kind not in "iu" or tokens.ndim != 2:
        raise TypeError(f"tokens must be a [T, B] integer array, got "
                        f"{getattr(tokens, 'dtype', type(tokens).__name__)} of shape {getattr(tokens, 'shape', None)}")
    if len(table_shape) != 2:
        raise ValueError(f"with tokens, projected must be a [vocabulary, gates] table, got shape {table_shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= table_shape[0]):
        raise IndexError(f"token ids must be in [0, {table_shape[0]}), got min {tokens.min()} and max {tokens.max()}")


class FusedLSTM(_FusedFunction):
    """Gates [i, f, g, o] = [σ, σ, tanh, σ](p_t + h_{t-1} W_hhᵀ), p_t = x_t W_ihᵀ + b_ih + b_hh;
    c_t = f ⊙ c_{t-1} + i ⊙ g, h_t = o ⊙ tanh(c_t).

    `bias` (b_ih + b_hh, or None) is added by the kernel, which saves a pass over the projections.
    With `tokens` ([T, B] integer ids), `projected` is a [vocabulary, 4H] table and p_t is its row
    tokens[t, b] for sequence b, read by the kernel step by step (layer 0 of a character model: the [T, B, 4H]
    projections are never stored); its gradient is then the table's, the rows' δ summed per token."""

    @staticmethod
    def forward(ctx, projected, h0, c0, weight_hh, bias, mask, reverse, tokens=None):
        kernels = kernel_module(weight_hh)
        _token_rows(ctx, projected, tokens)
        if tokens is not None:
            # its rows are read step by step; x W_ihᵀ comes F-ordered (the arrays' own module: CuPy on a GPU)
            projected = array_module(projected).ascontiguousarray(projected)
        (projected, h0, c0, weight_hh, bias), ctx.stored = _compute(projected, h0, c0, weight_hh, bias)
        states, h, c, ctx.cache = kernels.lstm_forward(projected, h0, c0, weight_hh, bias, mask, reverse, tokens)
        ctx.kernels, ctx.has_bias = kernels, bias is not None
        ctx.save_for_backward(weight_hh)
        return _stored(ctx.stored, _output(states, mask), h.copy(), c.copy())

    @staticmethod
    def backward(ctx, d_output, d_h_last, d_c_last):
        (weight_hh,) = ctx.saved_tensors
        (d_output, d_h_last, d_c_last), _ = _compute(d_output, d_h_last, d_c_last)
        # unless the graph is kept for another backward, the gates' storage can hold the gradients
        d_projected, d_h0, d_c0, d_weight_hh = ctx.kernels.lstm_backward(ctx.cache, weight_hh, d_output, d_h_last,
                                                                         d_c_last, not is_graph_retained())
        d_bias = d_projected.sum(axis=(0, 1)) if ctx.has_bias else None   # before δ is scattered into the table
        return (*_stored(ctx.stored, _table_gradient(ctx, d_projected), d_h0, d_c0, d_weight_hh, d_bias),
                None, None, None)


class FusedGRU(_FusedFunction):
    """r, z = σ(p_{r,z} + h W_h{r,z}ᵀ + b_h{r,z}); n = tanh(p_n + r ⊙ (h W_hnᵀ + b_hn)); h_t = n + z ⊙ (h_{t-1} - n),
    with p_t = x_t W_ihᵀ + b_ih (b_ih added here when given). With `tokens`, `projected` is a [vocabulary, 3H]
    table, as for `FusedRNN`."""

    @staticmethod
    def forward(ctx, projected, h0, weight_hh, bias_hh, bias_ih, mask, reverse, tokens=None):
        kernels = kernel_module(weight_hh)
        _token_rows(ctx, projected, tokens)
        (projected, h0, weight_hh, bias_hh, bias_ih), ctx.stored = _compute(projected, h0, weight_hh, bias_hh, bias_ih)
        ctx.has_bias_ih = bias_ih is not None
        projected = _add_bias(projected if tokens is None else projected[tokens], bias_ih)
        states, h, ctx.cache = kernels.gru_forward(projected, h0, weight_hh, bias_hh, mask, reverse)
        ctx.kernels = kernels
        ctx.has_bias = bias_hh is not None
        ctx.save_for_backward(weight_hh)
        return _stored(ctx.stored, _output(states, mask), h.copy())

    @staticmethod
    def backward(ctx, d_output, d_h_last):
        (weight_hh,) = ctx.saved_tensors
        (d_output, d_h_last), _ = _compute(d_output, d_h_last)
        d_projected, d_h0, d_weight_hh, d_bias_hh = ctx.kernels.gru_backward(ctx.cache, weight_hh, d_output, d_h_last)
        d_bias_ih = d_projected.sum(axis=(0, 1)) if ctx.has_bias_ih else None
        return (*_stored(ctx.stored, _table_gradient(ctx, d_projected), d_h0, d_weight_hh,
                         d_bias_hh if ctx.has_bias else None, d_bias_ih), None, None)
