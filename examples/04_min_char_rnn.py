"""min-char-rnn with chainrule's primitive ops: a vanilla RNN written out, trained by the generic engine (BPTT).

h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h), y_t = W_hy h_t + b_y, loss = Σ_t -log softmax(y_t)[target_t];
Adagrad with learning rate 0.1, every gradient clipped to [-5, 5], 25-step chunks with the state carried
(and detached) between them, as in Andrej Karpathy's min-char-rnn.py
(https://gist.github.com/karpathy/d4dee566867f8291f086).

    python examples/04_min_char_rnn.py [--seconds 60] [--text FILE]
"""
import argparse
import time

import numpy as np

import chainrule as cr
from chainrule import optim
from chainrule.nn.utils import clip_grad_value_
from chainrule.charlm.text import Vocabulary, default_corpus, read_text

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--seconds", type=float, default=60.0)
parser.add_argument("--text", help="default: the start of the Python reference manual")
parser.add_argument("--hidden", type=int, default=100)
args = parser.parse_args()

text = read_text(args.text) if args.text else default_corpus()[:50_000]
vocabulary = Vocabulary.from_text(text)
data = vocabulary.encode(text)
size, hidden, seq_len = len(vocabulary), args.hidden, 25
cr.manual_seed(0)
W_xh = (cr.randn(hidden, size, dtype="float64") * 0.01).requires_grad_()
W_hh = (cr.randn(hidden, hidden, dtype="float64") * 0.01).requires_grad_()
W_hy = (cr.randn(size, hidden, dtype="float64") * 0.01).requires_grad_()
b_h, b_y = cr.zeros(hidden, dtype="float64", requires_grad=True), cr.zeros(size, dtype="float64", requires_grad=True)
parameters = [W_xh, W_hh, W_hy, b_h, b_y]
optimizer = optim.Adagrad(parameters, lr=0.1)
onehot = np.eye(size)


def loss_of(inputs, targets, h):
    """Forward through a chunk; returns the summed loss and the last hidden state."""
    loss = 0
    for x_index, target in zip(inputs, targets):
        h = (W_xh @ cr.tensor(onehot[x_index]) + W_hh @ h + b_h).tanh()   # the copy node: h feeds y_t and h_{t+1}
        y = W_hy @ h + b_y
        loss = loss - cr.log_softmax(y)[target]                          # gradient: softmax - 1 at the target
    return loss, h


def sample(h, seed_index, count):
    indices = [seed_index]
    with cr.no_grad():
        for _ in range(count):
            h = (W_xh @ cr.tensor(onehot[indices[-1]]) + W_hh @ h + b_h).tanh()
            p = cr.softmax(W_hy @ h + b_y).data
            indices.append(int(np.random.default_rng(len(indices)).choice(size, p=p / p.sum())))
    return vocabulary.decode(indices)


recent = []  # losses per character of the last 50 chunks
position, step, h = 0, 0, cr.zeros(hidden, dtype="float64")
start = time.perf_counter()
while time.perf_counter() - start < args.seconds:
    if position + seq_len + 1 >= len(data):
        position, h = 0, cr.zeros(hidden, dtype="float64")
    loss, h = loss_of(data[position:position + seq_len], data[position + 1:position + seq_len + 1], h)
    optimizer.zero_grad()
    loss.backward()
    clip_grad_value_(parameters, 5.0)   # min-char-rnn clips every gradient to [-5, 5]
    optimizer.step()
    h = h.detach()                      # carry the state, cut the graph
    recent = (recent + [loss.item() / seq_len])[-50:]
    if step % 200 == 0:
        print(f"step {step}: {np.mean(recent):.3f} nats/char (mean of the last {len(recent)} chunks)")
    position, step = position + seq_len, step + 1
print(f"after {step} steps in {args.seconds:g} s: {np.mean(recent):.3f} nats/char over the last {len(recent)} chunks "
      f"(uniform guessing: {np.log(size):.3f})")
print("sample:", sample(h, data[0], 200).replace("\n", " "))
