"""Where the float32 tanh of the compiled LSTM loops comes from, and what it costs and gains.

Fits tanh(x) ≈ x P(u) / Q(u), u = (x / 9)², Q(0) = 1, on [0, 9] (beyond 9, tanh rounds to 1 in float32),
minimising the largest relative error: a linearised weighted least-squares fit, refined by Lawson's
iteration (weights multiplied by the error, so the fit approaches the minimax one). Then measures the
coefficients in use (`chainrule.nn.kernels.numba_backend.base`) in float32 against the correctly rounded tanh,
beside NumPy's np.tanh, and times both on a [32, 2048] array (one LSTM step's gates at H = 512, B = 32).

    python benchmarks/tanh_approximation.py
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from numpy.polynomial import polynomial

CLAMP = 9.0


def fit(numerator_degree: int, denominator_degree: int, iterations: int = 60) -> tuple[np.ndarray, np.ndarray, float]:
    """Coefficients of P (from u⁰) and Q (Q[0] = 1) and the largest relative error on the fitting grid."""
    x = np.concatenate([np.linspace(0, CLAMP, 40_001)[1:], np.geomspace(1e-5, 1, 4_000)])
    u, y = (x / CLAMP) ** 2, np.tanh(x)
    numerator_powers = x[:, None] * u[:, None] ** np.arange(numerator_degree + 1)
    denominator_powers = y[:, None] * u[:, None] ** np.arange(1, denominator_degree + 1)
    design = np.hstack([numerator_powers, -denominator_powers])
    denominator, weights = np.ones(1), np.ones_like(x)
    best = (np.zeros(0), np.zeros(0), np.inf)
    for _ in range(iterations):
        # x P(u) - y Q(u) = 0 made linear (Q(0) = 1 moves y to the right), scaled to a relative error by the
        # previous Q
        scale = np.sqrt(weights) / (y * polynomial.polyval(u, denominator))
        solution, *_ = np.linalg.lstsq(design * scale[:, None], y * scale, rcond=None)
        numerator = solution[:numerator_degree + 1]
        denominator = np.concatenate([[1.0], solution[numerator_degree + 1:]])
        error = x * polynomial.polyval(u, numerator) / polynomial.polyval(u, denominator) / y - 1
        if np.abs(error).max() < best[2]:
            best = (numerator, denominator, float(np.abs(error).max()))
        weights = weights * np.abs(error)
        weights /= weights.sum()
    return best


def float32_ulps(values: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|values - exact| in units in the last place of float32 (exact rounded to float32 first)."""
    def ordered(a: np.ndarray) -> np.ndarray:
        bits = a.astype(np.float32).view(np.int32).astype(np.int64)
        return np.where(bits < 0, np.int64(-2**31) - bits, bits)
    return np.abs(ordered(values) - ordered(exact))


def best_time(function, repeats: int = 2_000) -> float:
    function()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            function()
        times.append((time.perf_counter() - start) / repeats)
    return min(times)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print("fits (degree of P, of Q in u): largest relative error in exact arithmetic")
    for degrees in [(5, 3), (6, 3), (7, 3), (6, 4)]:
        numerator, denominator, error = fit(*degrees)
        print(f"  {degrees}: {error:.2e}")
    numerator, denominator, error = fit(6, 3)
    print("P =", ", ".join(repr(float(c)) for c in numerator))
    print("Q =", ", ".join(repr(float(c)) for c in denominator))

    from numba import njit

    from chainrule.nn.kernels.numba_backend import base as numba_backend
    in_use = [getattr(numba_backend, f"_P{k}") for k in range(7)] + [numba_backend._ONE] + [
        getattr(numba_backend, f"_Q{k}") for k in range(1, 4)]
    fitted = np.concatenate([numerator, denominator]).astype(np.float32)
    print("coefficients in numba_backend equal this fit in float32:", bool(np.array_equal(fitted, in_use)))

    @njit(cache=False)
    def compiled_tanh(x, out):
        for i in range(x.size):
            out[i] = numba_backend.tanh(x[i])

    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-10, 10, 4_000_001), rng.normal(0, 3, 2_000_000),
                        np.geomspace(1e-30, 1, 100_000)]).astype(np.float32)
    exact = np.tanh(x.astype(np.float64))
    out = np.empty_like(x)
    compiled_tanh(x, out)
    ours, numpys = float32_ulps(out, exact), float32_ulps(np.tanh(x), exact)
    print(f"\nfloat32 accuracy over {x.size:,} points in [-10, 10] (ulps from the correctly rounded tanh)")
    print(f"  {'':<22}{'max':>6}{'mean':>8}")
    print(f"  {'compiled tanh':<22}{ours.max():>6}{ours.mean():>8.3f}")
    print(f"  {'np.tanh':<22}{numpys.max():>6}{numpys.mean():>8.3f}")

    gates = rng.normal(0, 2, (32, 2048)).astype(np.float32).ravel()
    target = np.empty_like(gates)
    numpy_time = best_time(lambda: np.tanh(gates, out=target))
    compiled_time = best_time(lambda: compiled_tanh(gates, target))
    print(f"\ntime for {gates.size:,} float32 values (µs): np.tanh {numpy_time * 1e6:.1f}, "
          f"compiled {compiled_time * 1e6:.1f} (each including its call)")


if __name__ == "__main__":
    main()
