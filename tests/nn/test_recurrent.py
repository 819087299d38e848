"""Recurrent layers: fused vs reference (float64, 1e-10), gradcheck, PyTorch parity, state, errors."""
import itertools
import math

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
CONFIGS = list(itertools.product(CELLS, [1, 2], [False, True], [False, True], [True, False]))


def config_id(config):
    cell, layers, bidirectional, with_lengths, batch_first = config
    return f"{cell}-L{layers}-{'bi' if bidirectional else 'uni'}-{'len' if with_lengths else 'full'}-" \
           f"{'bf' if batch_first else 'tf'}"


def run(layer, x, state, lengths):
    """Forward + a loss touching every output and final state; returns values and all gradients."""
    layer.zero_grad()
    x.grad = None
    out, final = layer(x, state, lengths=lengths)
    finals = final if isinstance(final, tuple) else (final,)
    loss = (out * out.data.copy()).sum() + sum((f * (k + 2)).sum() * f.sum() for k, f in enumerate(finals))
    loss.backward()
    grads = {name: p.grad.copy() for name, p in layer.named_parameters()}
    return out.data.copy(), [f.data.copy() for f in finals], grads, x.grad.copy()


def make_inputs(layer_cls, layers, bidirectional, batch_first, dtype, seed=0):
    rng = np.random.default_rng(seed)
    batch, steps, features, hidden = 3, 6, 4, 5
    shape = (batch, steps, features) if batch_first else (steps, batch, features)
    x = cr.tensor(rng.standard_normal(shape), dtype=dtype, requires_grad=True)
    count = layers * (2 if bidirectional else 1)
    h0 = cr.tensor(rng.standard_normal((count, batch, hidden)) * 0.5, dtype=dtype, requires_grad=True)
    state = (h0, cr.tensor(rng.standard_normal((count, batch, hidden)) * 0.5, dtype=dtype,
                           requires_grad=True)) if layer_cls is nn.LSTM else h0
    return x, state, [6, 2, 4], (features, hidden)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
