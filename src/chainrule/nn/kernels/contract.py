"""The contract every recurrent-kernel backend keeps: what `nn.fused` calls, with which arrays, and what it gets back.

A backend is a module with the seven functions of `KernelBackend` below (`numpy_backend` and `numba_backend`
are the two there are); `chainrule.nn.kernels.kernel_module()` returns the one in use. A forward runs a whole
layer (one direction) over a whole sequence and returns, besides its outputs, a cache record that only the
same backend's backward reads; the records are the named tuples below, the same for every backend.

Dimensions, named once:

    T  time steps            B  batch (sequences)       H  hidden size
    G  gate width: H for the vanilla RNN, 4H for the LSTM (gates i, f, g, o), 3H for the GRU (r, z, n)
    V  vocabulary: rows of the input-projection table when the LSTM reads token ids

Every floating-point array of one call has the same dtype, float32 or float64; the kernels neither check nor
convert it, `nn.fused` and the layers do (a float16 layer's arrays arrive in float32, and its results are
stored back in float16). `projected` holds the input projections of all steps, x_t W_ihᵀ + b_ih (+ b_hh for
the RNN; the LSTM takes b_ih + b_hh as `bias`), computed beforehand as one product (or looked up by token,
`nn.fused` does that for the RNN and the GRU, the LSTM kernel itself). `mask` is None or a boolean [T, B, 1]:
where it is False, step t of sequence b is padding, the state passes through unchanged and the step's output
gradient is ignored. `reverse` runs time backwards (step T-1 first), as the second direction of a
bidirectional layer does. States h_t are rows: [B, H].

The arrays a forward returns may come from a pool and be reused by a later call once nobody refers to them;
a caller that keeps one beyond the layer's backward copies it. A backward may overwrite its cache's arrays
only when told so (`overwrite_cache`); `nn.fused` drops the cache once the backward has run.
"""
from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np


class RNNCache(NamedTuple):
    """What `rnn_forward` keeps for `rnn_backward`."""

    states: np.ndarray               # [T, B, H] h_t of every step (padding steps hold the carried state)
    h0: np.ndarray                   # [B, H] the initial state
    mask: np.ndarray | None          # [T, B, 1] bool, or None
    reverse: bool
    nonlinearity: str                # "tanh" or "relu"
    weight_hh_t: np.ndarray          # [H, H] W_hhᵀ as the forward multiplied by it


class LSTMCache(NamedTuple):
    """What `lstm_forward` keeps for `lstm_backward`."""

    gates: np.ndarray                # [T, B, 4H] the activated gates [i, f, g, o] of every step
    h_states: np.ndarray             # [T, B, H] h_t
    c_states: np.ndarray             # [T, B, H] c_t
    tanh_c: np.ndarray               # [T, B, H] tanh(c_t)
    h0: np.ndarray                   # [B, H]
    c0: np.ndarray                   # [B, H]
    mask: np.ndarray | None          # [T, B, 1] bool, or None
    reverse: bool
    weight_hh_t: np.ndarray | None   # [H, 4H] W_hhᵀ if the forward made a copy the backward can reuse, else None


class GRUCache(NamedTuple):
    """What `gru_forward` keeps for `gru_backward`."""

    gates: np.ndarray                # [T, B, 3H] r, z (activated) and n = tanh(p_n + r ⊙ (h W_hnᵀ + b_hn))
    hidden_n: np.ndarray             # [T, B, H] h_{t-1} W_hnᵀ + b_hn, the term r scales
    h_states: np.ndarray             # [T, B, H] h_t
    h0: np.ndarray                   # [B, H]
    mask: np.ndarray | None          # [T, B, 1] bool, or None
    reverse: bool
    weight_hh_t: np.ndarray | None   # [H, 3H] W_hhᵀ if the forward made a copy the backward can reuse, else None


