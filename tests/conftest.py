import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import settings

# Encoded corpora go to a temporary folder, never the user's ~/.cache/chainrule; set at import, before test
# modules copy os.environ for the subprocesses they start.
_CORPUS_CACHE = tempfile.mkdtemp(prefix="chainrule-test-cache-")
os.environ["CHAINRULE_CACHE"] = _CORPUS_CACHE
atexit.register(shutil.rmtree, _CORPUS_CACHE, True)

settings.register_profile("default", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("default")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=["numpy", "numba", "numba-python-loops"])
def kernel_backend(request):
    """Run a test with each fused-kernel backend (numba only where it is installed); "numba-python-loops" is
    the numba backend with its LSTM and GRU time loops in Python, as where NumPy's BLAS cannot be reached."""
    from chainrule._kernels import backend
    name = request.param.split("-")[0]
    if name == "numba" and not backend.numba_available():
        pytest.skip("numba is not installed (pip install 'chainrule[fast]')")
    previous = backend.backend_name()
    backend.use_backend(name)
    if request.param == "numba":
        from chainrule.nn.kernels import blas
        if not blas.AVAILABLE:
            pytest.skip("NumPy's BLAS was not found, so the numba backend keeps its time loops in Python")
    loops = None
    if request.param == "numba-python-loops":
        from chainrule.nn.kernels import numba_backend
        loops = numba_backend.compiled_time_loops()
        numba_backend.compiled_time_loops(False)
    yield request.param
    if loops is not None:
        numba_backend.compiled_time_loops(loops)
    backend.use_backend(previous)
