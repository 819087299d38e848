"""A short tour of the engine on the examples of Weidman's *Deep Learning from Scratch* (ch. 6) and the RNN
backpropagation article (README, Sources): `chainrule demo`."""
from __future__ import annotations

import numpy as np

from ..autograd import Tensor, Value, grad, log_softmax, manual_seed, randn, tensor


def _numerical_derivative(function, at: float, eps: float = 1e-6) -> float:
    return (function(at + eps) - function(at - eps)) / (2 * eps)


def run_demo(print_line=print) -> None:
    """Print the worked examples: Weidman's scalar graph, reuse, f = z(x+y), softmax + NLL, a fit.

    >>> lines = []
    >>> run_demo(lines.append)
    >>> any("d = 75" in line for line in lines)
    True
    """
    print_line("1. Weidman's example with chainrule.Value: a = 3, b = 4a, c = b + 3, d = c(a + 2)")
    a = Value(3.0)
    d = (a * 4 + 3) * (a + 2)
    d.backward()
    numerical = _numerical_derivative(lambda v: (v * 4 + 3) * (v + 2), 3.0)
    print_line(f"   d = {d.data:g}, dd/da = {a.grad:g} (central difference: {numerical:.6f})")

    print_line("2. A value used twice: b = 2a, c = b·b at a = 3")
    a = Value(3.0)
    b = a * 2
    (b * b).backward()
    print_line(f"   dc/da = {a.grad:g}  (8a = 24; a recursion that re-sends running totals gives 36)")

    print_line("3. f = z·(x + y) at x = -2, y = 5, z = -4: the add node distributes, the multiply node swaps")
    x, y, z = (tensor(v, dtype="float64", requires_grad=True) for v in (-2.0, 5.0, -4.0))
    f = (x + y) * z
    f.backward()
    print_line(f"   f = {f.item():g}; df/dx = {x.grad:g}, df/dy = {y.grad:g}, df/dz = {z.grad:g}")

    print_line("4. Softmax + negative log-likelihood: the gradient is S - 1 at the target")
    logits = tensor([2.0, 1.0, 0.1], dtype="float64", requires_grad=True)
    loss = -log_softmax(logits)[0]
    loss.backward()
    softmax = np.exp(logits.data) / np.exp(logits.data).sum()
    print_line(f"   S = {np.round(softmax, 4).tolist()}, dL/dlogits = {np.round(logits.grad, 4).tolist()}")  # type: ignore[arg-type]  # set by backward

    print_line("5. Second derivatives: d²/dx² tanh(x) at x = 0.5 via grad(create_graph=True)")
    point = tensor(0.5, dtype="float64", requires_grad=True)
    (first,) = grad(point.tanh(), point, create_graph=True)
    (second,) = grad(first, point)
    print_line(f"   tanh' = {first.item():.6f}, tanh'' = {second.item():.6f}")

    print_line("6. Fitting y = 3x - 1 with a weight and a bias, 200 steps of gradient descent")
    manual_seed(0)
    inputs = randn(64, 1)
    targets = inputs * 3 - 1
    weight = Tensor(np.zeros((1, 1), np.float32), requires_grad=True)
    bias = Tensor(np.zeros(1, np.float32), requires_grad=True)
    for _ in range(200):
        loss = ((inputs @ weight + bias - targets) ** 2).mean()
        weight.grad = bias.grad = None
        loss.backward()
        weight.data -= 0.1 * weight.grad  # type: ignore[operator]  # set by backward
        bias.data -= 0.1 * bias.grad  # type: ignore[operator]  # set by backward
    print_line(f"   learned w = {weight.item():.4f}, b = {bias.item():.4f}, loss = {loss.item():.2e}")
