"""Recurrent layers at the edges, against PyTorch 2.13: empty batches, one step, the shortest lengths, NaN and
inf in padding, float16, and options that would otherwise do nothing (issue 15).

Every cell (RNN tanh and relu, LSTM, GRU), both implementations and every kernel backend (`kernel_backend`).
Deliberate differences from PyTorch, each tested below:
- a fractional length is refused (PyTorch truncates it), and so is a length past the sequence's end;
- float16 layers compute the fused recurrence in float32 and round once (PyTorch rounds every step to
  float16): the values agree to float16's precision, and the sums over steps are more accurate.
"""
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn

torch = pytest.importorskip("torch", reason="PyTorch is a test-only oracle: pip install torch==2.13.0")

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
IMPLEMENTATIONS = ["fused", "reference"]


def make_pair(cell, input_size, hidden, layers=1, bidirectional=False, implementation="fused", bias=True,
              dtype=np.float32, seed=3):
    """A chainrule layer and a PyTorch one (batch_first) with the same weights."""
    cr.manual_seed(seed)
    kind, _, nonlinearity = cell.partition("_")
    options = dict(num_layers=layers, bidirectional=bidirectional, bias=bias)
    if kind == "rnn":
        ours = nn.RNN(input_size, hidden, nonlinearity=nonlinearity, implementation=implementation, **options)
        theirs = torch.nn.RNN(input_size, hidden, nonlinearity=nonlinearity, batch_first=True, **options)
    else:
        ours = getattr(nn, kind.upper())(input_size, hidden, implementation=implementation, **options)
        theirs = getattr(torch.nn, kind.upper())(input_size, hidden, batch_first=True, **options)
    ours.to(dtype)
    theirs.to(torch.from_numpy(np.zeros(0, dtype)).dtype)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, theirs


def initial_state(cell, count, batch, hidden, rng, dtype=np.float32):
    """(ours, theirs) initial states with requires_grad, as arrays drawn once."""
    arrays = [(rng.standard_normal((count, batch, hidden)) * 0.5).astype(dtype)
              for _ in range(2 if cell == "lstm" else 1)]
    ours = [cr.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    if cell == "lstm":
        return tuple(ours), tuple(theirs)
    return ours[0], theirs[0]


def run_both(ours, theirs, values, state=(None, None), lengths=None, output_weights=None):
    """Forward both with a loss over outputs and final states, backward; returns what to compare."""
    x = cr.tensor(values, requires_grad=True)
    tx = torch.tensor(values, requires_grad=True)
    out, final = ours(x, state[0], lengths=lengths)
    steps = values.shape[1]
    if lengths is not None and values.shape[0]:
        packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths), batch_first=True,
                                                         enforce_sorted=False)
        tout, tfinal = theirs(packed, state[1])
        tout, _ = torch.nn.utils.rnn.pad_packed_sequence(tout, batch_first=True, total_length=steps)
    else:
        tout, tfinal = theirs(tx, state[1])
    finals = final if isinstance(final, tuple) else (final,)
    tfinals = tfinal if isinstance(tfinal, tuple) else (tfinal,)
    if output_weights is None:
        output_weights = np.random.default_rng(5).standard_normal(out.shape).astype(values.dtype)
    loss = (out * output_weights).sum() + sum(f.sum() for f in finals)
    tloss = (tout * torch.tensor(output_weights)).sum() + sum(f.sum() for f in tfinals)
    loss.backward()
    tloss.backward()
    return (out, finals, x), (tout, tfinals, tx)


def assert_same(ours, theirs, mine, reference, atol=1e-5, rtol=1e-4, state=(None, None)):
    (out, finals, x), (tout, tfinals, tx) = mine, reference
    assert out.shape == tuple(tout.shape) and out.dtype == tout.detach().numpy().dtype
    np.testing.assert_allclose(out.data, tout.detach().numpy(), atol=atol, rtol=rtol)
    for a, b in zip(finals, tfinals, strict=True):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a.data, b.detach().numpy(), atol=atol, rtol=rtol)
    named = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and p.grad.dtype == p.dtype, name
        np.testing.assert_allclose(p.grad, named[name].grad.numpy(), atol=atol, rtol=rtol, err_msg=name)
    assert x.grad.shape == tuple(tx.shape)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), atol=atol, rtol=rtol)
    mine_state = state[0] if isinstance(state[0], tuple) else (state[0],)
    their_state = state[1] if isinstance(state[1], tuple) else (state[1],)
    for a, b in zip(mine_state, their_state, strict=True):
        if a is not None:
            assert a.grad.shape == tuple(b.shape)
            np.testing.assert_allclose(a.grad, b.grad.numpy(), atol=atol, rtol=rtol)


