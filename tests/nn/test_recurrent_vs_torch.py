"""Parity with PyTorch 2.13 (float32, 1e-5): outputs, final states and every parameter gradient."""
import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from test_recurrent import CELLS, CONFIGS, config_id

torch = pytest.importorskip("torch", reason="PyTorch is a test-only oracle: pip install torch==2.13.0")
TORCH_CELLS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
@pytest.mark.usefixtures("kernel_backend")
def test_matches_torch(config):
    cell, layers, bidirectional, with_lengths, batch_first = config
    rng = np.random.default_rng(7)
    batch, steps, features, hidden = 3, 7, 4, 6
    cr.manual_seed(8)
    ours = CELLS[cell](features, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    theirs = TORCH_CELLS[cell](features, hidden, num_layers=layers, bidirectional=bidirectional,
                               batch_first=batch_first)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    shape = (batch, steps, features) if batch_first else (steps, batch, features)
    values = rng.standard_normal(shape).astype(np.float32)
    count = layers * (2 if bidirectional else 1)
    h0 = rng.standard_normal((count, batch, hidden)).astype(np.float32) * 0.5
    c0 = rng.standard_normal((count, batch, hidden)).astype(np.float32) * 0.5
    lengths = [7, 3, 5] if with_lengths else None

    x = cr.tensor(values, requires_grad=True)
    state = (cr.tensor(h0), cr.tensor(c0)) if cell == "lstm" else cr.tensor(h0)
    out, final = ours(x, state, lengths=lengths)
    finals = final if isinstance(final, tuple) else (final,)

    tx = torch.tensor(values, requires_grad=True)
    tstate = (torch.tensor(h0), torch.tensor(c0)) if cell == "lstm" else torch.tensor(h0)
    if with_lengths:
        packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths), batch_first=batch_first,
                                                         enforce_sorted=False)
        tout, tfinal = theirs(packed, tstate)
        tout, _ = torch.nn.utils.rnn.pad_packed_sequence(tout, batch_first=batch_first, total_length=steps)
    else:
        tout, tfinal = theirs(tx, tstate)
    tfinals = tfinal if isinstance(tfinal, tuple) else (tfinal,)

    weights = rng.standard_normal(out.shape).astype(np.float32)
    ((out * weights).sum() + sum(f.sum() for f in finals)).backward()
    ((tout * torch.tensor(weights)).sum() + sum(f.sum() for f in tfinals)).backward()

    np.testing.assert_allclose(out.data, tout.detach().numpy(), atol=1e-5)
    for mine, reference in zip(finals, tfinals):
        np.testing.assert_allclose(mine.data, reference.detach().numpy(), atol=1e-5)
    named = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, named[name].grad.numpy(), atol=1e-5, rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), atol=1e-5, rtol=1e-4)


def test_state_dict_round_trip_with_torch():
    cr.manual_seed(9)
    theirs = torch.nn.LSTM(5, 8, num_layers=2, batch_first=True)
    ours = nn.LSTM(5, 8, num_layers=2)
    ours.load_state_dict(theirs.state_dict())  # torch tensors load directly
    x = np.random.default_rng(0).standard_normal((2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(ours(cr.tensor(x))[0].data, theirs(torch.tensor(x))[0].detach().numpy(), atol=1e-6)
    again = torch.nn.LSTM(5, 8, num_layers=2, batch_first=True)
    again.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    np.testing.assert_allclose(again(torch.tensor(x))[0].detach().numpy(), ours(cr.tensor(x))[0].data, atol=1e-6)


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_match_torch(name):
    cr.manual_seed(10)
    ours, theirs = getattr(nn, name)(3, 5), getattr(torch.nn, name)(3, 5)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    a, b = ours(cr.tensor(x)), theirs(torch.tensor(x))
    a = a[1] if isinstance(a, tuple) else a
    b = b[1] if isinstance(b, tuple) else b
    np.testing.assert_allclose(a.data, b.detach().numpy(), atol=1e-6)
