"""The first graph of the RNN backpropagation article (README, Sources): f = z·(x + y) at x = -2, y = 5, z = -4.

Forward values go above the edges, gradients below: the add node hands its upstream gradient to both
inputs unchanged (a distributor), the multiply node swaps its inputs (df/dz = x + y, df/(x + y) = z).

    python examples/01_computational_graph.py [--out examples/output]
"""
import argparse
from pathlib import Path

import chainrule as cr
from chainrule.insight import draw_graph

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", default=str(Path(__file__).parent / "output"))
args = parser.parse_args()

x, y, z = (cr.tensor(v, dtype="float64", requires_grad=True) for v in (-2.0, 5.0, -4.0))
q = x + y
f = q * z
print(f"forward:  q = x + y = {q.item():g},  f = q·z = {f.item():g}")
picture = Path(args.out) / "01_f_equals_z_times_x_plus_y.svg"
draw_graph(f, picture, names={"x": x, "y": y, "z": z}, annotate=q, title="f = z(x + y)")
f.backward()
print(f"backward: df/dq = z = {z.item():g};  df/dz = q = {q.item():g}")
print(f"          df/dx = df/dq · dq/dx = {z.item():g} · 1 = {x.grad:g};  df/dy = {y.grad:g}")
assert (x.grad, y.grad, z.grad) == (-4.0, -4.0, 3.0)
print(f"drawing: {picture} (or .dot next to it when Graphviz is not installed)")
