"""Which compiled helpers run: plain NumPy, or numba-compiled elementwise kernels where numba is installed.

The numba kernels (fused recurrent steps, the fused Adam update) are an optional speed-up, installed with
`pip install 'chainrule[fast]'`; everything has a NumPy implementation that gives the same results to
rounding, and the tests run both. The default is numba when it is importable, unless the environment
variable CHAINRULE_KERNELS=numpy says otherwise; `use_backend` switches at run time.
"""
from __future__ import annotations

import os

BACKENDS = ("numpy", "numba")
_state = {"name": ""}


def numba_available() -> bool:
    """True when numba can be imported.

    >>> isinstance(numba_available(), bool)
    True
    """
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def use_backend(name: str) -> None:
    """Select "numpy" (always available) or "numba" (needs numba installed).

    >>> previous = backend_name()
    >>> use_backend("numpy"); backend_name()
    'numpy'
    >>> use_backend(previous)
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; expected one of {BACKENDS}")
    if name == "numba" and not numba_available():
        raise RuntimeError("the numba backend needs numba: pip install 'chainrule[fast]'")
    _state["name"] = name


def backend_name() -> str:
    """The backend in use ("numpy" or "numba")."""
    if not _state["name"]:
        use_backend(os.environ.get("CHAINRULE_KERNELS", "numba" if numba_available() else "numpy"))
    return _state["name"]
