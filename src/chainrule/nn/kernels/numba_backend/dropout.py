"""Dropout as one compiled pass over arrays of up to three dimensions (others go to NumPy)."""
from __future__ import annotations

import numpy as np
from numba import njit

from .. import numpy_backend


@njit(cache=True, error_model="numpy")
def _dropout(x, draws, threshold, scale, out):
    """out = x ⊙ [draws ≥ threshold] · scale over [I, J, K] arrays of any strides (a factor of 0, not a
    select, so a dropped NaN stays NaN as in x · mask)."""
    zero = out.dtype.type(0.0)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            for k in range(x.shape[2]):
                out[i, j, k] = x[i, j, k] * (scale if draws[i, j, k] >= threshold else zero)


def apply_dropout(x: np.ndarray, draws: np.ndarray, threshold: int, scale: float) -> np.ndarray:
    """x ⊙ [draws ≥ threshold] · scale, a new array of x's shape and dtype (inverted dropout).

    Shapes, dtypes and what is returned: `contract.KernelBackend.apply_dropout`.
    """
    if x.ndim > 3 or x.size == 0 or x.dtype == np.float16:   # numba has no float16 arithmetic
        return numpy_backend.apply_dropout(x, draws, threshold, scale)
    out = np.empty(x.shape, x.dtype)
    as_3d = (1,) * (3 - x.ndim) + x.shape
    _dropout(x.reshape(as_3d), draws.reshape(as_3d), threshold, x.dtype.type(scale), out.reshape(as_3d))
    return out