@pytest.mark.usefixtures("kernel_backend")
def test_fused_matches_reference_float64(config):
    cell, layers, bidirectional, with_lengths, batch_first = config
    layer_cls = CELLS[cell]
    x, state, lengths, (features, hidden) = make_inputs(layer_cls, layers, bidirectional, batch_first, "float64")
    cr.manual_seed(1)
    layer = layer_cls(features, hidden, num_layers=layers, bidirectional=bidirectional,
                      batch_first=batch_first).double()
    lengths = lengths if with_lengths else None
    fused = run(layer, x, state, lengths)
    layer.implementation = "reference"
    reference = run(layer, x, state, lengths)
    np.testing.assert_allclose(fused[0], reference[0], atol=1e-10, rtol=0)
    for a, b in zip(fused[1], reference[1]):
        np.testing.assert_allclose(a, b, atol=1e-10, rtol=0)
    for name in fused[2]:
        np.testing.assert_allclose(fused[2][name], reference[2][name], atol=1e-10, rtol=0, err_msg=name)
    np.testing.assert_allclose(fused[3], reference[3], atol=1e-10, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_transposed_backward_step_product_matches_reference(kernel_backend, cell, with_lengths, monkeypatch):
    """The numba kernels compute dL/dh_{t-1} = δ_t W_hh as W_hhᵀ δ_tᵀ from H = 512 (plain below): the test
    sizes are small, so force the transposed form here (2 layers, both directions, padding)."""
    if kernel_backend == "numpy":
        pytest.skip("a choice of the numba kernels")
    from chainrule.nn.kernels.numba_backend import base
    monkeypatch.setattr(base, "_TRANSPOSED_BACK_PRODUCT_FROM", 0)
    layer_cls = CELLS[cell]
    x, state, lengths, (features, hidden) = make_inputs(layer_cls, 2, True, True, "float64", seed=3)
    cr.manual_seed(4)
    layer = layer_cls(features, hidden, num_layers=2, bidirectional=True, batch_first=True).double()
    lengths = lengths if with_lengths else None
    fused = run(layer, x, state, lengths)
    layer.implementation = "reference"
    reference = run(layer, x, state, lengths)
    for a, b in zip([fused[0], *fused[1], *fused[2].values(), fused[3]],
                    [reference[0], *reference[1], *reference[2].values(), reference[3]]):
        np.testing.assert_allclose(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.usefixtures("kernel_backend")
def test_fused_functions_gradcheck(cell, with_mask, reverse):
    """The hand-written BPTT against central differences, for every input of the fused node."""
    from chainrule.nn.fused import FusedGRU, FusedLSTM, FusedRNN
    rng = np.random.default_rng(11)
    steps, batch, hidden = 4, 2, 2
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * hidden

    def leaf(*shape):
        return cr.tensor(rng.standard_normal(shape) * 0.7, dtype="float64", requires_grad=True)

    projected, h0, c0 = leaf(steps, batch, gates), leaf(batch, hidden), leaf(batch, hidden)
    weight_hh, bias_hh = leaf(gates, hidden), leaf(gates)
    mask = (np.arange(steps)[:, None] < np.array([4, 2])[None, :])[:, :, None] if with_mask else None
    if cell == "lstm":
        assert cr.gradcheck(lambda *a: FusedLSTM.apply(*a, mask, reverse), (projected, h0, c0, weight_hh, bias_hh))
        assert cr.gradcheck(lambda *a: FusedLSTM.apply(*a, None, mask, reverse), (projected, h0, c0, weight_hh))
    elif cell == "gru":
        assert cr.gradcheck(lambda *a: FusedGRU.apply(*a, mask, reverse),
                            (projected, h0, weight_hh, bias_hh, leaf(gates)))
        assert cr.gradcheck(lambda *a: FusedGRU.apply(*a, None, None, mask, reverse), (projected, h0, weight_hh))
    else:
        for nonlinearity in ("tanh", "relu"):
            assert cr.gradcheck(lambda *a: FusedRNN.apply(*a, mask, reverse, nonlinearity),
                                (projected, h0, weight_hh, bias_hh))
            assert cr.gradcheck(lambda *a: FusedRNN.apply(*a, None, mask, reverse, nonlinearity),
                                (projected, h0, weight_hh))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.usefixtures("kernel_backend")
def test_fused_layer_gradcheck_through_inputs_and_state(cell):
    cr.manual_seed(2)
    layer = CELLS[cell](2, 3, num_layers=2, bidirectional=True).double()
    x = cr.randn(2, 4, 2, dtype="float64", requires_grad=True)
    h0 = cr.randn(4, 2, 3, dtype="float64", requires_grad=True)

    def forward(x, h0):
        out, final = layer(x, (h0, h0 * 0.5) if cell == "lstm" else h0, lengths=[4, 3])
        return (out,) + (final if isinstance(final, tuple) else (final,))

    assert cr.gradcheck(forward, (x, h0))


@pytest.mark.usefixtures("kernel_backend")
def test_relu_rnn_fused_matches_reference():
    cr.manual_seed(12)
    layer = nn.RNN(3, 4, nonlinearity="relu", num_layers=2).double()
    x = cr.randn(2, 5, 3, dtype="float64", requires_grad=True)
    fused = run(layer, x, None, [5, 3])
    layer.implementation = "reference"
    reference = run(layer, x, None, [5, 3])
    np.testing.assert_allclose(fused[0], reference[0], atol=1e-10)
    for name in fused[2]:
        np.testing.assert_allclose(fused[2][name], reference[2][name], atol=1e-10)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.usefixtures("kernel_backend")
def test_fused_backward_twice_with_retain_graph_gives_the_same_gradients(cell):
    """Without retain_graph the LSTM kernels write the gradients over the stored gates; with it they must not."""
    x, state, lengths, (features, hidden) = make_inputs(CELLS[cell], 2, False, True, "float64")
    layer = CELLS[cell](features, hidden, num_layers=2, batch_first=True).double()
    out, _ = layer(x, state, lengths=lengths)
    loss = (out * out.data.copy()).sum()
    loss.backward(retain_graph=True)
    first = {name: p.grad.copy() for name, p in layer.named_parameters()}
    layer.zero_grad()
    loss.backward()
    for name, p in layer.named_parameters():
        np.testing.assert_array_equal(p.grad, first[name], err_msg=name)
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_fused_backward_refuses_create_graph():
    layer = nn.LSTM(2, 3).double()
    x = cr.randn(1, 3, 2, dtype="float64", requires_grad=True)
    out, _ = layer(x)
    with pytest.raises(RuntimeError, match="reference"):
        cr.grad(out.sum(), x, create_graph=True)
    layer.implementation = "reference"
    out, _ = layer(x)
    (g,) = cr.grad(out.sum(), x, create_graph=True)
    (gg,) = cr.grad((g * g).sum(), x)
    assert np.all(np.isfinite(gg.data))


def test_padded_steps_get_no_gradient_and_h_n_is_last_real_step():
    cr.manual_seed(3)
    layer = nn.GRU(2, 3).double()
    x = cr.randn(2, 5, 2, dtype="float64", requires_grad=True)
    out, h_n = layer(x, lengths=[5, 2])
    np.testing.assert_array_equal(out.data[1, 2:], 0.0)
    np.testing.assert_allclose(h_n.data[0, 1], out.data[1, 1])
    (out.sum() + h_n.sum()).backward()
    np.testing.assert_array_equal(x.grad[1, 2:], 0.0)
    alone, alone_h = layer(x[1:2, :2])  # the short sequence on its own
    np.testing.assert_allclose(alone_h.data[0, 0], h_n.data[0, 1], atol=1e-12)


def test_truncated_bptt_with_detached_state_equals_one_long_run_forward():
    cr.manual_seed(4)
    layer = nn.LSTM(3, 4, num_layers=2)
    x = cr.randn(2, 12, 3)
    full, (h_full, c_full) = layer(x)
    state = None
    pieces = []
    for start in range(0, 12, 4):
        out, state = layer(x[:, start:start + 4], state)
        out.sum().backward()  # gradients stop at the chunk boundary
        state = tuple(s.detach() for s in state)
        pieces.append(out.data)
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full.data, atol=1e-6)
    np.testing.assert_allclose(state[0].data, h_full.data, atol=1e-6)
    assert all(p.grad is not None for p in layer.parameters())


def test_cells_match_sequence_layer_step():
    cr.manual_seed(5)
    for cell_cls, layer_cls in ((nn.RNNCell, nn.RNN), (nn.LSTMCell, nn.LSTM), (nn.GRUCell, nn.GRU)):
        layer = layer_cls(3, 4).double()
        cell = cell_cls(3, 4).double()
        cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
        x = cr.randn(2, 1, 3, dtype="float64")
        out, _ = layer(x)
        step = cell(x[:, 0])
        step = step[0] if isinstance(step, tuple) else step
        np.testing.assert_allclose(step.data, out.data[:, 0], atol=1e-12)
        unbatched = cell(x[0, 0])
        unbatched = unbatched[0] if isinstance(unbatched, tuple) else unbatched
        np.testing.assert_allclose(unbatched.data, out.data[0, 0], atol=1e-12)


def test_unbatched_input():
    layer = nn.GRU(3, 4, num_layers=2)
    out, h_n = layer(cr.randn(7, 3))
    assert out.shape == (7, 4) and h_n.shape == (2, 4)


def test_parameter_names_and_shapes_are_pytorchs():
    layer = nn.LSTM(10, 20, num_layers=2, bidirectional=True)
    shapes = {name: p.shape for name, p in layer.named_parameters()}
    assert shapes["weight_ih_l0"] == (80, 10)
    assert shapes["weight_hh_l0_reverse"] == (80, 20)
    assert shapes["weight_ih_l1"] == (80, 40)
    assert shapes["bias_hh_l1_reverse"] == (80,)
    assert len(shapes) == 16
    bound = 1 / np.sqrt(20)
    assert all(np.abs(p.data).max() <= bound for p in layer.parameters())
    assert nn.GRU(3, 5).weight_ih_l0.shape == (15, 3)


@pytest.mark.parametrize("bad, message", [
    (lambda: nn.LSTM(3, 4)(cr.randn(2, 5, 6)), r"input_size 3.*\(2, 5, 6\)"),
    (lambda: nn.LSTM(3, 4)(cr.randn(2, 5)), r"input_size 3"),
    (lambda: nn.LSTM(3, 4)(cr.randn(5)), r"3-D input"),
    (lambda: nn.GRU(3, 4)(cr.randn(2, 5, 3), cr.zeros(1, 3, 4)), r"h0 of shape \[1, 2, 4\].*\[1, 3, 4\]"),
    (lambda: nn.LSTM(3, 4)(cr.randn(2, 5, 3), cr.zeros(1, 2, 4)), r"tuple \(h0, c0\)"),
    (lambda: nn.RNN(3, 4)(cr.randn(2, 5, 3), lengths=[5, 5, 5]), r"one length per sequence \(2\)"),
    (lambda: nn.RNN(3, 4)(cr.randn(2, 5, 3), lengths=[6, 1]), r"between 1 and the sequence length 5"),
    (lambda: nn.RNN(3, 4)(cr.randn(2, 5, 3), lengths=[0, 1]), r"between 1"),
    (lambda: nn.RNN(3, 4, nonlinearity="sigmoid"), r"'tanh' or 'relu'"),
    (lambda: nn.LSTM(3, 0), r"hidden_size must be a positive integer"),
    (lambda: nn.LSTM(3, 4, implementation="cuda"), r"implementation"),
    (lambda: nn.LSTMCell(3, 4)(cr.randn(2, 5)), r"\[batch, 3\]"),
])
def test_errors_say_what_was_expected(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        bad()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("with_embedding", [False, True])
@pytest.mark.parametrize("shape, lengths", [((3, 6), [6, 4, 2]), ((1, 3), [2])])   # more ids than rows, fewer
@pytest.mark.usefixtures("kernel_backend")
def test_forward_tokens_matches_reference_on_embedded_inputs(cell, with_embedding, shape, lengths):
    cr.manual_seed(13)
    vocabulary, width = 7, 5
    layer = CELLS[cell](width if with_embedding else vocabulary, 4, num_layers=2, bidirectional=True).double()
    embedding = cr.randn(vocabulary, width, dtype="float64", requires_grad=True) if with_embedding else None
    ids = np.random.default_rng(0).integers(0, vocabulary, shape)
    ids[0, :3] = 2  # repeated tokens: their table gradients must add up

    def run_tokens():
        layer.zero_grad()
        if embedding is not None:
            embedding.grad = None
        out, final = layer.forward_tokens(ids, embedding, lengths=lengths)
        finals = final if isinstance(final, tuple) else (final,)
        ((out * out).sum() + sum((f * f).sum() for f in finals)).backward()
        grads = {n: p.grad.copy() for n, p in layer.named_parameters()}
        return out.data.copy(), grads, None if embedding is None else embedding.grad.copy()

    fused = run_tokens()
    layer.implementation = "reference"
    reference = run_tokens()
    np.testing.assert_allclose(fused[0], reference[0], atol=1e-10)
    for name in fused[1]:
        np.testing.assert_allclose(fused[1][name], reference[1][name], atol=1e-10, err_msg=name)
    if embedding is not None:
        np.testing.assert_allclose(fused[2], reference[2], atol=1e-10)


def test_forward_tokens_errors():
    layer = nn.LSTM(4, 3)
    with pytest.raises(IndexError, match="token id 9 is out of range for 4"):
        layer.forward_tokens(np.array([[1, 9]]))
    with pytest.raises(TypeError, match="2-D integer"):
        layer.forward_tokens(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="4 columns"):
        layer.forward_tokens(np.array([[1, 2]]), cr.randn(10, 5))


def test_array_pool_reuses_only_arrays_no_one_else_refers_to():
    from chainrule._kernels.memory import REFERENCES_COUNTED
    from chainrule._kernels.memory import ArrayPool
    if not REFERENCES_COUNTED:
        pytest.skip("reference counts are not exact on this interpreter: the pool always allocates")
    pool = ArrayPool(minimum_bytes=0)
    first = pool.empty((4, 5), np.float32)
    view = first[1:]
    del first
    second = pool.empty((4, 5), np.float32)
    assert not np.shares_memory(second, view)           # a view keeps its base in use
    del view
    assert pool.empty((4, 5), np.float64).dtype == np.float64   # another dtype: a new array
    third = pool.empty((4, 5), np.float32)
    assert not np.shares_memory(third, second)          # `second` is still held here
    released = id(third)
    del third
    assert id(pool.empty((4, 5), np.float32)) == released


@pytest.mark.parametrize("steps", [1, 2, 5])
@pytest.mark.parametrize("reverse", [False, True])
def test_recurrent_weight_gradient_is_the_sum_over_steps(steps, reverse):
    """dW_hh = Σ_t δ_tᵀ h_{t-1}, h_{t-1} being h0 for the first step taken (the last one when reversed)."""
    from chainrule.nn.kernels.common import recurrent_weight_gradient
    rng = np.random.default_rng(steps)
    deltas, states, h0 = rng.normal(size=(steps, 3, 8)), rng.normal(size=(steps, 3, 2)), rng.normal(size=(3, 2))
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    expected, previous = np.zeros((8, 2)), h0
    for t in order:
        expected += deltas[t].T @ previous
        previous = states[t]
    np.testing.assert_allclose(recurrent_weight_gradient(deltas, states, h0, reverse), expected, rtol=1e-12)


def test_fused_outputs_kept_by_the_caller_survive_later_steps():
    """The fused layer's storage is pooled: an output still held must never be overwritten by later calls."""
    cr.manual_seed(5)
    layer = nn.LSTM(8, 256)   # arrays above the pool's 1 MiB threshold
    x = cr.randn(32, 40, 8)
    with cr.no_grad():   # no graph holds the storage: only the output tensor does
        kept, _ = layer(x)
    snapshot = kept.data.copy()
    for _ in range(3):
        out, _ = layer(cr.randn(32, 40, 8, requires_grad=True))
        out.sum().backward()
    np.testing.assert_array_equal(kept.data, snapshot)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.usefixtures("kernel_backend")
def test_fused_token_table_input_errors(cell):
    from chainrule.nn.fused import FusedGRU, FusedLSTM, FusedRNN
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * 2
    table, state = cr.randn(5, gates), np.zeros((2, 2), np.float32)
    weight_hh = cr.randn(gates, 2)

    def run(tokens, projected=table):
        if cell == "lstm":
            return FusedLSTM.apply(projected, state, state, weight_hh, None, None, False, tokens=tokens)
        if cell == "gru":
            return FusedGRU.apply(projected, state, weight_hh, None, None, None, False, tokens=tokens)
        return FusedRNN.apply(projected, state, weight_hh, None, None, False, "tanh", tokens=tokens)

    assert run(np.array([[0, 4], [3, 3]]))[0].shape == (2, 2, 2)
    with pytest.raises(IndexError, match=r"token ids must be in \[0, 5\), got min 0 and max 5"):
        run(np.array([[0, 5], [1, 2]]))
    with pytest.raises(IndexError, match="got min -1"):
        run(np.array([[0, -1], [1, 2]]))
    with pytest.raises(TypeError, match=r"tokens must be a \[T, B\] integer array, got float64"):
        run(np.array([[0.0, 1.0]]))
    with pytest.raises(TypeError, match=r"of shape \(2,\)"):
        run(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"projected must be a \[vocabulary, gates\] table, got shape \(1, 5, "):
        run(np.array([[0, 1]]), cr.randn(1, 5, gates))


def _float32_ulps(values, exact):
    """Distance in units in the last place between float32 values and the float64 ones rounded to float32."""
    def ordered(a):   # float32 bit patterns as integers in the order of the values
        bits = a.astype(np.float32).view(np.int32).astype(np.int64)
        return np.where(bits < 0, np.int64(-2**31) - bits, bits)
    return np.abs(ordered(values) - ordered(exact))


def test_compiled_tanh_is_within_6_ulps_in_float32_and_exact_in_float64():
    pytest.importorskip("numba")
    from numba import njit

    from chainrule.nn.kernels.numba_backend import tanh

    @njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = tanh(x[i])

    rng = np.random.default_rng(3)
    x = np.concatenate([np.linspace(-12, 12, 2_000_001), rng.uniform(-9.5, 9.5, 1_000_000),
                        np.geomspace(1e-40, 1, 20_000), -np.geomspace(1e-40, 1, 20_000),
                        [0.0, 8.99, 9.0, 9.01, 3.4e38, -3.4e38]]).astype(np.float32)
    out = np.empty_like(x)
    apply(x, out)
    ulps = _float32_ulps(out, np.tanh(x.astype(np.float64)))
    assert ulps.max() <= 6, f"worst at x = {x[ulps.argmax()]!r}: {ulps.max()} ulps"
    assert ulps.mean() < 1.0
    assert np.abs(out).max() <= 1.0
    negated = np.empty_like(x)
    apply(-x, negated)
    np.testing.assert_array_equal(negated, -out)                     # odd, exactly
    special = np.array([np.inf, -np.inf, np.nan, -0.0], np.float32)
    special_out = np.empty_like(special)
    apply(special, special_out)
    np.testing.assert_array_equal(special_out[:2], [1.0, -1.0])
    assert np.isnan(special_out[2]) and special_out[3] == 0.0
    exact = np.linspace(-20, 20, 10_001)
    exact_out = np.empty_like(exact)
    apply(exact, exact_out)
    np.testing.assert_array_equal(exact_out, [math.tanh(v) for v in exact])   # float64: math.tanh itself


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.usefixtures("kernel_backend")
def test_fused_float32_follows_float64_reference_through_saturation(cell, with_lengths):
    """float32 through the fused kernels (an approximate tanh where compiled) against the float64 reference,
    with inputs large enough to saturate the gates, over 60 steps."""
    rng = np.random.default_rng(8)
    batch, steps, features, hidden = 4, 60, 6, 24
    x64 = rng.standard_normal((batch, steps, features)) * 10.0
    lengths = [60, 17, 59, 1] if with_lengths else None
    cr.manual_seed(2)
    layer = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](features, hidden, batch_first=True)
    results = {}
    for dtype in ("float32", "float64"):
        layer32 = layer if dtype == "float32" else layer.double()
        if dtype == "float64":
            layer32.implementation = "reference"
        layer32.zero_grad()
        x = cr.tensor(x64, dtype=dtype, requires_grad=True)
        out, state = layer32(x, lengths=lengths)
        h, c = state if cell == "lstm" else (state, state)
        weights = cr.tensor(np.cos(np.arange(out.size)).reshape(out.shape), dtype=dtype)
        ((out * weights).sum() + (h * c).sum()).backward()
        results[dtype] = [out.data.copy(), h.data.copy(), c.data.copy(), x.grad.copy()] + [
            p.grad.copy() for p in layer32.parameters()]
    for single, double in zip(results["float32"], results["float64"]):
        scale = np.abs(double).max()
        np.testing.assert_allclose(single, double, atol=2e-5 * scale, rtol=0)


def test_compiled_time_loops_refuse_to_start_without_numpys_blas(monkeypatch):
    pytest.importorskip("numba")
    from chainrule.nn.kernels import blas, numba_backend
    monkeypatch.setattr(blas, "AVAILABLE", False)
    previous = numba_backend.compiled_time_loops()
    with pytest.raises(RuntimeError, match="compiled time loops need NumPy's BLAS, which chainrule could not find"):
        numba_backend.compiled_time_loops(True)
    assert numba_backend.compiled_time_loops() == previous      # the setting is left as it was
    assert numba_backend.compiled_time_loops(False) is False     # the Python loops are always there
    monkeypatch.undo()
    numba_backend.compiled_time_loops(previous)