class KernelBackend(Protocol):
    """The functions a kernel backend module defines (a module satisfies this Protocol structurally)."""

    def rnn_forward(self, projected: np.ndarray, h0: np.ndarray, weight_hh: np.ndarray, mask: np.ndarray | None,
                    reverse: bool, nonlinearity: str) -> tuple[np.ndarray, np.ndarray, RNNCache]:
        """h_t = act(p_t + h_{t-1} W_hhᵀ), act = tanh or relu (`nonlinearity`).

        projected [T, B, H] (b_ih + b_hh included), h0 [B, H], weight_hh [H, H].
        Returns the states [T, B, H] (all steps, padding steps holding the carried state), the final
        state [B, H] (after the last step read, step 0 when `reverse`) and the cache.
        """

    def rnn_backward(self, cache: RNNCache, weight_hh: np.ndarray, d_output: np.ndarray,
                     d_h_last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """BPTT of `rnn_forward`: δ_t = (dL/dh_t) ⊙ act'(·), dL/dh_{t-1} = δ_t W_hh (+ what padding carried).

        d_output [T, B, H]: the gradient reaching each step's output (from the layers above, zero at
        padding); d_h_last [B, H]: the gradient reaching the final state. Returns dL/dprojected [T, B, H]
        (δ, also the gradient of the biases summed over T and B), dL/dh0 [B, H] and dL/dW_hh [H, H]
        = Σ_t δ_tᵀ h_{t-1}.
        """

    def lstm_forward(self, projected: np.ndarray, h0: np.ndarray, c0: np.ndarray, weight_hh: np.ndarray,
                     bias: np.ndarray | None, mask: np.ndarray | None, reverse: bool,
                     tokens: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, LSTMCache]:
        """[i, f, g, o] = [σ, σ, tanh, σ](p_t + bias + h_{t-1} W_hhᵀ); c_t = f ⊙ c_{t-1} + i ⊙ g; h_t = o ⊙ tanh(c_t).

        projected [T, B, 4H], or with `tokens` (integer [T, B], ids the caller checked to lie in [0, V)) a
        table [V, 4H] whose row tokens[t, b] is p_t of sequence b; bias [4H] or None (added here, sparing a pass over
        `projected`); h0, c0 [B, H]; weight_hh [4H, H]. Returns h_t of every step [T, B, H], the final
        h and c [B, H] and the cache.
        """

    def lstm_backward(self, cache: LSTMCache, weight_hh: np.ndarray, d_output: np.ndarray, d_h_last: np.ndarray,
                      d_c_last: np.ndarray, overwrite_cache: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """BPTT of `lstm_forward`. d_output [T, B, H], d_h_last and d_c_last [B, H].

        Returns δ = dL/d(pre-activation gates) [T, B, 4H] (the gradient of `projected` in its [T, B, 4H]
        form, and of `bias` summed over T and B; the caller scatters it into the table's rows when the
        forward read tokens), dL/dh0 and dL/dc0 [B, H], dL/dW_hh [4H, H]. With `overwrite_cache` the δ may be
        written over the cache's gates (the graph is not kept for another backward).
        """

    def gru_forward(self, projected: np.ndarray, h0: np.ndarray, weight_hh: np.ndarray, bias_hh: np.ndarray | None,
                    mask: np.ndarray | None, reverse: bool) -> tuple[np.ndarray, np.ndarray, GRUCache]:
        """r, z = σ(p_{r,z} + h_{t-1} W_h{r,z}ᵀ + b_h{r,z}); n = tanh(p_n + r ⊙ (h_{t-1} W_hnᵀ + b_hn));
        h_t = n + z ⊙ (h_{t-1} - n) (PyTorch's GRU).

        projected [T, B, 3H] (b_ih included, b_hh not: r scales b_hn), h0 [B, H], weight_hh [3H, H],
        bias_hh [3H] or None. Returns h_t of every step [T, B, H], the final state [B, H] and the cache.
        """

    def gru_backward(self, cache: GRUCache, weight_hh: np.ndarray, d_output: np.ndarray,
                     d_h_last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """BPTT of `gru_forward`. d_output [T, B, H], d_h_last [B, H].

        Returns dL/dprojected [T, B, 3H], dL/dh0 [B, H], dL/dW_hh [3H, H] and dL/db_hh [3H].
        """

    def apply_dropout(self, x: np.ndarray, draws: np.ndarray, threshold: int, scale: float) -> np.ndarray:
        """x ⊙ [draws ≥ threshold] · scale, a new array of x's shape and dtype (inverted dropout).

        draws: uint16 of x's shape, uniform random bits; threshold = round(p · 65536) for a drop
        probability p, scale = 1 / (1 - p). The backward calls it again with the same draws on the gradient.
        A dropped NaN stays NaN, as x · 0 does.
        """