# -- example 5: an empty batch ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_issue_example_5_empty_batch_gives_empty_outputs(name):
    out, final = getattr(nn, name)(3, 4)(cr.zeros(0, 5, 3))
    h_n = final[0] if name == "LSTM" else final
    assert out.shape == (0, 5, 4) and h_n.shape == (1, 0, 4)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("layers, bidirectional, with_state", [(1, False, False), (2, True, True)])
@pytest.mark.usefixtures("kernel_backend")
def test_empty_batch_matches_torch(cell, implementation, layers, bidirectional, with_state):
    ours, theirs = make_pair(cell, 3, 4, layers, bidirectional, implementation)
    state = (None, None)
    if with_state:
        state = initial_state(cell.split("_")[0], layers * (1 + bidirectional), 0, 4, np.random.default_rng(0))
    values = np.zeros((0, 5, 3), np.float32)
    mine, reference = run_both(ours, theirs, values, state)
    assert_same(ours, theirs, mine, reference, state=state)
    assert all(not p.grad.any() for p in ours.parameters())   # zeros, of every parameter's shape


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.usefixtures("kernel_backend")
def test_empty_batch_with_empty_lengths(cell, implementation):
    ours, _ = make_pair(cell, 3, 4, 2, True, implementation)
    for lengths in ([], np.array([], np.int64)):
        ours.zero_grad()
        out, final = ours(cr.zeros(0, 5, 3), lengths=lengths)
        h_n = final[0] if isinstance(final, tuple) else final
        assert out.shape == (0, 5, 8) and h_n.shape == (4, 0, 4)
        (out.sum() + h_n.sum()).backward()
        assert all(p.grad.shape == p.shape and not p.grad.any() for p in ours.parameters())


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("steps", [2, 40])     # 40 > vocabulary: the fused layers look rows up in a table
@pytest.mark.parametrize("with_embedding", [False, True])
@pytest.mark.usefixtures("kernel_backend")
def test_empty_batch_of_token_ids(cell, implementation, steps, with_embedding):
    ours, _ = make_pair(cell, 7, 4, 2, False, implementation)
    embedding = cr.tensor(np.random.default_rng(1).standard_normal((7, 7)).astype(np.float32), requires_grad=True)
    out, final = ours.forward_tokens(np.zeros((0, steps), np.int64), embedding if with_embedding else None)
    h_n = final[0] if isinstance(final, tuple) else final
    assert out.shape == (0, steps, 4) and h_n.shape == (2, 0, 4)
    (out.sum() + h_n.sum()).backward()
    assert all(p.grad.shape == p.shape and not p.grad.any() for p in ours.parameters())
    if with_embedding:
        assert embedding.grad.shape == (7, 7) and not embedding.grad.any()


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_with_an_empty_batch_match_torch(name):
    cr.manual_seed(4)
    ours, theirs = getattr(nn, name)(3, 5), getattr(torch.nn, name)(3, 5)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x, tx = cr.zeros(0, 3, requires_grad=True), torch.zeros(0, 3, requires_grad=True)
    out, tout = ours(x), theirs(tx)
    outs, touts = (out if isinstance(out, tuple) else (out,)), (tout if isinstance(tout, tuple) else (tout,))
    sum(o.sum() for o in outs).backward()
    sum(o.sum() for o in touts).backward()
    assert [o.shape for o in outs] == [tuple(o.shape) for o in touts] == [(0, 5)] * len(outs)
    assert x.grad.shape == (0, 3)
    named = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        np.testing.assert_array_equal(p.grad, named[key].grad.numpy())


# -- sequence length 0 and 1 --------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape", [(2, 0, 3), (0, 0, 3), (0, 3)])
def test_sequence_length_zero_is_refused_as_by_torch(cell, implementation, shape):
    ours, theirs = make_pair(cell, 3, 4, implementation=implementation)
    with pytest.raises(RuntimeError, match="sequence length to be larger than 0"):
        theirs(torch.zeros(shape))
    with pytest.raises(ValueError, match="expected a sequence length larger than 0"):
        ours(cr.zeros(*shape))
    with pytest.raises(ValueError, match="expected a sequence length larger than 0"):
        ours.forward_tokens(np.zeros(shape[:1] + (0,), np.int64) if len(shape) == 3 else np.zeros((1, 0), int))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.usefixtures("kernel_backend")
