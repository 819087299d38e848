"""Optimizers and schedulers: step for step against PyTorch, exact resume from state_dict."""
import numpy as np
import pytest

import chainrule as cr
from chainrule import optim

OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.3)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.2)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.8, centered=True, weight_decay=0.05)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, betas=(0.8, 0.99), amsgrad=True)),
]


def gradients(rng, steps, shapes):
    return [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(steps)]


@pytest.mark.usefixtures("kernel_backend")
@pytest.mark.parametrize("name, options", OPTIMIZERS, ids=lambda v: str(v))
def test_steps_match_torch(name, options):
    torch = pytest.importorskip("torch", reason="PyTorch is a test-only oracle")
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (4,)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = [cr.tensor(v, requires_grad=True) for v in start]
    theirs = [torch.tensor(v, requires_grad=True) for v in start]
    opt = getattr(optim, name)(ours, **options)
    reference = getattr(torch.optim, name)(theirs, **options, foreach=False)
    for grads in gradients(rng, 25, shapes):
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = g.copy(), torch.tensor(g)
        opt.step()
        reference.step()
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.usefixtures("kernel_backend")
@pytest.mark.parametrize("name, options", OPTIMIZERS, ids=lambda v: str(v))
def test_resume_from_state_dict_is_exact(name, options):
    rng = np.random.default_rng(1)
    shapes = [(2, 3), (3,)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    schedule = gradients(rng, 10, shapes)

    def train(params, opt, grads_list):
        for grads in grads_list:
            for p, g in zip(params, grads):
                p.grad = g.copy()
            opt.step()

    straight = [cr.tensor(v, requires_grad=True) for v in start]
    train(straight, getattr(optim, name)(straight, **options), schedule)

    first = [cr.tensor(v, requires_grad=True) for v in start]
    opt = getattr(optim, name)(first, **options)
    train(first, opt, schedule[:5])
    saved = opt.state_dict()
    resumed = [cr.tensor(p.data.copy(), requires_grad=True) for p in first]
    opt2 = getattr(optim, name)(resumed, **options)
    opt2.load_state_dict(saved)
    train(resumed, opt2, schedule[5:])
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_param_groups_and_errors():
    a, b = cr.ones(2, requires_grad=True), cr.ones(2, requires_grad=True)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    a.grad = b.grad = np.ones(2, np.float32)
    opt.step()
    np.testing.assert_allclose(a.data, 0.9)
    np.testing.assert_allclose(b.data, 0.0)
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    with pytest.raises(ValueError, match="lr"):
        optim.Adam([a], lr=-1)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(a)
    with pytest.raises(ValueError, match="does not require grad"):
        optim.SGD([cr.ones(2)])
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([a], nesterov=True)
    with pytest.raises(ValueError, match="parameter groups"):
        optim.SGD([a]).load_state_dict({"state": {}, "param_groups": []})


@pytest.mark.parametrize("make, torch_make", [
    (lambda o: optim.StepLR(o, step_size=3, gamma=0.5), lambda o, t: t.optim.lr_scheduler.StepLR(o, 3, 0.5)),
    (lambda o: optim.ExponentialLR(o, gamma=0.9), lambda o, t: t.optim.lr_scheduler.ExponentialLR(o, 0.9)),
    (lambda o: optim.CosineAnnealingLR(o, T_max=10, eta_min=0.01),
     lambda o, t: t.optim.lr_scheduler.CosineAnnealingLR(o, 10, 0.01)),
])
def test_schedulers_match_torch(make, torch_make):
    torch = pytest.importorskip("torch", reason="PyTorch is a test-only oracle")
    ours = optim.SGD([cr.ones(1, requires_grad=True)], lr=0.5)
    theirs = torch.optim.SGD([torch.ones(1, requires_grad=True)], lr=0.5)
    schedule, reference = make(ours), torch_make(theirs, torch)
    for _ in range(12):
        assert schedule.get_last_lr()[0] == pytest.approx(reference.get_last_lr()[0], rel=1e-9)
        ours.step(), theirs.step()
        schedule.step()
        reference.step()
    state = schedule.state_dict()
    fresh = make(optim.SGD([cr.ones(1, requires_grad=True)], lr=0.5))
    fresh.load_state_dict(state)
    assert fresh.get_last_lr() == schedule.get_last_lr()
