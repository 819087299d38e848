"""Optimizers and gradient clipping at the edges, against PyTorch: parameters given twice, options out of
range, float16 parameters and gradients, zero-size parameters (issue 15)."""
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim

torch = pytest.importorskip("torch", reason="PyTorch is a test-only oracle")

OPTIMIZERS = [("SGD", dict(lr=0.1)), ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)), ("Adam", {}),
              ("Adam", dict(amsgrad=True, weight_decay=0.1)), ("AdamW", {}), ("RMSprop", dict(centered=True)),
              ("Adagrad", {})]


@pytest.mark.parametrize("name, options", OPTIMIZERS)
def test_issue_example_4_parameter_given_twice_is_taken_once_with_a_warning(name, options):
    w, single = cr.ones(2, requires_grad=True), cr.ones(2, requires_grad=True)
    with pytest.warns(UserWarning, match="more than once"):
        twice = getattr(optim, name)([w, w], **options)
    once = getattr(optim, name)([single], **options)
    reference = torch.ones(2, requires_grad=True)
    torch_once = getattr(torch.optim, name)([reference], **options)
    for step in range(3):
        w.grad = single.grad = np.array([1.0, -2.0 + step], np.float32)
        reference.grad = torch.tensor(w.grad)
        twice.step(), once.step(), torch_once.step()
    np.testing.assert_array_equal(w.data, single.data)
    np.testing.assert_allclose(w.data, reference.detach().numpy(), rtol=1e-6)
    assert len(twice.param_groups[0]["params"]) == 1


def test_issue_example_4_sgd_value_and_torchs_double_update():
    w = cr.ones(2, requires_grad=True)
    with pytest.warns(UserWarning, match="once per step"):
        opt = optim.SGD([w, w], lr=0.1)
    w.grad = np.ones(2, np.float32)
    opt.step()
    np.testing.assert_allclose(w.data, 0.9)
    # Deliberate difference: PyTorch warns ("duplicate parameters") and then updates w twice, to 0.8
    t = torch.ones(2, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_opt = torch.optim.SGD([t, t], lr=0.1)
    t.grad = torch.ones(2)
    torch_opt.step()
    np.testing.assert_allclose(t.detach().numpy(), 0.8)


def test_parameter_in_two_groups_and_other_bad_params():
    w, v = cr.ones(2, requires_grad=True), cr.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        optim.SGD([{"params": [w]}, {"params": [w, v]}], lr=0.1)
    opt = optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [w]})
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam(p for p in [])
    with pytest.raises(TypeError, match="mixes Tensors and dicts"):
        optim.SGD([{"params": [w]}, v], lr=0.1)
    with pytest.raises(TypeError, match="mixes Tensors and dicts"):
        optim.SGD([w, {"params": [v]}], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([w * 2], lr=0.1)
    with pytest.raises(TypeError, match="wrap it in a list"):
        optim.SGD({"params": [w]}, lr=0.1)


def test_a_generator_of_parameters_is_read_once_and_kept():
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.5)
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in model.parameters()]
    before = model.weight.data.copy()
    model.weight.grad, model.bias.grad = np.ones((2, 3), np.float32), np.ones(2, np.float32)
    opt.step()
    np.testing.assert_allclose(model.weight.data, before - 0.5)