def test_one_step_matches_torch(cell, implementation):
    ours, theirs = make_pair(cell, 3, 4, 2, True, implementation)
    rng = np.random.default_rng(2)
    state = initial_state(cell.split("_")[0], 4, 3, 4, rng)
    mine, reference = run_both(ours, theirs, rng.standard_normal((3, 1, 3)).astype(np.float32), state,
                               lengths=[1, 1, 1])
    assert_same(ours, theirs, mine, reference, state=state)


# -- lengths: the shortest allowed, and the refused ones -----------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.usefixtures("kernel_backend")
def test_shortest_lengths_match_torch(cell, implementation, bias):
    ours, theirs = make_pair(cell, 3, 4, 2, True, implementation, bias=bias)
    rng = np.random.default_rng(3)
    mine, reference = run_both(ours, theirs, rng.standard_normal((3, 4, 3)).astype(np.float32),
                               lengths=[1, 4, 1])
    assert_same(ours, theirs, mine, reference)


@pytest.mark.parametrize("lengths, error, message", [
    ([0, 2], ValueError, "between 1 and the sequence length 3 .a length of 0 is refused"),
    ([2, -1], ValueError, "between 1 and the sequence length 3"),
    ([4, 2], ValueError, "between 1 and the sequence length 3"),
    ([2.0, 1.0], TypeError, "lengths must be integers, got dtype float64"),
    ([True, True], TypeError, "lengths must be integers, got dtype bool"),
    ([2], ValueError, r"one length per sequence \(2\), got shape \(1,\)"),
    ([[2, 1]], ValueError, r"one length per sequence \(2\), got shape \(1, 2\)"),
    (3, ValueError, "one length per sequence"),
])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_bad_lengths_get_one_clear_error(lengths, error, message, implementation):
    layer = nn.LSTM(3, 4, implementation=implementation)
    with pytest.raises(error, match=message):
        layer(cr.zeros(2, 3, 3), lengths=lengths)


def test_torch_refuses_length_zero_too():
    with pytest.raises(RuntimeError, match="Length of all samples has to be greater than 0"):
        torch.nn.utils.rnn.pack_padded_sequence(torch.zeros(2, 3, 1), torch.tensor([0, 2]), batch_first=True,
                                                enforce_sorted=False)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.usefixtures("kernel_backend")
@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply")   # the loss: 0 · inf at padding
def test_nan_and_inf_in_padding_reach_no_real_step(cell, implementation):
    """Padded inputs hold NaN and inf, and the gradient arriving at padded outputs is inf: PyTorch's packed
    sequences never see them, and neither may any real step's output, final state or gradient here."""
    ours, theirs = make_pair(cell, 3, 4, 2, True, implementation)
    rng = np.random.default_rng(4)
    lengths = [4, 1, 2]
    values = rng.standard_normal((3, 4, 3)).astype(np.float32)
    padded = np.arange(4)[None, :] >= np.array(lengths)[:, None]
    values[padded] = np.nan
    values[2, 3, 0] = np.inf
    weights = rng.standard_normal((3, 4, 8)).astype(np.float32)
    weights[padded] = np.inf
    mine, reference = run_both(ours, theirs, values, lengths=lengths, output_weights=weights)
    (out, _, x), _ = mine, reference
    assert not out.data[padded].any()    # padded outputs are 0, as pad_packed_sequence pads
    assert all(np.isfinite(p.grad).all() for p in ours.parameters()) and np.isfinite(x.grad).all()
    assert not x.grad[padded].any()
    assert_same(ours, theirs, mine, reference)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.usefixtures("kernel_backend")
