"""`optimizer.adam`: the one function that holds Adam's formula and picks the NumPy or the compiled update."""
import numpy as np
import pytest

from chainrule._kernels import backend
from chainrule.optim.optimizer import adam


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_numpy_and_compiled_updates_agree(decoupled, amsgrad):
    if not backend.numba_available():
        pytest.skip("numba is not installed (pip install 'chainrule[fast]')")
    rng = np.random.default_rng(0)
    param0, grad0, second0 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.random((3, 4))
    results = {}
    previous = backend.backend_name()
    try:
        for name in ("numpy", "numba"):
            backend.use_backend(name)
            param, grad, exp_avg = param0.copy(), grad0.copy(), np.zeros((3, 4))
            exp_avg_sq, max_sq = second0.copy(), second0.copy() * 2
            for step in (1, 2, 3):
                adam(param, grad, exp_avg, exp_avg_sq, max_sq if amsgrad else None, step=step, lr=0.01, beta1=0.9,
                     beta2=0.999, eps=1e-8, weight_decay=0.1, decoupled=decoupled, amsgrad=amsgrad)
            results[name] = (param, exp_avg, exp_avg_sq, max_sq)
    finally:
        backend.use_backend(previous)
    for ours, compiled in zip(results["numpy"], results["numba"]):
        np.testing.assert_allclose(ours, compiled, rtol=1e-12, atol=1e-15)


def test_first_step_moves_by_lr_against_the_gradient_sign():
    # at t = 1 the bias corrections cancel: m̂ = g, v̂ = g², so p moves by lr · g / (|g| + ε)
    param, grad = np.array([1.0, -2.0]), np.array([0.5, -3.0])
    adam(param, grad, np.zeros(2), np.zeros(2), None, step=1, lr=0.1, beta1=0.9, beta2=0.999, eps=0.0,
         weight_decay=0.0, decoupled=False, amsgrad=False)
    np.testing.assert_allclose(param, [0.9, -1.9])