# (optimizer, options, does PyTorch refuse them too?)
BAD_OPTIONS = [
    ("SGD", dict(lr=-0.1), True), ("Adam", dict(lr=float("nan")), True), ("SGD", dict(momentum=-1), True),
    ("SGD", dict(weight_decay=-1), True), ("SGD", dict(momentum=0.9, dampening=0.1, nesterov=True), True),
    ("SGD", dict(nesterov=True), True), ("Adam", dict(eps=-1), True), ("Adam", dict(betas=(1.0, 0.9)), True),
    ("Adam", dict(betas=(0.9, -0.1)), True), ("Adam", dict(weight_decay=-1), True),
    ("AdamW", dict(weight_decay=-1), True), ("RMSprop", dict(alpha=-0.1), True),
    ("RMSprop", dict(weight_decay=-1), True), ("Adagrad", dict(initial_accumulator_value=-1), True),
    ("Adagrad", dict(lr_decay=-1), True), ("Adagrad", dict(eps=-1e-10), True),
    # Deliberate differences: PyTorch takes these and then gives NaN (alpha > 1 weights g² negatively, a NaN
    # lr) or steps that flip sign or grow (dampening outside [0, 1])
    ("RMSprop", dict(alpha=1.5), False), ("SGD", dict(lr=float("nan")), False),
    ("SGD", dict(momentum=0.9, dampening=1.5), False),
    ("SGD", dict(momentum=0.9, dampening=-0.5), False),
]


@pytest.mark.parametrize("name, options, torch_refuses", BAD_OPTIONS)
def test_options_out_of_range_are_refused(name, options, torch_refuses):
    with pytest.raises(ValueError, match="invalid|Nesterov"):
        getattr(optim, name)([cr.ones(1, requires_grad=True)], **options)
    # the same check runs for a parameter group's own options (PyTorch does not check those)
    with pytest.raises(ValueError, match="invalid|Nesterov"):
        getattr(optim, name)([{"params": [cr.ones(1, requires_grad=True)], **options}])
    if torch_refuses:
        with pytest.raises(ValueError):
            getattr(torch.optim, name)([torch.ones(1, requires_grad=True)], **options)
    else:
        getattr(torch.optim, name)([torch.ones(1, requires_grad=True)], **options)


def test_option_without_effect_warns_and_wrong_types_are_refused():
    with pytest.warns(UserWarning, match="dampening=0.5 has no effect without momentum"):
        optim.SGD([cr.ones(1, requires_grad=True)], lr=0.1, dampening=0.5)
    with pytest.raises(TypeError, match="expected a number"):
        optim.Adam([cr.ones(1, requires_grad=True)], lr="0.1")
    with pytest.raises(ValueError, match="pair"):
        optim.Adam([cr.ones(1, requires_grad=True)], betas=(0.9,))


@pytest.mark.usefixtures("kernel_backend")
@pytest.mark.parametrize("name, options", OPTIMIZERS)
def test_float16_parameters_step_in_float32(name, options):
    """300² = 90000 overflows float16: the state is float32, and the step matches PyTorch's float32 one."""
    param = cr.ones(4, dtype="float16", requires_grad=True)
    opt = getattr(optim, name)([param], **options)
    reference = torch.ones(4, dtype=torch.float32, requires_grad=True)
    torch_opt = getattr(torch.optim, name)([reference], **options)
    for grad in (300.0, -250.0, 300.0):
        param.grad = np.full(4, grad, np.float16)
        reference.grad = torch.full((4,), grad)
        opt.step(), torch_opt.step()
        reference.data = reference.data.half().float()  # the parameter is float16: round as it is
    assert param.dtype == np.float16
    np.testing.assert_allclose(param.data, reference.detach().numpy(), rtol=2e-3, atol=2e-3)
    for value in opt.state[id(param)].values():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32 and np.isfinite(value).all()
    saved = opt.state_dict()
    again = getattr(optim, name)([param], **options)
    again.load_state_dict(saved)
    for value in again.state[id(param)].values():
        assert not isinstance(value, np.ndarray) or value.dtype == np.float32


@pytest.mark.usefixtures("kernel_backend")
def test_float16_adam_small_gradient_is_finite():
    param = cr.ones(4, dtype="float16", requires_grad=True)
    opt = optim.Adam([param])
    param.grad = np.full(4, 1e-4, np.float16)
    opt.step()
    np.testing.assert_allclose(param.data, 0.999, rtol=1e-3)
    # Deliberate difference: PyTorch keeps float16 state on CPU, where eps = 1e-8 underflows to 0 and
    # (1 - beta2) g² to 0, so this step divides by 0
    reference = torch.ones(4, dtype=torch.float16, requires_grad=True)
    torch_opt = torch.optim.Adam([reference])
    reference.grad = torch.full((4,), 1e-4, dtype=torch.float16)
    torch_opt.step()
    assert torch.isinf(reference).all()


