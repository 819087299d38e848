"""Devices on the CPU: the parser, the errors, and tensors, modules and optimizers on a stand-in "cuda" device
(`fake_cuda`: NumPy arrays of a subclass, registered where CuPy would be) giving the CPU's numbers."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim
from chainrule._kernels.device import CPU, Device, array_module, device_of, parse_device
from chainrule.nn import functional as F

from .fake_cuda import FakeCudaArray, fake_cuda

HAS_CUPY = importlib.util.find_spec("cupy") is not None


@pytest.fixture
def cuda():
    with fake_cuda() as backend:
        yield backend


@pytest.mark.parametrize("spec, expected", [("cpu", CPU), ("CPU", CPU), ("cpu:0", CPU), ("cuda", Device("cuda", 0)),
                                            ("cuda:3", Device("cuda", 3)), (Device("cuda", 1), Device("cuda", 1))])
def test_parse_device(spec, expected):
    assert parse_device(spec) == expected


@pytest.mark.parametrize("spec, error, words", [("gpu", ValueError, "expected 'cpu', 'cuda' or 'cuda:N'"),
                                                ("cuda:-1", ValueError, "unknown device"),
                                                ("cpu:1", ValueError, "the CPU has no number"),
                                                (0, TypeError, "got int")])
def test_parse_device_refuses(spec, error, words):
    with pytest.raises(error, match=words):
        parse_device(spec)


def test_import_loads_nothing_of_the_gpu():
    code = ("import sys, chainrule as cr; from chainrule import nn, optim; cr.ones(2).to('cpu'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cupy', 'cupyx') "
            "or m.startswith('numba.cuda')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(HAS_CUPY, reason="CuPy is installed here")
def test_cuda_without_cupy_says_what_to_install():
    with pytest.raises(RuntimeError, match=r"CuPy is not installed.*chainrule\[gpu\].*cupy-cuda12x"):
        cr.ones(2, device="cuda")
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        cr.ones(2).to("cuda:1")
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        nn.Linear(2, 2).to("cuda")


def test_cpu_tensor_facts():
    x = cr.ones(2)
    assert x.device == CPU and str(x.device) == "cpu" and not x.is_cuda
    assert x.to("cpu") is x and x.cpu() is x
    assert x.numpy() is x.data      # shared on the CPU


def test_to_and_back(cuda):
    x = cr.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = x.to("cuda")
    assert isinstance(y.data, FakeCudaArray) and y.device == Device("cuda", 0) and y.is_cuda
    assert str(y.device) == "cuda:0" and "device='cuda:0'" in repr(y)
    host = y.numpy()
    assert type(host) is np.ndarray and host.tolist() == [1.0, -2.0, 3.0]   # a copy from the device
    assert y.to("cuda:0") is y and y.cuda() is y
    z = y.to("cuda:1")
    assert z.device == Device("cuda", 1)
    (z * z).sum().backward()              # the gradient comes back through both copies to the CPU leaf
    assert type(x.grad) is np.ndarray and x.grad.tolist() == [2.0, -4.0, 6.0]
    assert y.cpu().device == CPU and y.to(dtype="float64").dtype == np.float64


def test_constructors_take_a_device(cuda):
    made = [cr.tensor([1.0, 2.0], device="cuda"), cr.zeros(2, device="cuda:1"), cr.ones(2, 3, device="cuda"),
            cr.full((2,), 7.0, device="cuda"), cr.arange(3, device="cuda"), cr.randn(2, device="cuda"),
            cr.rand(2, device="cuda"), cr.zeros_like(cr.ones(2, device="cuda:1")),
            cr.ones_like(cr.ones(2), device="cuda")]
    assert [str(t.device) for t in made] == ["cuda:0", "cuda:1", "cuda:0", "cuda:0", "cuda:0", "cuda:0", "cuda:0",
                                             "cuda:1", "cuda:0"]
    cr.manual_seed(3)
    on_cpu = cr.randn(4).numpy()
    cr.manual_seed(3)
    assert np.array_equal(cr.randn(4, device="cuda").numpy(), on_cpu)   # one host generator for every device
    with pytest.raises(RuntimeError, match=r"cuda:7 was asked for, but this machine has 2 CUDA GPU\(s\)"):
        cr.zeros(2, device="cuda:7")


def test_mixed_devices_name_both(cuda):
    on_gpu, on_cpu = cr.ones(3, device="cuda"), cr.ones(3)
    message = r"Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"
    for op in (lambda: on_gpu + on_cpu, lambda: on_cpu * on_gpu, lambda: cr.stack([on_gpu, on_cpu]),
               lambda: cr.ones(2, 3) @ cr.ones(3, device="cuda")):
        with pytest.raises(RuntimeError, match=message):
            op()
    with pytest.raises(RuntimeError, match="cuda:1 and cuda:0"):
        cr.ones(3, device="cuda:1") + on_gpu
    assert (on_gpu + 1.0).device == Device("cuda", 0)            # Python numbers go anywhere
    assert (on_gpu * np.float32(2)).device == Device("cuda", 0)  # and NumPy scalars


def test_array_module_is_picked_from_the_arrays(cuda):
    gpu = cr.ones(2, device="cuda").data
    assert array_module(np.ones(2), 1.0) is np and array_module(np.ones(2), gpu) is cuda.xp
    assert device_of(gpu) == Device("cuda", 0) and device_of(np.float32(1)) == CPU


def test_module_to_device_keeps_parameters_and_state_dict_is_on_the_host(cuda):
    layer = nn.Linear(3, 2)
    weight = layer.weight
    before = layer.state_dict()
    assert layer.to("cuda") is layer and layer.weight is weight          # moved in place
    assert all(p.device == Device("cuda", 0) for p in layer.parameters())
    saved = layer.state_dict()
    assert all(type(a) is np.ndarray for a in saved.values())
    assert all(np.array_equal(saved[k], before[k]) for k in before)
    other = nn.Linear(3, 2).to("cuda:1")
    other.load_state_dict(saved)                                          # host arrays into device parameters
    assert other.weight.device == Device("cuda", 1) and np.array_equal(other.weight.numpy(), before["weight"])
    layer.to("float64")
    assert layer.weight.dtype == np.float64 and layer.weight.device == Device("cuda", 0)
    assert layer.to("cpu").weight.device == CPU


def test_optimizer_state_lives_on_the_parameters_device_and_saves_to_the_host(cuda):
    layer = nn.Linear(3, 2).to("cuda")
    optimizer = optim.Adam(layer.parameters(), lr=0.1)
    layer(cr.ones(4, 3, device="cuda")).sum().backward()
    optimizer.step()
    state = optimizer.state[id(layer.weight)]
    assert isinstance(state["exp_avg"], FakeCudaArray) and isinstance(state["exp_avg_sq"], FakeCudaArray)
    saved = optimizer.state_dict()
    assert type(saved["state"][0]["exp_avg"]) is np.ndarray
    fresh = optim.Adam(nn.Linear(3, 2).to("cuda").parameters(), lr=0.1)
    fresh.load_state_dict(saved)
    restored = next(iter(fresh.state.values()))
    assert isinstance(restored["exp_avg"], FakeCudaArray)


def _train(device, steps=3):
    """A tiny character model (embedding, 2-layer LSTM with dropout, head; reference cells), Adam steps."""
    cr.manual_seed(0)
    embedding, lstm, head = nn.Embedding(7, 5), nn.LSTM(5, 6, num_layers=2, dropout=0.3,
                                                        implementation="reference"), nn.Linear(6, 7)
    parameters = [p for m in (embedding, lstm, head) for p in m.to(device).parameters()]
    optimizer = optim.Adam(parameters, lr=1e-2)
    ids = np.array([[1, 2, 3, 4], [5, 6, 0, 1]])
    losses = []
    for _ in range(steps):
        out, _ = lstm(embedding(cr.tensor(ids, device=device)), lengths=[4, 3])
        loss = F.cross_entropy(head(out).reshape(-1, 7), cr.tensor(np.roll(ids, 1, 1).reshape(-1), device=device))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        losses.append(loss.item())
    return losses, parameters


def test_training_on_the_stand_in_device_gives_the_cpu_numbers(cuda):
    # equal to float32 rounding: on the CPU the numba backend's compiled Adam step and scatter-add may round
    # differently from the NumPy formulas a device runs
    cpu_losses, cpu_parameters = _train("cpu")
    gpu_losses, gpu_parameters = _train("cuda")
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-6)
    assert all(isinstance(p.data, FakeCudaArray) and isinstance(p.grad, FakeCudaArray) for p in gpu_parameters)
    for a, b in zip(cpu_parameters, gpu_parameters):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)


def _with_grad(x):
    p = cr.ones(3, device=x.device, requires_grad=True)
    p.grad = (x * 4).detach().data
    return p


# ops whose NumPy spelling needed routing for a device (host constructors, 0-d host arrays, host index arrays)
OPS = {
    "pow_by_zero": lambda x: (x ** 0).sum(),
    "pow_tensor_half": lambda x: (x.abs() ** cr.tensor([0.5], device=x.device)).sum(),
    "pow_tensor_exponent": lambda x: (cr.full((3,), 2.0, device=x.device) ** x).sum(),
    "relu": lambda x: x.relu().sum(),
    "clip": lambda x: x.clip(-0.5, 0.5).sum(),
    "mean_of_nothing": lambda x: x[0:0].mean() + x.sum(),
    "where_host_mask": lambda x: cr.where(np.array([True, False, True]), x, x * 2).sum(),
    "index_array": lambda x: x[np.array([2, 0, 2])].sum(),
    "cross_entropy_ignore_none": lambda x: F.cross_entropy(x.reshape(1, 3) * cr.ones(2, 1, device=x.device),
                                                           np.array([1, -100]), reduction="none").sum(),
    "nll_loss": lambda x: F.nll_loss(x.reshape(1, 3).log_softmax(axis=-1), np.array([2])),
    "softmax": lambda x: (x.softmax(axis=-1) * cr.tensor([1.0, 2.0, 3.0], device=x.device)).sum(),
    "log_softmax": lambda x: x.log_softmax(axis=-1)[1],
    "logsumexp": lambda x: x.logsumexp(axis=0) + x.reshape(1, 3)[0:0].logsumexp(axis=0).sum(),
    "clip_grad_norm_inf": lambda x: x.sum() * float(nn.utils.clip_grad_norm_([_with_grad(x)], 1.0, "inf")),
    "embedding_rows": lambda x: (nn.Embedding(4, 3).to(x.device)(np.array([[1, 3, 1]])) * x).sum(),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_on_the_stand_in_device_match_the_cpu(name, cuda):
    results = []
    for device in ("cpu", "cuda"):
        cr.manual_seed(5)
        x = cr.tensor([0.3, -1.2, 2.0], device=device, requires_grad=True)
        out = OPS[name](x)
        out.backward()
        assert out.device == x.device and x.grad is not None and device_of(x.grad) == x.device
        results.append((out.numpy(), np.asarray(x.grad) if device == "cpu" else cuda.to_host(x.grad)))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-6)


def test_argmax_and_argmin_stay_on_the_device(cuda):
    x = cr.tensor([[0.5, 2.0, -1.0], [3.0, 0.0, 1.0]], device="cuda")
    assert x.argmax(axis=1).device == x.device and x.argmax(axis=1).tolist() == [1, 0]
    assert x.argmin().device == x.device and x.argmin().item() == 2


def test_to_takes_a_dtype_in_first_place_and_refuses_bad_devices(cuda):
    assert cr.ones(2).to("float64").dtype == np.float64 and cr.ones(2).to(np.float16).dtype == np.float16
    moved = cr.ones(2).to("cuda:1", "float64")
    assert moved.device == Device("cuda", 1) and moved.dtype == np.float64
    with pytest.raises(ValueError, match="unknown device 'cuda:one'"):
        cr.ones(2).to("cuda:one")
    with pytest.raises(ValueError, match="unknown device or dtype 'gpu'"):
        cr.ones(2).to("gpu")
