"""The fused recurrent kernels, in two backends: plain NumPy, or numba-compiled elementwise steps.

Both run the same algorithm (a time loop with one BLAS product per step); the numba backend does each
step's gate arithmetic in one compiled pass instead of a dozen NumPy calls, and runs the LSTM's and GRU's
whole time loops compiled where it can call NumPy's BLAS itself (`blas`). Which backend runs is
`backend_name()` (`chainrule._kernels.backend`). Tests check both, and the numba one with its loops in Python too,
against the reference layers.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..._kernels.device import NUMPY, backend_of

from ..._kernels.backend import backend_name, numba_available, use_backend  # noqa: F401  (re-exported)


def kernel_module(*arrays: Any) -> ModuleType:
    """The module of fused kernels that keeps the contract of `contract.KernelBackend` for these arrays:
    `cuda_backend` when one lives on a GPU, else the backend in use (`backend_name()`: "numpy" or "numba")."""
    for array in arrays:
        if type(array) is not np.ndarray and backend_of(array) is not NUMPY:
            from . import cuda_backend as gpu  # CuPy and numba.cuda loaded on first use
            return gpu
    if backend_name() == "numba":
        from . import numba_backend as module  # numba loaded on first use
    else:
        from . import numpy_backend as module  # type: ignore[no-redef]  # the other backend, same contract
    return module