@pytest.mark.usefixtures("kernel_backend")
@pytest.mark.parametrize("name, options", OPTIMIZERS)
def test_zero_size_parameters_step(name, options):
    empty, full = cr.ones(0, 4, requires_grad=True), cr.ones(3, requires_grad=True)
    opt = getattr(optim, name)([empty, full], **options)
    reference = torch.ones(3, requires_grad=True)
    torch_opt = getattr(torch.optim, name)([torch.ones(0, 4, requires_grad=True), reference], **options)
    for group in torch_opt.param_groups:
        group["params"][0].grad = torch.ones(0, 4)
    empty.grad, full.grad = np.ones((0, 4), np.float32), np.full(3, 0.5, np.float32)
    reference.grad = torch.full((3,), 0.5)
    opt.step(), torch_opt.step()
    assert empty.shape == (0, 4)
    np.testing.assert_allclose(full.data, reference.detach().numpy(), rtol=1e-6)


def _clip_pair(grad, max_norm, norm_type, dtype):
    ours = cr.ones(grad.shape, dtype=dtype, requires_grad=True)
    ours.grad = grad.astype(dtype)
    theirs = torch.ones(grad.shape, dtype=getattr(torch, dtype), requires_grad=True)
    theirs.grad = torch.tensor(grad.astype(dtype))
    norm = nn.utils.clip_grad_norm_([ours], max_norm, norm_type=norm_type)
    torch_norm = torch.nn.utils.clip_grad_norm_([theirs], max_norm, norm_type=norm_type)
    return ours.grad, norm, theirs.grad.numpy(), torch_norm


def test_clip_grad_norm_of_float16_gradients_does_not_overflow():
    grad = np.full(1000, 300.0)
    clipped, norm, torch_clipped, torch_norm = _clip_pair(grad, 1.0, 2.0, "float16")
    assert norm.item() == pytest.approx(torch_norm.item(), rel=1e-3)  # √1000 · 300 ≈ 9487
    assert norm.item() == pytest.approx(np.sqrt(1000) * 300, rel=1e-6)
    np.testing.assert_allclose(clipped, torch_clipped, rtol=1e-3)
    clipped, norm, torch_clipped, torch_norm = _clip_pair(grad, 1.0, "inf", "float16")
    assert norm.item() == torch_norm.item() == 300.0
    np.testing.assert_allclose(clipped, torch_clipped, rtol=1e-3)
    # Deliberate difference: the 1-norm (3e5) fits no float16; PyTorch returns it as a float16 inf and
    # computes the clip coefficient from that inf, zeroing every gradient. chainrule returns the norm in
    # float32 (at least) and scales by it.
    clipped, norm, torch_clipped, torch_norm = _clip_pair(grad, 1.0, 1.0, "float16")
    assert np.isinf(torch_norm.item()) and torch_norm.dtype == torch.float16
    np.testing.assert_array_equal(torch_clipped, 0.0)
    assert norm.dtype == np.float32 and norm.item() == 300000.0
    np.testing.assert_allclose(clipped, 1.0 / 1000, rtol=2e-3)


@pytest.mark.parametrize("grad", [[1.0, np.nan, 2.0], [1.0, np.inf, 2.0], [-np.inf, 0.5, 2.0]])
def test_clip_grad_norm_with_nan_or_inf_matches_torch(grad):
    clipped, norm, torch_clipped, torch_norm = _clip_pair(np.array(grad), 1.0, 2.0, "float32")
    np.testing.assert_array_equal(np.isnan(clipped), np.isnan(torch_clipped))
    np.testing.assert_allclose(clipped, torch_clipped, equal_nan=True)
    np.testing.assert_allclose(norm.item(), torch_norm.item(), equal_nan=True)


