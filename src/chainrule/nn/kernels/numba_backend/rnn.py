"""The vanilla RNN: the forward is NumPy's (a step is three NumPy calls, nothing to fuse); each backward
step's arithmetic is one compiled pass."""
from __future__ import annotations

import numpy as np
from numba import njit

from .. import numpy_backend
from ..contract import RNNCache
from ..common import back_product, recurrent_weight_gradient, reusable_empty, time_order
from .base import _keep_table


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


def rnn_forward(projected: np.ndarray, h0: np.ndarray, weight_hh: np.ndarray, mask: np.ndarray | None, reverse: bool,
                nonlinearity: str) -> tuple[np.ndarray, np.ndarray, RNNCache]:
    """h_t = act(p_t + h_{t-1} W_hhᵀ), act = tanh or relu (`nonlinearity`).

    Shapes, dtypes and what is returned: `contract.KernelBackend.rnn_forward`.
    """
    return numpy_backend.rnn_forward(projected, h0, weight_hh, mask, reverse, nonlinearity)


def rnn_backward(cache: RNNCache, weight_hh: np.ndarray, d_output: np.ndarray,
                 d_h_last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BPTT of `rnn_forward`: δ_t = (dL/dh_t) ⊙ act'(·), dL/dh_{t-1} = δ_t W_hh (+ what padding carried).

    Shapes, dtypes and what is returned: `contract.KernelBackend.rnn_backward`.
    """
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
