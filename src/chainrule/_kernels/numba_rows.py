"""numba kernels for the engine: the compiled scatter-add of rows (imported only when the numba backend runs)."""
from __future__ import annotations

from numba import njit


@njit(cache=True, error_model="numpy")
def scatter_add_rows(out, index, values):
    """out[index[n]] += values[n] for every n: the gradient of a row lookup, repeats summed."""
    for n in range(index.shape[0]):
        row = index[n]
        for j in range(values.shape[1]):
            out[row, j] += values[n, j]