def test_clip_grad_norm_of_empty_gradients_and_bad_arguments():
    empty = cr.ones(0, 4, requires_grad=True)
    empty.grad = np.ones((0, 4), np.float32)
    reference = torch.ones(0, 4, requires_grad=True)
    reference.grad = torch.ones(0, 4)
    assert nn.utils.clip_grad_norm_([empty], 1.0).item() == torch.nn.utils.clip_grad_norm_([reference], 1.0).item()
    assert nn.utils.clip_grad_norm_([cr.ones(2, requires_grad=True)], 1.0).item() == 0.0  # no gradients
    # Deliberate difference: PyTorch refuses the inf-norm of nothing; |g| >= 0, so 0 is the max's identity
    assert nn.utils.clip_grad_norm_([empty], 1.0, norm_type="inf").item() == 0.0
    with pytest.raises(RuntimeError):
        torch.nn.utils.clip_grad_norm_([reference], 1.0, norm_type="inf")
    full = cr.ones(2, requires_grad=True)
    full.grad = np.ones(2, np.float32)
    for norm_type in (0, -1, "two"):
        with pytest.raises(ValueError, match="norm_type must be a positive number or inf"):
            nn.utils.clip_grad_norm_([full], 1.0, norm_type=norm_type)
    with pytest.raises(ValueError, match="max_norm must be non-negative"):
        nn.utils.clip_grad_norm_([full], float("nan"))
    with pytest.raises(ValueError, match="clip_value must be non-negative"):
        nn.utils.clip_grad_value_([full], -1.0)
    half = cr.ones(3, dtype="float16", requires_grad=True)
    half.grad = np.array([1e4, -6e4, np.inf], np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a bound beyond float16's range is capped, not cast (with a warning)
        nn.utils.clip_grad_value_([half], 1e6)
    np.testing.assert_array_equal(half.grad, np.array([1e4, -6e4, 65504], np.float16))
    # Deliberate difference: PyTorch refuses a bound that float16 cannot hold; the bound is the largest
    # float16 at most clip_value (inf still becomes finite, as a float32 gradient clipped at 1e6 would)
    reference = torch.ones(3, dtype=torch.float16, requires_grad=True)
    reference.grad = torch.tensor([1e4, -6e4, np.inf], dtype=torch.float16)
    with pytest.raises(RuntimeError, match="overflow"):
        torch.nn.utils.clip_grad_value_([reference], 1e6)


def test_scheduler_resuming_without_initial_lr_is_refused_like_torch():
    with pytest.raises(KeyError, match="initial_lr"):
        optim.StepLR(optim.SGD([cr.ones(1, requires_grad=True)], lr=0.1), step_size=2, last_epoch=3)
    with pytest.raises(KeyError, match="initial_lr"):
        torch.optim.lr_scheduler.StepLR(torch.optim.SGD([torch.ones(1, requires_grad=True)], lr=0.1),
                                        step_size=2, last_epoch=3)


def test_loaded_options_are_checked_before_anything_changes():
    w = cr.ones(2, requires_grad=True)
    opt = optim.Adam([w], lr=0.1)
    saved = opt.state_dict()
    saved["param_groups"][0]["betas"] = (0.9, 1.5)
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        opt.load_state_dict(saved)
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)


def test_schedules_warn_or_refuse_like_torch_or_stricter():
    opt = optim.SGD([cr.ones(1, requires_grad=True)], lr=0.1)
    schedule = optim.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match=r"before optimizer.step\(\)"):
        schedule.step()
    torch_schedule = torch.optim.lr_scheduler.StepLR(torch.optim.SGD([torch.ones(1, requires_grad=True)]), 2)
    with pytest.warns(UserWarning, match=r"before `optimizer.step\(\)`"):
        torch_schedule.step()
    opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schedule.step()  # warned once, and the order is right now
        in_order = optim.StepLR(opt, step_size=2)
        opt.step(), in_order.step()
    # Deliberate differences: PyTorch takes these and then schedules a negative learning rate
    for make in (lambda: optim.ExponentialLR(opt, gamma=-0.5), lambda: optim.StepLR(opt, 2, gamma=-1.0),
                 lambda: optim.CosineAnnealingLR(opt, T_max=2, eta_min=-1.0)):
        with pytest.raises(ValueError, match="gamma|eta_min"):
            make()
    with pytest.raises(ValueError, match="positive integer"):
        optim.StepLR(opt, step_size=2.5)


