"""Fused recurrent kernels with each step's gate arithmetic compiled by numba.

numba fuses a step's elementwise arithmetic, which NumPy does in a dozen calls with temporaries, into one
compiled pass. For the LSTM and the GRU the whole time loop is compiled as well, its per-step products
calling NumPy's own BLAS (`blas.gemm`); where that BLAS cannot be reached the loop stays in Python with
`np.matmul` around the same step kernels, as it does for the vanilla RNN (whose per-step products and
forward tanh go through NumPy). The backward has no transcendental functions left (the forward stored the
activations), so each of its steps is one compiled pass and one product, with no precomputed derivative
arrays.

Inside compiled loops tanh is `tanh` below: for float32 a rational approximation that LLVM vectorises
(numba's own tanh is a scalar libm call, far slower than NumPy's SIMD one); for float64 the exact
`math.tanh`, since float64 is the dtype of checking, not of speed.
"""
from __future__ import annotations

from .base import compiled_time_loops, tanh
from .rnn import rnn_backward, rnn_forward
from .lstm import lstm_backward, lstm_forward
from .gru import gru_backward, gru_forward
from .dropout import apply_dropout

__all__ = ["compiled_time_loops", "tanh", "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward",
           "gru_forward", "gru_backward", "apply_dropout"]