@pytest.mark.filterwarnings("ignore:invalid value encountered")   # the loss: 0 · inf at padding
def test_fused_kernels_select_padding_away(cell, reverse):
    """The fused nodes themselves: NaN projections at padded steps and an inf gradient arriving at padded
    outputs give the same values and gradients as zeros there (the mask selects; 0 · NaN would be NaN)."""
    from chainrule.nn.fused import FusedGRU, FusedLSTM, FusedRNN
    rng = np.random.default_rng(8)
    steps, batch, hidden = 4, 3, 2
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * hidden
    mask = (np.arange(steps)[:, None] < np.array([4, 1, 2])[None, :])[:, :, None]
    arrays = [rng.standard_normal(shape) for shape in [(steps, batch, gates), (batch, hidden), (batch, hidden),
                                                       (gates, hidden), (gates,), (gates,)]]
    output_weights = rng.standard_normal((steps, batch, hidden))
    results = []
    for padding, seed_padding in ((0.0, 0.0), (np.nan, np.inf)):
        leaves = [cr.tensor(a, requires_grad=True) for a in arrays]
        projected, h0, c0, weight_hh, bias, bias_hh = leaves
        projected.data[~mask[:, :, 0]] = padding
        if cell == "lstm":
            out, *finals = FusedLSTM.apply(projected, h0, c0, weight_hh, bias, mask, reverse)
        elif cell == "gru":
            out, *finals = FusedGRU.apply(projected, h0, weight_hh, bias_hh, bias, mask, reverse)
        else:
            out, *finals = FusedRNN.apply(projected, h0, weight_hh, bias, mask, reverse, "tanh")
        seed = cr.tensor(np.where(mask, output_weights, seed_padding))
        ((out * seed).sum() + sum(f.sum() for f in finals)).backward()
        results.append([out.data, *(f.data for f in finals), *(leaf.grad for leaf in leaves)])
    for clean, dirty in zip(*results, strict=True):
        if clean is None:
            assert dirty is None
        else:
            np.testing.assert_array_equal(dirty, clean)


# -- example 6 and the other options ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_issue_example_6_dropout_with_one_layer_warns_as_torch(name):
    message = "non-zero dropout expects num_layers greater than 1"
    with pytest.warns(UserWarning, match=message):
        getattr(torch.nn, name)(3, 4, num_layers=1, dropout=0.5)
    with pytest.warns(UserWarning, match=message):
        getattr(nn, name)(3, 4, num_layers=1, dropout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(nn, name)(3, 4, num_layers=2, dropout=0.5)
        getattr(nn, name)(3, 4, num_layers=1, dropout=0.0)


@pytest.mark.parametrize("dropout", [-0.1, 1.5, True, "0.5", float("nan")])
@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_dropout_outside_0_1_is_refused_as_by_torch(name, dropout):
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        getattr(torch.nn, name)(3, 4, num_layers=2, dropout=dropout)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\]"):
        getattr(nn, name)(3, 4, num_layers=2, dropout=dropout)


