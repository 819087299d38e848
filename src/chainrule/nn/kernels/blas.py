"""NumPy's own BLAS matrix product, callable from numba-compiled code.

The numba LSTM runs its whole time loop in one compiled call (see `numba_backend`), so its per-step
products cannot go through `np.matmul`. numba's own `np.dot` would need SciPy (a second OpenBLAS with its
own thread pool); instead this module finds the `cblas_?gemm` that NumPy's wheel already ships and
registers it under a fixed name for LLVM, so compiled code calls the very library, and the threads, NumPy
uses. The name is resolved when the code is linked, so numba's on-disk cache keeps working.

Where NumPy's BLAS cannot be found (a NumPy built against another BLAS whose symbols are not looked for
here), `AVAILABLE` is False and the numba backend keeps its time loops in Python with `np.matmul`.

>>> isinstance(AVAILABLE, bool)
True
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

# (single, double, integer width) as exported by the BLAS builds NumPy's wheels bundle
_SYMBOLS = (("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", 64),   # scipy-openblas64 (NumPy ≥ 2 wheels)
            ("scipy_cblas_sgemm", "scipy_cblas_dgemm", 32),         # scipy-openblas32
            ("cblas_sgemm64_", "cblas_dgemm64_", 64),
            ("cblas_sgemm", "cblas_dgemm", 32))

ROW_MAJOR, NO_TRANSPOSE, TRANSPOSE = 101, 111, 112


def _find_gemm() -> tuple[int, int, int] | None:
    """Addresses of NumPy's sgemm and dgemm (CBLAS interface) and the BLAS integer width, or None."""
    folder = os.path.dirname(np.__file__)
    candidates = sorted(glob.glob(os.path.join(folder, "..", "numpy.libs", "*blas*"))
                        + glob.glob(os.path.join(folder, ".dylibs", "*blas*")))
    for path in candidates:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for single, double, width in _SYMBOLS:
            try:
                pointers = getattr(library, single), getattr(library, double)
            except AttributeError:
                continue
            return (*(ctypes.cast(pointer, ctypes.c_void_p).value for pointer in pointers), width)  # type: ignore[return-value]  # symbols found are non-NULL
    return None


def _register() -> bool:
    found = _find_gemm()
    if found is None:
        return False
    import llvmlite.binding as llvm
    from numba import types
    from numba.extending import overload

    single, double, width = found
    llvm.add_symbol("chainrule_sgemm", single)
    llvm.add_symbol("chainrule_dgemm", double)
    # pointers travel as 64-bit integers (array.ctypes.data): the same registers and stack slots as void*
    integer, enum = (types.int64 if width == 64 else types.int32), types.int32
    external = {}
    for name, scalar in (("chainrule_sgemm", types.float32), ("chainrule_dgemm", types.float64)):
        signature = types.void(enum, enum, enum, integer, integer, integer, scalar, types.intp, integer,
                               types.intp, integer, scalar, types.intp, integer)
        external[scalar] = types.ExternalFunction(name, signature)

    @overload(gemm)
    def _gemm(a, b, c, transpose_b, accumulate):
        if c.dtype not in external:
            return None
        product = external[c.dtype]
        scalar = c.dtype

        def call(a, b, c, transpose_b, accumulate):
            rows, inner = a.shape
            columns = c.shape[1]
            product(ROW_MAJOR, NO_TRANSPOSE, TRANSPOSE if transpose_b else NO_TRANSPOSE, rows, columns, inner,
                    scalar(1.0), a.ctypes.data, inner, b.ctypes.data, b.shape[1],
                    scalar(1.0 if accumulate else 0.0), c.ctypes.data, columns)
        return call
    return True


def gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray, transpose_b: bool, accumulate: bool) -> None:
    """c = a @ (bᵀ if transpose_b else b) (+ c if accumulate), for C-contiguous 2-D float arrays of one
    dtype, inside numba-compiled code (in Python, the same through NumPy).

    >>> a, b, c = np.ones((2, 3)), np.ones((4, 3)), np.zeros((2, 4))
    >>> gemm(a, b, c, True, False); c
    array([[3., 3., 3., 3.],
           [3., 3., 3., 3.]])
    """
    product = a @ (b.T if transpose_b else b)
    if accumulate:
        c += product
    else:
        c[...] = product


try:
    AVAILABLE = _register()
except ImportError:   # numba (and llvmlite) not installed: nothing to register for
    AVAILABLE = False
