"""Softmax + negative log-likelihood: the gradient with respect to the logits is S - 1 at the target (the RNN
backpropagation article's custom nodes; README, Sources).

    python examples/03_softmax_nll.py [--out examples/output]
"""
import argparse
from pathlib import Path

import numpy as np

import chainrule as cr
from chainrule.insight import draw_graph

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", default=str(Path(__file__).parent / "output"))
args = parser.parse_args()

logits = cr.tensor([2.0, 1.0, 0.1, -1.0], dtype="float64", requires_grad=True)
target = 0
probabilities = cr.softmax(logits)
loss = -probabilities[target].log()          # the loss as the article writes it: -log S_target
draw_graph(loss, Path(args.out) / "03_softmax_nll.svg", names={"logits": logits}, title="L = -log softmax(z)[target]")
loss.backward()
expected = probabilities.data.copy()
expected[target] -= 1.0
numerical = np.zeros(4)
for k in range(4):
    shifted = logits.data.copy()
    shifted[k] += 1e-6
    up = -np.log(np.exp(shifted)[target] / np.exp(shifted).sum())
    shifted[k] -= 2e-6
    down = -np.log(np.exp(shifted)[target] / np.exp(shifted).sum())
    numerical[k] = (up - down) / 2e-6
print(f"S           = {np.round(probabilities.data, 5).tolist()}")
print(f"dL/dz       = {np.round(logits.grad, 5).tolist()}")
print(f"S - onehot  = {np.round(expected, 5).tolist()}")
print(f"numerical   = {np.round(numerical, 5).tolist()}")
assert np.allclose(logits.grad, expected) and np.allclose(logits.grad, numerical, atol=1e-8)
fused = cr.nn.functional.cross_entropy(logits.detach().requires_grad_()[None], [target])
print(f"the fused cross_entropy gives the same loss: {fused.item():.6f} vs {loss.item():.6f}")