SCHEDULES = [
    (lambda o: optim.StepLR(o, step_size=2, gamma=0.1), lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.1)),
    (lambda o: optim.ExponentialLR(o, gamma=0.5), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.5)),
    (lambda o: optim.CosineAnnealingLR(o, T_max=3, eta_min=0.01),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 3, 0.01)),
]


@pytest.mark.parametrize("first", range(3))
@pytest.mark.parametrize("second", range(3))
def test_schedules_on_one_optimizer_chain_as_torch(first, second):
    """Each step changes the current lr by the schedule's factor (PyTorch's chainable form): ExponentialLR
    then StepLR gives [0.5, 0.025, 0.0125, 0.000625], where closed forms overwrote each other."""
    ours = optim.SGD([cr.ones(1, requires_grad=True)], lr=1.0)
    theirs = torch.optim.SGD([torch.ones(1, requires_grad=True)], lr=1.0)
    schedules = [SCHEDULES[first][0](ours), SCHEDULES[second][0](ours)]
    references = [SCHEDULES[first][1](theirs), SCHEDULES[second][1](theirs)]
    got, expected = [], []
    for _ in range(8):   # past the cosine's bottom (epoch 3), where its recursive form adds the step up
        ours.step(), theirs.step()
        for schedule, reference in zip(schedules, references):
            schedule.step(), reference.step()
        got.append(ours.param_groups[0]["lr"]), expected.append(theirs.param_groups[0]["lr"])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    if (first, second) == (1, 0):
        np.testing.assert_allclose(got[:4], [0.5, 0.025, 0.0125, 0.000625], rtol=1e-12)


@pytest.mark.parametrize("index", range(3))
def test_a_learning_rate_set_by_hand_is_carried_on_as_torch(index):
    ours = optim.SGD([cr.ones(1, requires_grad=True)], lr=1.0)
    theirs = torch.optim.SGD([torch.ones(1, requires_grad=True)], lr=1.0)
    schedule, reference = SCHEDULES[index][0](ours), SCHEDULES[index][1](theirs)
    got, expected = [], []
    for step in range(6):
        if step == 2:
            ours.param_groups[0]["lr"] = theirs.param_groups[0]["lr"] = 0.3
        ours.step(), theirs.step(), schedule.step(), reference.step()
        got.append(schedule.get_last_lr()[0]), expected.append(reference.get_last_lr()[0])
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("index", range(3))
def test_a_schedule_alone_is_exactly_its_closed_form_so_a_resume_continues_bit_for_bit(index):
    straight = optim.SGD([cr.ones(1, requires_grad=True)], lr=0.7)
    schedule = SCHEDULES[index][0](straight)
    for _ in range(9):
        straight.step(), schedule.step()
        assert straight.param_groups[0]["lr"] == schedule.lr_at(0.7, schedule.last_epoch)
    resumed_optimizer = optim.SGD([cr.ones(1, requires_grad=True)], lr=0.7)
    resumed = SCHEDULES[index][0](resumed_optimizer)
    resumed.load_state_dict(schedule.state_dict())
    for _ in range(3):
        straight.step(), schedule.step(), resumed_optimizer.step(), resumed.step()
        assert resumed.get_last_lr() == schedule.get_last_lr()


def test_step_lr_takes_a_numpy_integer_step_size():
    ours = optim.SGD([cr.ones(1, requires_grad=True)], lr=1.0)
    schedule = optim.StepLR(ours, step_size=np.int64(2), gamma=0.5)
    for _ in range(4):
        ours.step(), schedule.step()
    assert schedule.get_last_lr() == [0.25]
    with pytest.raises(ValueError, match="positive integer"):
        optim.StepLR(ours, step_size=np.bool_(True))


