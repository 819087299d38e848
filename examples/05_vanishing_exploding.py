"""Vanishing and exploding gradients: one vanilla RNN with W_hh scaled to σ_max = 0.5, 1, 2 (and 4), and an LSTM.

dL/dh_{t-1} = W_hhᵀ (δ_t ⊙ (1 - h_t²)): every step back multiplies by W_hh and by tanh' (at most 1). With
σ_max(W_hh) ≤ 1 the gradient must shrink geometrically: vanishing. Above 1 it may grow, but need not:
over many steps the growth rate is W_hh's spectral radius (for a random matrix about half of σ_max), and
tanh' < 1 wherever units are partly saturated. So σ_max = 2 roughly preserves the gradient here, and it
takes σ_max = 4 to see it explode. The LSTM's cell state is carried by its forget gate (bias set to 1, a
common initialisation), so its gradient reaches further back than the RNN's with σ_max = 1.

    python examples/05_vanishing_exploding.py [--seq-len 100] [--out examples/output]
"""
import argparse
from pathlib import Path

import chainrule as cr
from chainrule import insight, nn

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--seq-len", type=int, default=100)
parser.add_argument("--hidden", type=int, default=64)
parser.add_argument("--out", default=str(Path(__file__).parent / "output"))
args = parser.parse_args()

cr.manual_seed(0)
inputs = cr.randn(8, args.seq_len, 16) * 0.05
flows = {}
for sigma in (0.5, 1.0, 2.0, 4.0):
    rnn = nn.RNN(16, args.hidden)
    insight.scale_recurrent_weights(rnn, sigma)
    flows[f"rnn σ_max={sigma:g}"] = insight.gradient_flow(rnn, lambda rnn=rnn: rnn(inputs)[0][:, -1].sum())
lstm = nn.LSTM(16, args.hidden)
lstm.bias_ih_l0.data[args.hidden:2 * args.hidden] = 1.0   # forget-gate bias 1
lstm.bias_hh_l0.data[args.hidden:2 * args.hidden] = 0.0
flows["lstm"] = insight.gradient_flow(lstm, lambda: lstm(inputs)[0][:, -1].sum())
print(insight.format_table(flows))
Path(args.out).mkdir(parents=True, exist_ok=True)
picture = insight.plot(flows, str(Path(args.out) / "05_vanishing_exploding.png"),
                           f"‖dL/dh_t‖ over {args.seq_len} steps: W_hh's largest singular value decides")
print(f"wrote {picture}")
decay = {name: flow.decay_per_step() for name, flow in flows.items()}
assert (decay["rnn σ_max=0.5"] < decay["rnn σ_max=1"] < decay["lstm"] < decay["rnn σ_max=2"] < 1
        < decay["rnn σ_max=4"]), decay
