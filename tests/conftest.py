import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("default", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("default")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=["numpy", "numba"])
def kernel_backend(request):
    """Run a test with each fused-kernel backend (numba only where it is installed)."""
    from chainrule import backend
    if request.param == "numba" and not backend.numba_available():
        pytest.skip("numba is not installed (pip install 'chainrule[fast]')")
    previous = backend.backend_name()
    backend.use_backend(request.param)
    yield request.param
    backend.use_backend(previous)
