"""Gradient-flow diagnostics against gradients computed directly with the engine."""
import numpy as np
import pytest

import chainrule as cr
from chainrule import insight, nn
from chainrule.nn import functional as F


def manual_rnn_gradients(rnn, x):
    """Unroll the RNN by hand with explicit h_t tensors and take dL/dh_t with cr.grad."""
    h = cr.zeros(x.shape[0], rnn.hidden_size, dtype=x.dtype)
    states = []
    for t in range(x.shape[1]):
        h = F.rnn_cell(x[:, t], h, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        states.append(h)
    loss = h.sum()
    grads = cr.grad(loss, states)
    return np.array([np.linalg.norm(g.data, axis=-1).mean() for g in grads]), states


def test_gradient_norms_match_a_hand_unrolled_rnn():
    cr.manual_seed(0)
    rnn = nn.RNN(3, 5).double()
    x = cr.randn(4, 12, 3, dtype="float64")
    flow = insight.gradient_flow(rnn, lambda: rnn(x)[0][:, -1].sum())
    expected, states = manual_rnn_gradients(rnn, x)
    np.testing.assert_allclose(flow.gradient_norms[0], expected, rtol=1e-12)
    tanh_values = np.concatenate([s.data.ravel() for s in states])
    assert flow.saturation["tanh"] == pytest.approx(np.mean(np.abs(tanh_values) > insight.flow.SATURATED_TANH))
    assert rnn.implementation == "fused"   # switched to the reference path for the measurement, and back


def test_two_layer_lstm_and_gru_norms_and_singular_values():
    cr.manual_seed(1)
    for cell in (nn.LSTM, nn.GRU):
        layer = cell(3, 4, num_layers=2).double()
        x = cr.randn(2, 7, 3, dtype="float64")
        flow = insight.gradient_flow(layer, lambda: layer(x)[0][:, -1].sum())
        assert flow.gradient_norms.shape == (2, 7) and np.all(flow.gradient_norms > 0)
        for index in range(2):
            weight = getattr(layer, f"weight_hh_l{index}").data
            np.testing.assert_allclose(flow.singular_values[f"W_hh_l{index}"], np.linalg.svd(weight, compute_uv=False))
        assert 0.0 <= flow.saturation["sigmoid"] <= 1.0


def test_lstm_gradient_norms_match_a_hand_unrolled_lstm():
    cr.manual_seed(2)
    lstm = nn.LSTM(3, 4).double()
    x = cr.randn(2, 6, 3, dtype="float64")
    h = c = cr.zeros(2, 4, dtype="float64")
    states = []
    for t in range(6):
        h, c = F.lstm_cell(x[:, t], h, c, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
        states.append(h)
    expected = [np.linalg.norm(g.data, axis=-1).mean() for g in cr.grad(h.sum(), states)]
    flow = insight.gradient_flow(lstm, lambda: lstm(x)[0][:, -1].sum())
    np.testing.assert_allclose(flow.gradient_norms[0], expected, rtol=1e-12)
    assert flow.gradient_norms[0, -1] == pytest.approx(2.0)  # d(sum of 4 units)/dh_T = ones: norm 2


def test_scaling_controls_vanishing():
    cr.manual_seed(3)
    x = cr.randn(4, 40, 3) * 0.05
    decays = {}
    for sigma in (0.5, 4.0):
        rnn = nn.RNN(3, 16)
        insight.scale_recurrent_weights(rnn, sigma)
        decays[sigma] = insight.gradient_flow(rnn, lambda rnn=rnn: rnn(x)[0][:, -1].sum()).decay_per_step()
    assert decays[0.5] < 0.6 and decays[4.0] > 1.0
    with pytest.raises(ValueError, match="positive"):
        insight.scale_recurrent_weights(nn.RNN(2, 2), 0.0)


def test_errors():
    rnn = nn.RNN(2, 3)
    with pytest.raises(ValueError, match="did not run the layer"):
        insight.gradient_flow(rnn, lambda: (cr.ones(1, requires_grad=True) * 2).sum())
    with pytest.raises(ValueError, match="scalar"):
        insight.gradient_flow(rnn, lambda: rnn(cr.randn(1, 3, 2))[0])
    assert rnn.implementation == "fused"   # switched to the reference path for the measurement, and back
    with pytest.raises(ValueError, match="ran twice"):
        insight.gradient_flow(rnn, lambda: rnn(cr.randn(1, 3, 2))[0].sum() + rnn(cr.randn(1, 3, 2))[0].sum())
    other = nn.RNN(2, 3, implementation="reference")
    with pytest.raises(ValueError, match="no other recurrent layer"):
        insight.gradient_flow(rnn, lambda: rnn(cr.randn(1, 3, 2))[0].sum() + nn.Sequential(other)(
            cr.randn(1, 3, 2))[0].sum())


def test_any_model_whose_steps_are_scoped_is_measured_without_its_help():
    # a hand-written recurrence: naming its steps (as the reference layers do) is all the measurement needs
    cr.manual_seed(2)
    rnn = nn.RNN(3, 5).double()
    x = cr.randn(4, 9, 3, dtype="float64")
    expected, _ = manual_rnn_gradients(rnn, x)

    def by_hand():
        h = cr.zeros(4, 5, dtype="float64")
        with cr.scope("layer 0"):
            for t in range(9):
                with cr.scope(f"t={t}"):
                    h = F.rnn_cell(x[:, t], h, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        return h.sum()

    flow = insight.gradient_flow(rnn, by_hand)
    np.testing.assert_allclose(flow.gradient_norms[0], expected, rtol=1e-12)
    assert 0.0 <= flow.saturation["tanh"] <= 1.0 and "sigmoid" not in flow.saturation


def test_nn_carries_no_measuring_hooks():
    # the measurement goes through the engine's forward hook; the layers and cells know nothing of it
    import inspect
    assert not any(hasattr(cls, "recorder") for cls in (nn.RNN, nn.LSTM, nn.GRU))
    for cell in (F.rnn_cell, F.lstm_cell, F.gru_cell):
        assert "record" not in inspect.signature(cell).parameters