def test_dropout_of_one_is_accepted_as_by_torch():
    torch.nn.LSTM(3, 4, num_layers=2, dropout=1.0)
    assert nn.LSTM(3, 4, num_layers=2, dropout=1.0).dropout == 1.0


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_input_or_state_of_another_dtype_is_refused_as_by_torch(name, implementation):
    layer = getattr(nn, name)(3, 4, implementation=implementation)
    with pytest.raises(ValueError, match="does not match weight dtype"):
        getattr(torch.nn, name)(3, 4)(torch.zeros(2, 5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"input dtype \(float64\) does not match the parameters' dtype \(float32\)"):
        layer(cr.zeros(2, 5, 3, dtype="float64"))
    h0 = cr.zeros(1, 2, 4, dtype="float64")
    with pytest.raises(ValueError, match=r"h0 dtype \(float64\) does not match"):
        layer(cr.zeros(2, 5, 3), (h0, cr.zeros(1, 2, 4)) if name == "LSTM" else h0)


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_refuse_another_dtype(name):
    cell = getattr(nn, name)(3, 4)
    with pytest.raises(ValueError, match=r"input dtype \(float64\) does not match"):
        cell(cr.zeros(2, 3, dtype="float64"))
    h = cr.zeros(2, 4, dtype="float64")
    with pytest.raises(ValueError, match=r"h dtype \(float64\) does not match"):
        cell(cr.zeros(2, 3), (h, cr.zeros(2, 4)) if name == "LSTMCell" else h)


def test_options_pytorch_has_and_chainrule_lacks_are_refused():
    with pytest.raises(TypeError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)


# -- float16 ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.usefixtures("kernel_backend")
def test_float16_matches_torch(cell, implementation):
    """PyTorch 2.13 runs float16 recurrent layers on the CPU; so does chainrule, to float16's precision."""
    ours, theirs = make_pair(cell, 3, 4, 2, False, implementation, dtype=np.float16)
    rng = np.random.default_rng(6)
    values = rng.standard_normal((3, 5, 3)).astype(np.float16)
    mine, reference = run_both(ours, theirs, values, lengths=[5, 1, 3],
                               output_weights=rng.standard_normal((3, 5, 4)).astype(np.float16))
    assert_same(ours, theirs, mine, reference, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.usefixtures("kernel_backend")
def test_float16_gradients_are_summed_in_float32(cell):
    """dW_hh = Σ_t δ_tᵀ h_{t-1} and the bias gradient Σ_{t,b} δ over 4,096 (step, sequence) pairs: summed in
    float16 they stall (2048 + 1 rounds to 2048) and come out far from the float32 layer's."""
    rng = np.random.default_rng(7)
    values = rng.standard_normal((64, 64, 2)).astype(np.float16)
    grads = {}
    for dtype in (np.float16, np.float32):
        layer, _ = make_pair(cell, 2, 2, dtype=np.float16)
        layer.to(dtype)                      # the same float16-representable weights in both
        out, _ = layer(cr.tensor(values.astype(dtype)))
        out.sum().backward()
        grads[dtype] = {name: p.grad for name, p in layer.named_parameters()}
    for name, grad in grads[np.float16].items():
        assert grad.dtype == np.float16
        np.testing.assert_allclose(grad.astype(np.float32), grads[np.float32][name], rtol=1e-2, atol=1e-2,
                                   err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("with_embedding", [False, True])
@pytest.mark.usefixtures("kernel_backend")
def test_float16_token_inputs_sum_in_float32(cell, with_embedding):
    """Token ids: the gradient of the lookup table sums every step's δ per token (4,096 of them for 3
    tokens here), in float32 before it is rounded to float16."""
    rng = np.random.default_rng(9)
    ids = rng.integers(0, 3, (64, 64))
    table = rng.standard_normal((3, 3)).astype(np.float16)
    grads = {}
    for dtype in (np.float16, np.float32):
        layer, _ = make_pair(cell, 3, 2, dtype=np.float16)
        layer.to(dtype)
        embedding = cr.tensor(table.astype(dtype), requires_grad=True) if with_embedding else None
        out, _ = layer.forward_tokens(ids, embedding)
        assert out.dtype == dtype
        out.sum().backward()
        grads[dtype] = {name: p.grad for name, p in layer.named_parameters()}
        if with_embedding:
            grads[dtype]["embedding"] = embedding.grad
    for name, grad in grads[np.float16].items():
        assert grad.dtype == np.float16
        np.testing.assert_allclose(grad.astype(np.float32), grads[np.float32][name], rtol=1e-2, atol=1e-2,
                                   err_msg=name)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.usefixtures("kernel_backend")
def test_float16_with_dropout_between_layers(name):
    cr.manual_seed(10)
    layer = getattr(nn, name)(3, 4, num_layers=2, dropout=0.5).to(np.float16)
    x = cr.tensor(np.ones((2, 5, 3), np.float16), requires_grad=True)
    out, _ = layer(x)
    out.sum().backward()
    assert out.dtype == x.grad.dtype == layer.weight_ih_l1.grad.dtype == np.float16
    assert np.isfinite(layer.weight_ih_l1.grad).all()


def test_lstm_refuses_half_an_initial_state():
    layer = nn.LSTM(3, 4)
    for state in [(None, cr.zeros(1, 2, 4)), (cr.zeros(1, 2, 4), None), (cr.zeros(1, 2, 4),)]:
        with pytest.raises(TypeError, match=r"must be a tuple \(h0, c0\) of two Tensors"):
            layer(cr.zeros(2, 5, 3), state)


def test_lstm_cell_refuses_half_a_state_as_the_layer_does():
    # PyTorch's LSTMCell errors on (h, None); chainrule used c = 0 silently
    cell = nn.LSTMCell(3, 4)
    for state in [(cr.zeros(2, 4), None), (None, cr.zeros(2, 4)), (cr.zeros(2, 4),)]:
        with pytest.raises(TypeError, match=r"must be a tuple \(h, c\) of two Tensors"):
            cell(cr.zeros(2, 3), state)
    h, c = cell(cr.zeros(2, 3), (cr.zeros(2, 4), cr.zeros(2, 4)))
    assert h.shape == c.shape == (2, 4)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("count", [2, 9])   # fewer ids than rows (row projections) and more (the table)
def test_forward_tokens_refuses_an_embedding_of_another_dtype(name, implementation, count):
    layer = getattr(nn, name)(2, 3, implementation=implementation)
    embedding = cr.tensor(np.ones((7, 2)), dtype="float64")
    with pytest.raises(ValueError, match=r"embedding dtype \(float64\) does not match"):
        layer.forward_tokens(np.zeros((1, count), np.int64), embedding=embedding)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("count", [3, 4])   # the first sequence padded or full
@pytest.mark.usefixtures("kernel_backend")
def test_forward_tokens_ignore_inf_in_rows_not_looked_up_at_real_steps(cell, implementation, count):
    """An embedding row never looked up, or looked up only at padded steps, holds inf and NaN: PyTorch
    (F.embedding, then the layer on packed lengths) gives finite gradients; only the used rows count."""
    ours, theirs = make_pair(cell, 2, 3, implementation=implementation, dtype=np.float64)
    table = np.array([[1.0, 2.0], [0.5, -1.0], [np.inf, np.nan]])
    ids = np.array([[0, 1, 0, 1], [1, 1, 2, 2]])[:, :count]   # row 2 only past the second sequence's end
    lengths = np.array([count, 2])
    embedding = cr.tensor(table, requires_grad=True)
    out, _ = ours.forward_tokens(ids, embedding=embedding, lengths=lengths)
    out.sum().backward()
    reference = torch.tensor(table, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.nn.functional.embedding(torch.from_numpy(ids), reference),
                                                     torch.from_numpy(lengths), batch_first=True, enforce_sorted=False)
    expected, _ = torch.nn.utils.rnn.pad_packed_sequence(theirs(packed)[0], batch_first=True, total_length=count)
    expected.sum().backward()
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), atol=1e-12)
    for (key, parameter), theirs_parameter in zip(ours.named_parameters(), theirs.parameters()):
        assert np.isfinite(parameter.grad).all(), key
        np.testing.assert_allclose(parameter.grad, theirs_parameter.grad.numpy(), atol=1e-12, err_msg=key)
    np.testing.assert_allclose(embedding.grad, reference.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.usefixtures("kernel_backend")
def test_forward_tokens_with_an_unused_inf_row_matches_the_issue_example(implementation):
    lstm = nn.LSTM(2, 3, implementation=implementation)
    theirs = torch.nn.LSTM(2, 3, batch_first=True)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in lstm.state_dict().items()})
    table = np.array([[1.0, 2.0], [0.5, -1.0], [np.inf, 0.0]], np.float32)
    ids = np.array([[0, 1, 0, 1], [1, 1, 0, 0]])
    embedding = cr.tensor(table, requires_grad=True)
    out, _ = lstm.forward_tokens(ids, embedding=embedding)
    out.sum().backward()
    theirs(torch.nn.functional.embedding(torch.from_numpy(ids), torch.from_numpy(table)))[0].sum().backward()
    np.testing.assert_allclose(lstm.weight_ih_l0.grad, theirs.weight_ih_l0.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.usefixtures("kernel_backend")
def test_relu_rnn_passes_the_gradient_through_a_nan_state_as_torch(implementation):
    """relu' = 1 - [h <= 0] (PyTorch's threshold_backward and chainrule's Relu op): a NaN state passes its
    gradient; [h > 0] would block it."""
    ours, theirs = make_pair("rnn_relu", 1, 1, implementation=implementation, dtype=np.float64)
    for parameter in ours.parameters():
        parameter.data[...] = 0.5
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x_values = np.array([[[np.nan], [1.0]]])
    x = cr.tensor(x_values, requires_grad=True)
    ours(x)[0].sum().backward()
    x_torch = torch.tensor(x_values, requires_grad=True)
    theirs(x_torch)[0].sum().backward()
    np.testing.assert_allclose(x.grad.ravel(), [0.75, 0.5])
    np.testing.assert_allclose(x.grad, x_torch.grad.numpy())
    np.testing.assert_allclose(ours.bias_ih_l0.grad, theirs.bias_ih_l0.grad.numpy())   # 2.5
