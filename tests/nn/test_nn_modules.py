"""Modules, state dicts, feed-forward layers, losses and gradient clipping."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chainrule as cr
from chainrule import nn
from chainrule.nn import functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.rnn = nn.GRU(4, 6)
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(6, 10))

    def forward(self, tokens):
        out, _ = self.rnn(self.embed(tokens))
        return self.head(out)


def test_registration_names_and_children():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names[:2] == ["embed.weight", "rnn.weight_ih_l0"] and names[-2:] == ["head.1.weight", "head.1.bias"]
    assert [type(c).__name__ for c in net.children()] == ["Embedding", "GRU", "Sequential"]
    assert net.num_parameters() == 10 * 4 + (18 * 4 + 18 * 6 + 18 + 18) + (6 * 10 + 10)
    assert "GRU(4, 6)" in repr(net)


def test_shared_parameter_counted_once():
    net = nn.Module()
    net.a = nn.Linear(2, 2)
    net.b = net.a
    assert len(list(net.parameters())) == 2


def test_train_eval_switches_every_submodule():
    net = Net().eval()
    assert not any(m.training for m in net.modules())
    tokens = cr.tensor([[1, 2, 3]])
    np.testing.assert_array_equal(net(tokens).data, net(tokens).data)  # dropout off
    net.train()
    assert all(m.training for m in net.modules())


def test_state_dict_round_trip_and_errors():
    a, b = Net(), Net()
    b.load_state_dict(a.state_dict())
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    state = a.state_dict()
    state["embed.weight"][...] = 0  # a copy: the model is untouched
    assert np.abs(a.embed.weight.data).sum() > 0
    missing = dict(state)
    del missing["rnn.bias_hh_l0"]
    with pytest.raises(ValueError, match="missing keys: rnn.bias_hh_l0"):
        b.load_state_dict(missing)
    assert b.load_state_dict(missing, strict=False) == (["rnn.bias_hh_l0"], [])
    with pytest.raises(ValueError, match="unexpected keys: extra"):
        b.load_state_dict({**state, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"'head.1.weight' has shape \(3, 3\).*\(10, 6\)"):
        b.load_state_dict({**state, "head.1.weight": np.zeros((3, 3))}, strict=False)
    with pytest.raises(TypeError, match="mapping"):
        b.load_state_dict([1, 2])


def test_zero_grad_and_dtype_conversion():
    net = Net()
    F.cross_entropy(net(cr.tensor([[1, 2]])), [[3, 4]]).backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.double()
    assert all(p.dtype == np.float64 for p in net.parameters())


def test_module_errors():
    class Forgot(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(cr.ones(1))

    with pytest.raises(AttributeError, match="super"):
        Forgot()
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match="3 features"):
        nn.Linear(3, 2)(cr.ones(2, 4))
    with pytest.raises(IndexError, match="index 10 is out of range for 10"):
        nn.Embedding(10, 2)(cr.tensor([1, 10]))
    with pytest.raises(TypeError, match="Sequential: item 1"):
        nn.Sequential(nn.Tanh(), "relu")


def test_linear_matches_manual_and_embedding_gradient_accumulates():
    layer = nn.Linear(3, 2)
    x = cr.randn(4, 3)
    np.testing.assert_allclose(layer(x).data, x.data @ layer.weight.data.T + layer.bias.data, rtol=1e-6)
    embed = nn.Embedding(5, 2)
    embed(cr.tensor([1, 1, 3])).sum().backward()
    np.testing.assert_array_equal(embed.weight.grad[:, 0], [0, 2, 0, 1, 0])


def test_dropout_scales_kept_units():
    cr.manual_seed(0)
    out = nn.Dropout(0.25)(cr.ones(10000))
    kept = out.data[out.data != 0]
    np.testing.assert_allclose(kept, 1 / 0.75)
    assert abs(kept.size / 10000 - 0.75) < 0.03


@given(seed=st.integers(0, 10_000), shape=st.sampled_from([(5, 4), (2, 3, 4), (1, 1, 2)]),
       reduction=st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy_gradcheck(seed, shape, reduction):
    rng = np.random.default_rng(seed)
    logits = cr.tensor(rng.standard_normal(shape) * 3, dtype="float64", requires_grad=True)
    target = rng.integers(0, shape[-1], shape[:-1])
    if target.size > 1:
        target.flat[0] = -100  # ignored
    assert cr.gradcheck(lambda z: F.cross_entropy(z, target, reduction), (logits,))
    assert cr.gradgradcheck(lambda z: F.cross_entropy(z, target, reduction), (logits,))


def test_cross_entropy_is_s_minus_one_and_stable():
    logits = cr.tensor([[1e4, 0.0, -1e4], [2.0, 1.0, 0.1]], dtype="float64", requires_grad=True)
    loss = F.cross_entropy(logits, [1, 0], reduction="sum")
    assert np.isfinite(loss.item()) and loss.item() == pytest.approx(1e4 + (np.log(np.exp([2, 1, 0.1]).sum()) - 2))
    loss.backward()
    softmax = np.exp(logits.data - logits.data.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    softmax[[0, 1], [1, 0]] -= 1
    np.testing.assert_allclose(logits.grad, softmax, atol=1e-12)


def test_cross_entropy_mean_of_only_ignored_targets_is_nan_like_torch():
    with np.errstate(invalid="ignore"):
        assert np.isnan(F.cross_entropy(cr.zeros(1, 3), [-100]).item())


def test_nll_and_mse_match_definitions():
    log_probs = cr.log_softmax(cr.randn(4, 3, dtype="float64"), axis=-1)
    target = [0, 2, 1, 2]
    expected = -np.mean(log_probs.data[np.arange(4), target])
    assert F.nll_loss(log_probs, target).item() == pytest.approx(expected)
    assert F.cross_entropy(cr.tensor(log_probs.data), target).item() == pytest.approx(expected)
    assert F.mse_loss(cr.tensor([1.0, 3.0]), cr.tensor([0.0, 0.0]), reduction="sum").item() == 10.0


@pytest.mark.parametrize("call, message", [
    (lambda: F.cross_entropy(cr.zeros(2, 3), [0, 3]), r"target index 3 is out of range for 3 classes"),
    (lambda: F.cross_entropy(cr.zeros(2, 3), [0, -2]), r"target index -2"),
    (lambda: F.cross_entropy(cr.zeros(2, 3), [0, 1, 2]), r"target must have shape \(2,\), got \(3,\)"),
    (lambda: F.cross_entropy(cr.zeros(2, 3), [0.5, 1.0]), r"integer class indices"),
    (lambda: F.cross_entropy(cr.zeros(2, 3), [0, 1], reduction="avg"), r"reduction must be one of"),
    (lambda: F.mse_loss(cr.zeros(2), cr.zeros(3)), r"\(2,\) but target has shape \(3,\)"),
])
def test_loss_errors(call, message):
    with pytest.raises((ValueError, IndexError, TypeError), match=message):
        call()


def test_clip_grad_norm_and_value():
    a, b = cr.ones(2, requires_grad=True), cr.ones(3, requires_grad=True)
    a.grad, b.grad = np.array([3.0, 4.0], np.float32), np.zeros(3, np.float32)
    total = nn.utils.clip_grad_norm_([a, b], max_norm=1.0)
    assert float(total) == pytest.approx(5.0)
    assert np.linalg.norm(a.grad) == pytest.approx(1.0, rel=1e-5)
    a.grad = np.array([0.3, 0.4], np.float32)
    nn.utils.clip_grad_norm_([a], max_norm=1.0)  # below the limit: unchanged
    np.testing.assert_allclose(a.grad, [0.3, 0.4])
    a.grad = np.array([np.inf, 1.0], np.float32)
    with pytest.raises(RuntimeError, match="inf"):
        nn.utils.clip_grad_norm_([a], 1.0, error_if_nonfinite=True)
    b.grad = np.array([-3.0, 0.2, 9.0], np.float32)
    nn.utils.clip_grad_value_([b], 0.5)
    np.testing.assert_allclose(b.grad, [-0.5, 0.2, 0.5])


@pytest.mark.usefixtures("kernel_backend")
def test_dropout_function_gradients_layouts_and_nan():
    rng = np.random.default_rng(3)
    x = cr.tensor(rng.standard_normal((4, 3, 5)), dtype="float64", requires_grad=True)

    def dropped(z):
        cr.manual_seed(7)  # the same mask at every evaluation
        return F.dropout(z, 0.4)

    assert cr.gradcheck(dropped, (x,)) and cr.gradgradcheck(dropped, (x,))
    # a transposed view gives the transposed result of the same draws laid out logically
    cr.manual_seed(1)
    strided = F.dropout(x.swapaxes(0, 1), 0.4).data
    cr.manual_seed(1)
    contiguous = F.dropout(cr.tensor(np.ascontiguousarray(x.data.swapaxes(0, 1))), 0.4).data
    np.testing.assert_array_equal(strided, contiguous)
    assert 0 < (strided == 0).mean() < 0.8
    # a dropped NaN stays NaN (x · 0), as in PyTorch
    cr.manual_seed(2)
    out = F.dropout(cr.tensor(np.full(2000, np.nan)), 0.5).data
    assert np.isnan(out).all()
