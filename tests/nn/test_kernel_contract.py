"""Every recurrent-kernel backend keeps the written contract (`chainrule.nn.kernels.contract`)."""
import inspect

import pytest

from chainrule._kernels.backend import numba_available
from chainrule.nn.kernels import contract

ENTRY_POINTS = [name for name, value in vars(contract.KernelBackend).items()
                if inspect.isfunction(value) and not name.startswith("_")]


def backend_modules():
    from chainrule.nn.kernels import numpy_backend
    modules = [numpy_backend]
    if numba_available():
        from chainrule.nn.kernels import numba_backend
        modules.append(numba_backend)
    return modules


def test_the_contract_names_seven_entry_points_with_docstrings():
    assert sorted(ENTRY_POINTS) == ["apply_dropout", "gru_backward", "gru_forward", "lstm_backward",
                                    "lstm_forward", "rnn_backward", "rnn_forward"]
    for name in ENTRY_POINTS:
        assert len(inspect.getdoc(getattr(contract.KernelBackend, name))) > 80, name


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_each_backend_defines_each_entry_point_with_the_contract_parameters(name):
    expected = list(inspect.signature(getattr(contract.KernelBackend, name)).parameters)[1:]  # without self
    for module in backend_modules():
        assert list(inspect.signature(getattr(module, name)).parameters) == expected, (module.__name__, name)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_each_backend_returns_the_contract_cache_record(cell):
    import numpy as np
    record = {"rnn": contract.RNNCache, "lstm": contract.LSTMCache, "gru": contract.GRUCache}[cell]
    steps, batch, hidden = 3, 2, 4
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * hidden
    rng = np.random.default_rng(0)
    projected = rng.standard_normal((steps, batch, gates))
    h0, weight_hh = rng.standard_normal((batch, hidden)), rng.standard_normal((gates, hidden))
    for module in backend_modules():
        if cell == "rnn":
            result = module.rnn_forward(projected, h0, weight_hh, None, False, "tanh")
        elif cell == "lstm":
            result = module.lstm_forward(projected, h0, np.zeros_like(h0), weight_hh, None, None, False)
        else:
            result = module.gru_forward(projected, h0, weight_hh, None, None, False)
        cache = result[-1]
        assert type(cache) is record, (module.__name__, type(cache))
        assert cache.h0 is h0 and cache.mask is None and cache.reverse is False
