"""Learning tests: BPTT through the fused layers actually trains recurrent networks."""
import numpy as np

import chainrule as cr
from chainrule import nn, optim
from chainrule.nn import functional as F


def recall_batch(rng, batch, steps, symbols=4, distractors=4):
    """Step 0 shows one of `symbols`; every later step shows a random distractor. The target at every
    step is the symbol of step 0, so the last step's answer depends on an input `steps - 1` steps back."""
    tokens = rng.integers(symbols, symbols + distractors, (batch, steps))
    first = rng.integers(0, symbols, batch)
    tokens[:, 0] = first
    return np.eye(symbols + distractors, dtype=np.float32)[tokens], first


def test_lstm_remembers_a_symbol_for_24_steps_among_distractors():
    cr.manual_seed(0)
    rng = np.random.default_rng(0)
    steps = 25
    lstm, head = nn.LSTM(8, 24), nn.Linear(24, 4)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = optim.Adam(params, lr=0.02)
    for _ in range(250):
        x, first = recall_batch(rng, 32, steps)
        out, _ = lstm(cr.tensor(x))
        loss = F.cross_entropy(head(out), np.repeat(first[:, None], steps, axis=1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    x, first = recall_batch(rng, 1000, steps)
    with cr.no_grad():
        predicted = head(lstm(cr.tensor(x))[0][:, -1]).data.argmax(-1)
    accuracy = (predicted == first).mean()
    assert accuracy >= 0.98, f"accuracy 24 steps after the symbol: {accuracy:.3f} (chance: 0.25)"


def test_vanilla_rnn_learns_to_echo_the_input_two_steps_back():
    cr.manual_seed(1)
    rng = np.random.default_rng(1)
    symbols, steps, delay = 5, 20, 2
    rnn, head = nn.RNN(symbols, 32), nn.Linear(32, symbols)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = optim.Adam(params, lr=0.01)

    def batch(size):
        tokens = rng.integers(0, symbols, (size, steps))
        targets = np.full((size, steps), -100)   # nothing to echo in the first steps
        targets[:, delay:] = tokens[:, :-delay]
        return np.eye(symbols, dtype=np.float32)[tokens], targets

    for _ in range(400):
        x, targets = batch(32)
        loss = F.cross_entropy(head(rnn(cr.tensor(x))[0]), targets)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    x, targets = batch(500)
    with cr.no_grad():
        predicted = head(rnn(cr.tensor(x))[0]).data.argmax(-1)
    accuracy = (predicted[:, delay:] == targets[:, delay:]).mean()
    assert accuracy >= 0.95, f"echo accuracy {accuracy:.3f} (chance 0.2)"


TEXT = ("the quick brown fox jumps over the lazy dog. a stitch in time saves nine. "
        "all that glitters is not gold. the early bird catches the worm. ") * 4


def test_min_char_rnn_style_training_beats_uniform_prediction():
    """min-char-rnn: vanilla RNN, batch 1, 25-step chunks with the state carried (and detached),
    Adagrad with lr 0.1, every gradient clipped to [-5, 5]."""
    cr.manual_seed(2)
    vocabulary = sorted(set(TEXT))
    index = {ch: i for i, ch in enumerate(vocabulary)}
    data = np.array([index[ch] for ch in TEXT])
    size = len(vocabulary)
    rnn, head = nn.RNN(size, 64), nn.Linear(64, size)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = optim.Adagrad(params, lr=0.1)
    onehot = np.eye(size, dtype=np.float32)
    seq_len, position, h, losses = 25, 0, None, []
    for _ in range(600):
        if position + seq_len + 1 > len(data):
            position, h = 0, None
        inputs, targets = data[position:position + seq_len], data[position + 1:position + seq_len + 1]
        out, h = rnn(cr.tensor(onehot[inputs][None]), h)
        loss = F.cross_entropy(head(out)[0], targets)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_value_(params, 5.0)
        opt.step()
        h = h.detach()
        losses.append(loss.item())
        position += seq_len
    uniform = np.log(size)
    final = float(np.mean(losses[-50:]))
    assert final < 0.4 * uniform, f"final loss {final:.3f} nats/char vs uniform {uniform:.3f}"
