"""Summing rows into rows: the gradient of a row lookup (x[index] with an integer array, an embedding)."""
from __future__ import annotations

import numpy as np

from .backend import backend_name
from .device import NUMPY, backend_of


def scatter_rows(g: np.ndarray, shape: tuple[int, ...], index: np.ndarray) -> np.ndarray:
    """Sum the rows of g into the rows `index` names: the gradient of x[index] for an integer array
    (an embedding lookup), as an array of `shape`. numba: one compiled pass. NumPy: for a few rows, one
    matrix product with the one-hot matrix (onehotᵀ g); for many, sort and add runs.

    >>> scatter_rows(np.ones((3, 2)), (4, 2), np.array([1, 3, 1])).tolist()
    [[0.0, 0.0], [2.0, 2.0], [0.0, 0.0], [1.0, 1.0]]
    """
    rows = shape[0]
    device = backend_of(g)
    if device is not NUMPY:  # on a GPU: one atomic scatter-add (cupyx.scatter_add)
        out = device.xp.zeros_like(g, shape=shape)
        device.scatter_add(out, device.xp.asarray(index), g)
        return out
    flat = index.reshape(-1) % rows if index.size and index.min() < 0 else index.reshape(-1)
    values = g.reshape(flat.size, int(np.prod(shape[1:])))  # not -1: g may have no elements
    if backend_name() == "numba" and g.dtype != np.float16:  # numba has no float16 arithmetic
        from .numba_rows import scatter_add_rows  # numba loaded on first use
        out = np.zeros((rows, values.shape[1]), g.dtype)
        scatter_add_rows(out, flat, np.ascontiguousarray(values))
        return out.reshape(shape)
    if rows * flat.size <= 1 << 24:
        onehot = np.zeros((flat.size, rows), g.dtype)
        onehot[np.arange(flat.size), flat] = 1
        summed = onehot.T @ values
        if np.isfinite(summed).all():  # else 0 · inf would leak into other rows: add exactly below
            return summed.reshape(shape)
    out = np.zeros((rows, values.shape[1]), g.dtype)
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    out[ordered[starts]] = np.add.reduceat(values[order], starts, axis=0)
    return out.reshape(shape)