def test_clipping_takes_a_parameter_listed_twice_once_with_a_warning():
    """DIFFERENCE: PyTorch's clip_grad_norm_([w, w]) counts w twice in the norm (√2 · |g|) and scales it
    twice; chainrule takes it once, as its optimizers do, and warns."""
    gradient = np.array([3.0, 4.0])
    w, single = cr.ones(2, dtype="float64", requires_grad=True), cr.ones(2, dtype="float64", requires_grad=True)
    w.grad, single.grad = gradient.copy(), gradient.copy()
    with pytest.warns(UserWarning, match="listed more than once"):
        norm = nn.utils.clip_grad_norm_([w, w], 1.0)
    assert float(norm) == float(nn.utils.clip_grad_norm_([single], 1.0)) == 5.0
    np.testing.assert_array_equal(w.grad, single.grad)
    reference = torch.ones(2, dtype=torch.float64, requires_grad=True)
    reference.grad = torch.tensor(gradient)
    torch_norm = torch.nn.utils.clip_grad_norm_([reference, reference], 1.0)
    assert torch_norm.item() == pytest.approx(5.0 * np.sqrt(2))   # PyTorch's double count
    w.grad = np.array([-5.0, 0.5])
    with pytest.warns(UserWarning, match="clip_grad_value_: a parameter is listed more than once"):
        nn.utils.clip_grad_value_([w, w], 1.0)
    np.testing.assert_array_equal(w.grad, [-1.0, 0.5])


def test_a_schedule_resumed_in_its_constructor_takes_the_closed_form():
    """DIFFERENCE: a schedule built with last_epoch != -1 (or loaded with load_state_dict) sets the closed form
    lr_at(initial_lr, epoch), so a resumed run continues exactly where it stopped whatever lr the group held;
    PyTorch's StepLR and ExponentialLR chain from the group's current lr there (its state is the optimizer's)."""
    ours = optim.SGD([cr.ones(1, requires_grad=True)], lr=0.05)
    theirs = torch.optim.SGD([torch.ones(1, requires_grad=True)], lr=0.05)
    ours.param_groups[0]["initial_lr"] = theirs.param_groups[0]["initial_lr"] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schedule = optim.StepLR(ours, step_size=2, gamma=0.1, last_epoch=3)
        reference = torch.optim.lr_scheduler.StepLR(theirs, 2, 0.1, last_epoch=3)
    assert schedule.get_last_lr() == [pytest.approx(0.01)]          # 1.0 · 0.1^(4 // 2)
    assert reference.get_last_lr() == [pytest.approx(0.005)]        # 0.05 · 0.1


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name, options", OPTIMIZERS)
@pytest.mark.parametrize("grad", [[1e30, 1e20], [3e38, -3e38], [np.inf, 1.0], [np.nan, -1e25]])
def test_huge_and_special_gradients_match_torch_without_runtime_warnings(backend, name, options, grad):
    """Issue 16b, 4: centered RMSprop's square_avg - grad_avg² is inf - (a square that overflows); PyTorch's
    fused multiply-add keeps it inf, so the step is 0, not NaN."""
    from chainrule._kernels import backend as backends
    previous = backends.backend_name()
    backends.use_backend(backend)
    try:
        w = cr.tensor([1.0, 2.0], requires_grad=True)
        opt = getattr(optim, name)([w], **{"lr": 0.1, **options})
        reference = torch.tensor([1.0, 2.0], requires_grad=True)
        torch_opt = getattr(torch.optim, name)([reference], **{"lr": 0.1, **options})
        for _ in range(2):
            w.grad = np.array(grad, np.float32)
            reference.grad = torch.tensor(w.grad)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                opt.step()
            torch_opt.step()
        np.testing.assert_allclose(w.data, reference.detach().numpy(), rtol=1e-6, equal_nan=True)
    finally:
        backends.use_backend(previous)
