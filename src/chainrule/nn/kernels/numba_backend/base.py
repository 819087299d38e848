"""What the numba cells share: the switch for compiled time loops, the compiled tanh, the table of
kept (unpadded) steps, the blocked copy across and the backward's step product."""
from __future__ import annotations

import math
import numpy as np
from numba import njit, types
from numba.extending import overload

from .. import blas
from ..common import reusable_empty
from ..blas import gemm


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


# tanh(x) ≈ x P(u) / Q(u), u = (x / 9)², for |x| ≤ 9 (beyond, tanh rounds to ±1 in float32). Coefficients
# from benchmarks/tanh_approximation.py (a weighted least-squares fit of the relative error, refined to
# minimax by Lawson's iteration). Evaluated in float32 with fused multiply-adds it stays within a few
# units in the last place of the correctly rounded tanh and beats np.tanh (BENCHMARKS.md, "The compiled tanh").
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
def _state_before(states, initial, t, reverse):
    """The state step t started from: states[t - 1] (states[t + 1] when reversed), or the initial state."""
    previous_t = t + 1 if reverse else t - 1
    return states[previous_t] if 0 <= previous_t < states.shape[0] else initial


# The backward's step product dL/dh_{t-1} = δ_t W_hh: from H = 512 it runs faster transposed, as W_hhᵀ δ_tᵀ
# into an [H, B] buffer (the wide matrix first, as in the forward) copied across, with W_hhᵀ made once per
# call; below that the plain form into d_h is as fast or faster (BENCHMARKS.md, "The backward step product").
_TRANSPOSED_BACK_PRODUCT_FROM = 512


def _back_product_operands(weight_hh, dtype):
    """W_hh contiguous, and W_hhᵀ where the rule above says transposed (else an empty array)."""
    weight_hh = np.ascontiguousarray(weight_hh, dtype=dtype)
    if weight_hh.shape[1] < _TRANSPOSED_BACK_PRODUCT_FROM:
        return weight_hh, np.empty((0, 0), dtype)
    weight_hh_t = reusable_empty(weight_hh.shape[::-1], dtype)
    _copy_across(weight_hh, weight_hh_t)   # blocked: NumPy's copy of a transpose misses the cache per element
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
