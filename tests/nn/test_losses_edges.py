"""Losses and layers at the edges, against PyTorch: ignored targets next to inf and NaN (selected out, never
multiplied by a 0 mask), all-ignored and empty batches, and float16 accumulation (issue 15)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chainrule as cr
from chainrule import nn
from chainrule.nn import functional as F

torch = pytest.importorskip("torch", reason="PyTorch is a test-only oracle")
TF = torch.nn.functional

INF, NAN = np.inf, np.nan
EXAMPLE_LOGITS = [[-INF, 0.0, 1.0], [0.5, 0.2, -1.0]]
EXAMPLE_TARGET = [-100, 2]
REDUCTIONS = ["mean", "sum", "none"]


def ours(kind, logits, target, reduction, dtype="float64"):
    """(loss, gradient of loss.sum()) from chainrule; kind: 'ce', 'nll' (of log_softmax) or 'nll_raw'."""
    x = cr.tensor(np.array(logits, dtype=dtype), requires_grad=True)
    if kind == "ce":
        loss = F.cross_entropy(x, target, reduction)
    elif kind == "nll":
        loss = F.nll_loss(x.log_softmax(axis=-1), target, reduction)
    else:
        loss = F.nll_loss(x, target, reduction)
    loss.sum().backward()
    return loss.data, x.grad


def theirs(kind, logits, target, reduction, dtype=torch.float64):
    x = torch.tensor(np.array(logits), dtype=dtype, requires_grad=True)
    t = torch.tensor(np.array(target, dtype=np.int64))
    if kind == "ce":
        loss = TF.cross_entropy(x, t, reduction=reduction)
    elif kind == "nll":
        loss = TF.nll_loss(TF.log_softmax(x, -1), t, reduction=reduction)
    else:
        loss = TF.nll_loss(x, t, reduction=reduction)
    loss.sum().backward()
    return loss.detach().numpy(), x.grad.numpy()


def same(actual, expected, rtol=1e-10, atol=1e-12):
    """Equal values, with NaN where the oracle has NaN and the same signed infinities."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("kind", ["ce", "nll"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_issue_example_3_ignored_row_with_minus_inf(kind, reduction):
    loss, grad = ours(kind, EXAMPLE_LOGITS, EXAMPLE_TARGET, reduction)
    expected_loss, expected_grad = theirs(kind, EXAMPLE_LOGITS, EXAMPLE_TARGET, reduction)
    same(loss, expected_loss)
    same(grad, expected_grad)
    second_row = np.log(np.exp([0.5, 0.2, -1.0]).sum()) + 1.0  # the second row's loss alone
    assert second_row == pytest.approx(2.174957, abs=1e-6)
    assert np.asarray(loss).reshape(-1)[-1] == pytest.approx(second_row, rel=1e-12)
    np.testing.assert_array_equal(grad[0], 0.0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("bad", [NAN, INF])
def test_ignored_row_with_nan_or_inf_contributes_nothing(reduction, bad):
    logits = [[bad, 0.0, 1.0], [0.5, 0.2, -1.0]]
    loss, grad = ours("ce", logits, EXAMPLE_TARGET, reduction)
    expected_loss, expected_grad = theirs("ce", logits, EXAMPLE_TARGET, reduction)
    same(loss, expected_loss)
    same(grad[1], expected_grad[1])
    # Deliberate difference: PyTorch's log_softmax backward multiplies exp(NaN) by the ignored row's zero
    # gradient and returns NaN there; chainrule selects the row out, so padding cannot poison the weights.
    assert np.isnan(expected_grad[0]).all()
    np.testing.assert_array_equal(grad[0], 0.0)
    # nll_loss on log-probabilities: PyTorch too gives the ignored row a zero gradient
    loss, grad = ours("nll_raw", logits, EXAMPLE_TARGET, reduction)
    expected_loss, expected_grad = theirs("nll_raw", logits, EXAMPLE_TARGET, reduction)
    same(loss, expected_loss)
    same(grad, expected_grad)


@pytest.mark.parametrize("kind", ["ce", "nll_raw"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_all_ignored_batch_gives_torchs_loss_and_a_zero_gradient(kind, reduction):
    logits = [[NAN, 0.0, 1.0], [-INF, 0.2, INF]]
    loss, grad = ours(kind, logits, [-100, -100], reduction)
    expected_loss, _ = theirs(kind, [[0.0, 0.0, 1.0], [0.5, 0.2, -1.0]], [-100, -100], reduction)
    same(loss, expected_loss)  # mean: nan (no targets), sum: 0, none: zeros
    np.testing.assert_array_equal(grad, np.zeros((2, 3)))
    # with finite logits PyTorch's gradient is exactly zero too
    _, expected_grad = theirs(kind, [[0.0, 0.0, 1.0], [0.5, 0.2, -1.0]], [-100, -100], reduction)
    np.testing.assert_array_equal(expected_grad, 0.0)


@pytest.mark.parametrize("ignore_index", [-100, 1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_custom_ignore_index_and_three_axes(ignore_index, reduction):
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((2, 4, 3))
    logits[0, 1] = [-INF, 3.0, -INF]
    target = rng.integers(0, 3, (2, 4))
    target[0, 1] = ignore_index if ignore_index != 1 else 1
    x = cr.tensor(logits, dtype="float64", requires_grad=True)
    loss = F.cross_entropy(x, target, reduction, ignore_index=ignore_index)
    loss.sum().backward()
    tx = torch.tensor(logits, requires_grad=True)
    expected = TF.cross_entropy(tx.permute(0, 2, 1), torch.tensor(target), reduction=reduction,
                                ignore_index=ignore_index)
    expected.sum().backward()
    same(loss.data, expected.detach().numpy())
    same(x.grad, tx.grad.numpy())


# special values anywhere; an ignored row's gradient is compared with 0 (see the NaN test above)
_special = st.sampled_from([0.0, -1.5, 2.0, 30.0, -INF, INF, NAN, 1e300, -1e300])


@given(st.lists(st.lists(_special, min_size=3, max_size=3), min_size=1, max_size=4),
       st.lists(st.sampled_from([-100, 0, 1, 2]), min_size=4, max_size=4), st.sampled_from(REDUCTIONS))
def test_cross_entropy_special_values_match_torch(rows, targets, reduction):
    target = targets[:len(rows)]
    with np.errstate(all="ignore"):
        loss, grad = ours("ce", rows, target, reduction)
    expected_loss, expected_grad = theirs("ce", rows, target, reduction)
    same(loss, expected_loss, rtol=1e-9)
    counted = np.array(target) != -100
    same(grad[counted], expected_grad[counted], rtol=1e-9)
    np.testing.assert_array_equal(grad[~counted], 0.0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(0, 3), (2, 0, 3)])
def test_losses_of_an_empty_batch(reduction, shape):
    target = np.zeros(shape[:-1], np.int64)
    for kind in ("ce", "nll_raw"):
        loss, grad = ours(kind, np.zeros(shape), target, reduction)
        tx = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
        moved = tx.movedim(-1, 1) if len(shape) == 3 else tx
        function = TF.cross_entropy if kind == "ce" else TF.nll_loss
        expected = function(moved, torch.tensor(target), reduction=reduction)
        expected.sum().backward()
        same(loss, expected.detach().numpy())  # mean: nan, sum: 0, none: empty of the target's shape
        assert grad.shape == shape
    x = cr.zeros(*shape, dtype="float64", requires_grad=True)
    loss = F.mse_loss(x, cr.zeros(*shape, dtype="float64"), reduction)
    loss.sum().backward()
    expected = TF.mse_loss(torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64),
                           reduction=reduction)
    same(loss.data, expected.numpy())
    assert x.grad.shape == shape


def test_float16_loss_sums_do_not_overflow():
    logits = np.zeros((10000, 5), np.float16)
    logits[:, 0] = 20
    target = np.ones(10000, np.int64)
    # each row's loss is ≈ 20, so their sum (2e5) is beyond float16's 65504: summed in float32
    expected = TF.cross_entropy(torch.tensor(logits, dtype=torch.float32), torch.tensor(target)).item()
    ce = F.cross_entropy(cr.tensor(logits), target)
    nll = F.nll_loss(cr.tensor(logits).log_softmax(axis=-1), target)
    for loss in (ce, nll):
        assert loss.dtype == np.float16
        assert loss.item() == pytest.approx(expected, rel=1e-3)
    # Deliberate difference: PyTorch on CPU sums these float16 losses in float16 and returns inf
    assert np.isinf(TF.cross_entropy(torch.tensor(logits), torch.tensor(target)).item())
    assert F.cross_entropy(cr.tensor(logits), target, reduction="sum").item() == np.inf  # 2e5 fits no float16
    # mse: PyTorch accumulates in float32 here too
    ones = np.ones(100000, np.float16)
    for reduction in ("mean", "sum"):
        got = F.mse_loss(cr.tensor(ones), cr.tensor(np.zeros_like(ones)), reduction)
        want = TF.mse_loss(torch.tensor(ones), torch.zeros(100000, dtype=torch.float16), reduction=reduction)
        assert got.dtype == np.float16
        assert got.item() == want.item()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_float16_cross_entropy_values_and_gradients(reduction):
    rng = np.random.default_rng(2)
    logits = (rng.standard_normal((6, 5)) * 4).astype(np.float16)
    target = [0, 4, -100, 2, 1, 3]
    loss, grad = ours("ce", logits, target, reduction, dtype="float16")
    expected_loss, expected_grad = theirs("ce", logits.astype(np.float32), target, reduction, torch.float32)
    assert loss.dtype == grad.dtype == np.float16
    np.testing.assert_allclose(loss, expected_loss, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(grad, expected_grad, rtol=2e-3, atol=2e-3)


@pytest.mark.usefixtures("kernel_backend")
def test_layers_with_an_empty_batch():
    linear = nn.Linear(3, 4)
    out = linear(cr.zeros(0, 3))
    out.sum().backward()
    assert out.shape == (0, 4)
    np.testing.assert_array_equal(linear.weight.grad, np.zeros((4, 3)))
    np.testing.assert_array_equal(linear.bias.grad, np.zeros(4))
    embedding = nn.Embedding(10, 3)
    looked_up = embedding(np.zeros((0, 5), np.int64))
    looked_up.sum().backward()
    assert looked_up.shape == tuple(torch.nn.Embedding(10, 3)(torch.zeros(0, 5, dtype=torch.long)).shape)
    np.testing.assert_array_equal(embedding.weight.grad, np.zeros((10, 3)))
    x = cr.zeros(0, 3, requires_grad=True)
    dropped = nn.Dropout(0.5)(x)
    dropped.sum().backward()
    assert dropped.shape == (0, 3) and x.grad.shape == (0, 3)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.ReLU(), nn.Sigmoid())
    assert net(cr.zeros(0, 3)).shape == (0, 4)


def test_module_options_are_checked():
    with pytest.raises(TypeError, match="floating dtypes"):
        nn.Linear(2, 2).to("int64")
    with pytest.raises(ValueError, match="boolean"):
        nn.Linear(2, 2).train("False")
    with pytest.raises(ValueError, match="non-negative integer"):
        nn.Embedding(-1, 3)
    assert nn.Embedding(0, 3)(np.zeros(0, np.int64)).shape == (0, 3)


@pytest.mark.parametrize("target", [2, -100])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_one_sample_without_a_batch_axis(target, reduction):
    for kind in ("ce", "nll_raw"):
        loss, grad = ours(kind, [-1.0, -2.0, -3.0], target, reduction)
        expected_loss, expected_grad = theirs(kind, [-1.0, -2.0, -3.0], target, reduction)
        same(loss, expected_loss)
        same(grad, expected_grad)


def test_loss_inputs_of_the_wrong_kind_are_refused():
    for call in (lambda: F.cross_entropy(cr.tensor([[1, 2, 3]]), [0]), lambda: F.nll_loss(cr.tensor([[1, 2]]), [0]),
                 lambda: F.mse_loss(cr.tensor([1, 2]), cr.tensor([0, 0]))):
        with pytest.raises(TypeError, match="must be floating"):  # PyTorch: not implemented for 'Long'
            call()
    with pytest.raises(NotImplementedError):
        TF.cross_entropy(torch.tensor([[1, 2, 3]]), torch.tensor([0]))
    with pytest.raises(TypeError, match="ignore_index must be an integer"):
        F.cross_entropy(cr.zeros(1, 3), [0], ignore_index=None)  # was: every target counted


@pytest.mark.parametrize("kind", ["ce", "nll_raw"])
@pytest.mark.parametrize("create_graph", [False, True])
def test_float16_mean_over_more_rows_than_float16_counts(kind, create_graph):
    """DIFFERENCE: over 70000 counted rows the float16 count is inf in PyTorch, whose mean-reduction
    gradient is then 0; chainrule takes 1 / count in float32 (it does not overflow a count the user did
    not ask to be float16) and gives the float64 gradient rounded to float16: ±1/(2n) for CE of equal
    logits, -1/n at the target for nll."""
    rows = 70000
    x = cr.tensor(np.zeros((rows, 2)), dtype="float16", requires_grad=True)
    target = np.zeros(rows, np.int64)
    loss = F.cross_entropy(x, target) if kind == "ce" else F.nll_loss(x, target)
    (grad,) = cr.grad(loss, x, create_graph=create_graph)
    expected64 = np.tile([-0.5, 0.5] if kind == "ce" else [-1.0, 0.0], (rows, 1)) / rows
    assert grad.dtype == np.float16
    np.testing.assert_allclose(grad.numpy().astype(np.float64), expected64, rtol=1e-2)
    x_torch = torch.zeros((rows, 2), dtype=torch.float16, requires_grad=True)
    loss_torch = (TF.cross_entropy if kind == "ce" else TF.nll_loss)(x_torch, torch.from_numpy(target))
    loss_torch.backward()
    assert not x_torch.grad.any()   # PyTorch's answer: the overflowed count zeroes the gradient


def test_linear_refuses_an_input_of_another_dtype_as_torch():
    layer = nn.Linear(3, 2)   # float32
    theirs = torch.nn.Linear(3, 2)
    with pytest.raises(RuntimeError):
        theirs(torch.ones(4, 3, dtype=torch.float64))   # PyTorch: mat1 and mat2 must have the same dtype
    with pytest.raises(ValueError, match=r"input dtype \(float64\) does not match the parameters' dtype \(float32\)"):
        layer(cr.ones(4, 3, dtype="float64"))
    assert layer(cr.ones(4, 3)).dtype == np.float32
    assert layer.to("float64")(cr.ones(4, 3, dtype="float64")).dtype == np.float64


def test_functional_linear_refuses_mixed_dtypes_as_torch():
    with pytest.raises(RuntimeError):
        TF.linear(torch.ones(2, 3, dtype=torch.float64), torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"linear: input dtype \(float64\) does not match the weight's dtype"):
        F.linear(cr.ones(2, 3, dtype="float64"), cr.ones(4, 3))
    with pytest.raises(ValueError, match=r"linear: bias dtype \(float64\)"):
        F.linear(cr.ones(2, 3), cr.ones(4, 3), cr.ones(4, dtype="float64"))
