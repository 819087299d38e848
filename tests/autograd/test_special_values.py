"""The sweep of issue 15: every op of the op table, in float16, float32 and float64, on inputs drawn from the
special values (0, -0, ±inf, NaN, subnormals, the largest finite value, ±1, small normals) and on shapes
with a zero dimension, against PyTorch: the same NaN positions, the same infinities with the same sign,
finite values within the dtype's tolerance, for the forward value and for every input's gradient. Then the
issue's examples with their exact right values, the kinks and ties one by one, empty tensors, float16
accumulations, and `Value` against the Tensor engine over the same special values.

Where chainrule differs from PyTorch, a comment marked DIFFERENCE says so and why; the sweep masks nothing
else. One more, not a number: the Tensor engine lets NumPy's RuntimeWarnings ("divide by zero encountered")
through where PyTorch is silent (silencing them costs an errstate switch per op on the hot path); `Value`
silences them (test_value_never_raises_at_special_points).
"""
import math
from dataclasses import replace
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import chainrule as cr
from chainrule import Value
from op_table import AXIS, BINARY, MATMUL, UNARY

try:
    import torch
except ImportError:  # the comparisons with PyTorch are skipped; the tests of fixed values still run
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is a test-only oracle: pip install torch==2.13.0")

DTYPES = ["float16", "float32", "float64"]
TOLERANCE = {"float16": (1e-2, 1e-3), "float32": (1e-5, 1e-6), "float64": (1e-10, 1e-12)}  # rtol, atol


def special_values(dtype: str) -> np.ndarray:
    info = np.finfo(dtype)
    return np.array([0.0, -0.0, np.inf, -np.inf, np.nan, info.smallest_subnormal, -info.smallest_subnormal * 3,
                     info.max, -info.max, 1.0, -1.0, 0.5, -2.0, 3.0], dtype=dtype)


def specials(shape, dtype: str, values=None):
    """Hypothesis: an array of `shape` whose every element is one of the special values (picked by a
    drawn seed: drawing each element through Hypothesis costs more than the comparison itself)."""
    values = special_values(dtype) if values is None else values
    return st.integers(0, 2**32 - 1).map(lambda seed: np.random.default_rng(seed).choice(values, shape))


def assert_same(ours: np.ndarray, theirs: np.ndarray, dtype: str, what: str) -> None:
    """Same shape and dtype, NaN where PyTorch has NaN, ±inf where it has ±inf, finite values close."""
    rtol, atol = TOLERANCE[dtype]
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, PyTorch {theirs.shape}"
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype}, PyTorch {theirs.dtype}"
    ours64, theirs64 = ours.astype(np.float64), theirs.astype(np.float64)
    finite = np.isfinite(theirs64)
    with np.errstate(all="ignore"):
        same = (np.array_equal(np.isnan(ours64), np.isnan(theirs64))
                and np.array_equal(ours64[np.isinf(theirs64)], theirs64[np.isinf(theirs64)])
                and bool(np.all(np.abs(ours64[finite] - theirs64[finite]) <= atol + rtol * np.abs(theirs64[finite]))))
    if same:
        return
    np.testing.assert_array_equal(np.isnan(ours64), np.isnan(theirs64), err_msg=f"{what}: NaN positions")
    np.testing.assert_array_equal(np.isposinf(ours64), np.isposinf(theirs64), err_msg=f"{what}: +inf positions")
    np.testing.assert_array_equal(np.isneginf(ours64), np.isneginf(theirs64), err_msg=f"{what}: -inf positions")
    np.testing.assert_allclose(ours64[finite], theirs64[finite], rtol=rtol, atol=atol, err_msg=what)
    raise AssertionError(f"{what}: differs from PyTorch: {ours} against {theirs}")


def upstream(shape, dtype: str) -> np.ndarray:
    """The gradient sent into the output: 1, 1.5, 2, ... (exact in float16; not constant, so the
    gradients of softmax are not zero by cancellation)."""
    return (1 + (np.arange(int(np.prod(shape))) % 3) * 0.5).reshape(shape).astype(dtype)


def run_both(op, arrays, dtype: str) -> None:
    """Forward and backward of `op` in chainrule and in PyTorch on the same inputs; compare everything."""
    ours = [cr.tensor(a, dtype=dtype, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    try:
        expected = op.theirs(*theirs)
    except (RuntimeError, IndexError):  # PyTorch refuses (an empty reduction): so must we
        with pytest.raises((IndexError, ValueError, RuntimeError)):
            op.ours(*ours)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy warns on inf/NaN; the values are checked
        out = op.ours(*ours)
        assert_same(out.data, expected.detach().numpy(), dtype, f"{op.name} forward")
        weights = upstream(expected.shape, str(expected.dtype).replace("torch.", ""))
        out.backward(weights)
    expected.backward(torch.tensor(weights))
    for i, (mine, reference) in enumerate(zip(ours, theirs)):
        reference_grad = np.zeros(arrays[i].shape, dtype) if reference.grad is None else reference.grad.numpy()
        mine_grad = np.zeros(arrays[i].shape, dtype) if mine.grad is None else mine.grad
        assert_same(mine_grad, reference_grad, dtype, f"{op.name} gradient of input {i}")


# DIFFERENCE (not chainrule's to choose): sums without the largest finite value. A sum in which two
# partial sums overflow (-max + -max = -inf) next to a +inf is NaN or inf depending on the order of
# addition: NumPy's pairwise order and PyTorch's vectorised one differ there (e.g. [-2, 3, inf, 0.5, 3,
# -max, -max, -2]: NumPy NaN, PyTorch inf), and chainrule sums with NumPy.
ORDER_DEPENDENT = {"sum", "mean"}


def values_for(op, dtype: str) -> np.ndarray:
    values = special_values(dtype)
    if op.name in ORDER_DEPENDENT:
        values = values[np.abs(values) != np.finfo(dtype).max]
    return values


any_shape = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)
shape_with_axis = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=3)


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", [replace(op, theirs=lambda x: x.max()) if op.name == "max" else
                                replace(op, theirs=lambda x: x.min()) if op.name == "min" else op for op in UNARY],
                         ids=lambda op: op.name)   # max/min of a whole tensor: torch.max()/min(), NaN selected
@given(data=st.data())
def test_unary_special_values_match_torch(op, dtype, data):
    shape = data.draw(any_shape)
    run_both(op, [data.draw(specials(shape, dtype, values_for(op, dtype)))], dtype)


def _amax_nan_selected(x, dim, keepdim=False):
    """torch.amax, except that a NaN is selected: each row reduced by torch.max() of the row, whose backward
    shares the gradient among the NaNs (amax's backward gives NaN everywhere, NaN != NaN). Issue 16b, 5."""
    moved = x.movedim(dim, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    out = torch.stack([row.max() for row in rows]) if rows.shape[0] else rows.amax(dim=-1)
    out = out.reshape(moved.shape[:-1])
    return out.unsqueeze(dim) if keepdim else out


# DIFFERENCE: max/min along an axis select a NaN (it is the result): the NaNs share the gradient, as
# torch.max()/min() of a whole tensor give, not NaN everywhere as torch.amax/amin's backward gives
AXIS_NAN_SELECTED = [replace(op, theirs=lambda x: _amax_nan_selected(x, -1)) if op.name == "max_axis" else
                     replace(op, theirs=lambda x: -_amax_nan_selected(-x, 0, keepdim=True)) if op.name == "min_axis"
                     else op for op in AXIS]


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", AXIS_NAN_SELECTED, ids=lambda op: op.name)
@given(data=st.data())
def test_axis_special_values_match_torch(op, dtype, data):
    shape = data.draw(shape_with_axis)
    run_both(op, [data.draw(specials(shape, dtype, values_for(op, dtype)))], dtype)


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", BINARY, ids=lambda op: op.name)
@given(data=st.data())
def test_binary_special_values_match_torch(op, dtype, data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=0,
                                                         max_side=3)).input_shapes
    run_both(op, [data.draw(specials(shape, dtype)) for shape in shapes], dtype)


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_matmul_special_values_and_zero_sizes_match_torch(dtype, data):
    # DIFFERENCE (not chainrule's to choose): without the largest finite value. A dot product in which a
    # product overflows (2 · max) next to a -inf is -inf with a fused multiply-add and NaN without: NumPy's
    # BLAS and PyTorch's differ there, and chainrule hands matrix products to NumPy's BLAS.
    values = special_values(dtype)
    values = values[np.abs(values) != np.finfo(dtype).max]
    n, k, m = (data.draw(st.integers(0, 3)) for _ in range(3))
    batch = data.draw(st.sampled_from([(), (2,), (0,)]))
    run_both(MATMUL, [data.draw(specials(batch + (n, k), dtype, values)),
                      data.draw(specials((k, m), dtype, values))], dtype)


def second_order(function, inputs, create_graph_grad):
    """Gradient of Σ (first-order gradients)² with respect to the inputs, or None where that has no graph."""
    firsts = create_graph_grad(function(*inputs).sum(), inputs)
    total = sum((g * g).sum() for g in firsts)
    return None if not total.requires_grad else total


@needs_torch
@pytest.mark.parametrize("op", [op for op in UNARY + AXIS + BINARY if op.second_order], ids=lambda op: op.name)
@given(data=st.data())
def test_second_order_at_special_values_matches_torch(op, data):
    """grad(create_graph=True) through every op at the special values (float64)."""
    shapes = [(2,), (2,)] if len(op.makers) == 2 else [(2, 2) if op in AXIS else (2,)]
    arrays = [data.draw(specials(shape, "float64")) for shape in shapes]
    ours = [cr.tensor(a, dtype="float64", requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        total = second_order(op.ours, ours, lambda out, xs: cr.grad(out, xs, create_graph=True))
        expected = second_order(op.theirs, theirs, lambda out, xs: torch.autograd.grad(out, xs, create_graph=True))
        if total is None or expected is None:
            # DIFFERENCE: where the first-order gradient is piecewise constant (relu, abs, clamp, ...)
            # PyTorch may still record a graph whose second derivative is 0; chainrule records none and
            # grad() of it says so. Both mean "zero"; there is no number to compare.
            return
        mine = cr.grad(total, ours, allow_unused=True)
    reference = torch.autograd.grad(expected, theirs, allow_unused=True)
    for i, (m, r) in enumerate(zip(mine, reference)):
        m = np.zeros(arrays[i].shape) if m is None else m.data
        r = np.zeros(arrays[i].shape) if r is None else r.numpy()
        assert_same(m, r, "float64", f"{op.name}: second-order gradient of input {i}")


# -- the examples, with PyTorch's values ------------------------------------------------------

def test_example_1_pow_exponent_gradient_selects_zero_log_zero():
    a = cr.tensor([0.0, 2.0, 3.0], requires_grad=True)
    b = cr.tensor([1.0, 1.0, 2.0], requires_grad=True)
    (a ** b).sum().backward()
    np.testing.assert_allclose(b.grad, [0.0, 1.3862944, 9.887511], rtol=1e-6)
    np.testing.assert_allclose(a.grad, [1.0, 1.0, 6.0])


@pytest.mark.parametrize("base, exponent, value, grad_base, grad_exponent", [
    (0.0, 0.0, 1.0, 0.0, 0.0),            # exponent 0: gradient 0 by selection
    (0.0, 1.0, 0.0, 1.0, 0.0),
    (0.0, 0.5, 0.0, math.inf, 0.0),       # b < 1: the base's gradient is inf
    (0.0, 2.0, 0.0, 0.0, 0.0),            # b > 1
    (0.0, -1.0, math.inf, -math.inf, -math.inf),
    (-2.0, 2.0, 4.0, -4.0, math.nan),     # negative base, integer exponent: ln(-2) is NaN
    (-2.0, 0.5, math.nan, math.nan, math.nan),   # negative base, non-integer exponent
    (-0.0, 1.0, -0.0, 1.0, 0.0),
    (math.inf, 0.0, 1.0, 0.0, math.inf),  # ∂/∂y = 1 · ln inf
    (math.nan, 0.0, 1.0, 0.0, math.nan),
])
@needs_torch
def test_pow_special_points_tensor_exponent(base, exponent, value, grad_base, grad_exponent):
    a = cr.tensor([base], dtype="float64", requires_grad=True)
    b = cr.tensor([exponent], dtype="float64", requires_grad=True)
    with np.errstate(all="ignore"):
        out = a ** b
        out.sum().backward()
    np.testing.assert_array_equal([out.item(), a.grad[0], b.grad[0]], [value, grad_base, grad_exponent])
    ta = torch.tensor([base], dtype=torch.float64, requires_grad=True)
    tb = torch.tensor([exponent], dtype=torch.float64, requires_grad=True)
    (ta ** tb).sum().backward()
    np.testing.assert_array_equal([value, grad_base, grad_exponent],
                                  [(ta ** tb).item(), ta.grad.item(), tb.grad.item()])


@needs_torch
@pytest.mark.parametrize("exponent", [0, 0.5, -0.5, 1, 2, 3, -1, -2, 2.5, 1.5])
def test_pow_scalar_exponent_at_zero_and_negative_zero_and_infinities(exponent):
    values = np.array([0.0, -0.0, math.inf, -math.inf, -2.0, math.nan])
    x = cr.tensor(values, dtype="float64", requires_grad=True)
    tx = torch.tensor(values, requires_grad=True)
    with np.errstate(all="ignore"):
        out = x ** exponent
        out.sum().backward()
    expected = tx ** exponent
    expected.sum().backward()
    assert_same(out.data, expected.detach().numpy(), "float64", f"x ** {exponent}")
    assert_same(x.grad, tx.grad.numpy(), "float64", f"d(x ** {exponent})/dx")
    # the sign of zero too: sqrt(-0) = -0 in PyTorch (a NaN's sign means nothing)
    number = ~np.isnan(out.data)
    np.testing.assert_array_equal(np.signbit(out.data[number]), np.signbit(expected.detach().numpy()[number]))


@needs_torch
@pytest.mark.parametrize("base", [2.0, 0.0, 1.0, -2.0])
def test_rpow(base):
    values = np.array([-1.0, 0.0, 1.0, 0.5, math.nan, -math.inf, math.inf])
    x = cr.tensor(values, dtype="float64", requires_grad=True)
    tx = torch.tensor(values, requires_grad=True)
    with np.errstate(all="ignore"):
        out = base ** x
        out.sum().backward()
    expected = base ** tx
    expected.sum().backward()
    assert_same(out.data, expected.detach().numpy(), "float64", f"{base} ** x")
    assert_same(x.grad, tx.grad.numpy(), "float64", f"d({base} ** x)/dx")


# -- kinks and ties, one by one -------------------------------------------------------------------------

def grads_of(f, *values):
    tensors = [cr.tensor(v, dtype="float64", requires_grad=True) for v in values]
    with np.errstate(all="ignore"):
        f(*tensors).sum().backward()
    return [t.grad.tolist() for t in tensors]


def test_kinks_follow_pytorch():
    assert grads_of(cr.abs, [0.0, -0.0, math.nan, -3.0]) == [[0.0, 0.0, 0.0, -1.0]]
    relu_grad = grads_of(cr.relu, [0.0, -0.0, math.nan, 2.0])[0]
    assert relu_grad[:2] == [0.0, 0.0] and relu_grad[2:] == [1.0, 1.0]  # NaN passes its gradient, as PyTorch
    # clamp: the gradient passes at the bounds (min <= x <= max), not outside, not at NaN
    assert grads_of(lambda x: x.clip(-1.0, 1.0), [-1.0, 1.0, 2.0, math.nan, -math.inf]) == [[1, 1, 0, 0, 0]]
    # maximum/minimum: ties split 0.5/0.5; where either side is NaN, both sides get the gradient
    assert grads_of(cr.maximum, [1.0, 2.0, math.nan, 3.0], [1.0, math.nan, 1.0, 0.0]) == \
        [[0.5, 1.0, 1.0, 1.0], [0.5, 1.0, 1.0, 0.0]]
    assert grads_of(cr.minimum, [1.0, 3.0], [1.0, 0.0]) == [[0.5, 0.0], [0.5, 1.0]]
    # amax/amin: ties share evenly; a NaN is the result, and the NaNs share the gradient (torch.max()/min())
    assert grads_of(lambda x: x.max(axis=1), [[2.0, 2.0, 1.0], [-math.inf, -math.inf, -math.inf]]) == \
        [[[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]]]
    assert grads_of(lambda x: x.min(), [1.0, math.nan]) == [[0.0, 1.0]]


@needs_torch
def test_where_gives_the_unselected_branch_a_zero_gradient_even_when_it_is_nan_or_inf():
    branch = cr.tensor([math.nan, math.inf, 2.0], dtype="float64", requires_grad=True)
    other = cr.tensor([1.0, 1.0, math.nan], dtype="float64", requires_grad=True)
    cr.where(np.array([False, False, True]), branch, other).sum().backward()
    assert branch.grad.tolist() == [0.0, 0.0, 1.0] and other.grad.tolist() == [1.0, 1.0, 0.0]
    # but a zero gradient sent back through log(sqrt(x)) at x <= 0 meets 0 / 0: NaN, in PyTorch as here
    # (select the input, not only the output, to keep it out: where(x > 0, x, 1).sqrt().log())
    x = cr.tensor([-1.0, 0.0, 4.0], dtype="float64", requires_grad=True)
    tx = torch.tensor([-1.0, 0.0, 4.0], dtype=torch.float64, requires_grad=True)
    with np.errstate(all="ignore"):
        cr.where(x.data > 0, x.sqrt().log(), cr.zeros(3, dtype="float64")).sum().backward()
    torch.where(tx > 0, tx.sqrt().log(), torch.zeros(3, dtype=torch.float64)).sum().backward()
    assert_same(x.grad, tx.grad.numpy(), "float64", "where through log(sqrt(x))")
    safe = cr.tensor([-1.0, 0.0, 4.0], dtype="float64", requires_grad=True)
    cr.where(safe.data > 0, cr.where(safe.data > 0, safe, 1.0).sqrt().log(), 0.0).sum().backward()
    assert safe.grad.tolist() == [0.0, 0.0, 0.125]


def test_saturated_functions_have_zero_gradient_at_infinity():
    assert grads_of(cr.tanh, [math.inf, -math.inf]) == [[0.0, 0.0]]
    assert grads_of(cr.sigmoid, [math.inf, -math.inf]) == [[0.0, 0.0]]
    assert grads_of(cr.exp, [1000.0, -math.inf]) == [[math.inf, 0.0]]
    assert grads_of(cr.log, [0.0, -0.0]) == [[math.inf, -math.inf]]


@needs_torch
def test_softmax_family_with_minus_infinity():
    rows = [[-math.inf, 0.0, 1.0], [-math.inf, -math.inf, -math.inf], [math.inf, 0.0, 1.0]]
    for name in ("softmax", "log_softmax", "logsumexp"):
        x = cr.tensor(rows, dtype="float64", requires_grad=True)
        tx = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
        with np.errstate(all="ignore"):
            out = getattr(x, name)(axis=1)
            (out * cr.tensor(upstream(out.shape, "float64"))).sum().backward()
        expected = getattr(tx, name)(dim=1)
        (expected * torch.tensor(upstream(out.shape, "float64"))).sum().backward()
        assert_same(out.data, expected.detach().numpy(), "float64", name)
        assert_same(x.grad, tx.grad.numpy(), "float64", f"gradient of {name}")
    # the first row is finite: a -inf logit gets probability 0 and gradient 0
    x = cr.tensor(rows[:1], dtype="float64", requires_grad=True)
    x.log_softmax(axis=1)[0, 2].backward()
    assert x.grad[0, 0] == 0.0


# -- empty tensors ----------------------------------------------------------------------------------------

def test_reductions_over_a_non_empty_axis_of_an_empty_tensor():
    x = cr.zeros(0, 3, dtype="float64", requires_grad=True)
    for name in ("sum", "mean", "max", "min", "logsumexp"):
        out = getattr(x, name)(axis=1)
        assert out.shape == (0,)
        out.sum().backward()
        assert x.grad.shape == (0, 3)
    assert x.softmax(axis=1).shape == (0, 3) and x.log_softmax(axis=0).shape == (0, 3)


def test_reductions_over_an_empty_axis():
    x = cr.zeros(3, 0, dtype="float64", requires_grad=True)
    assert x.sum(axis=1).tolist() == [0.0, 0.0, 0.0]
    assert np.isnan(x.mean(axis=1).data).all() and np.isnan(x.mean().item())   # PyTorch: NaN
    assert x.logsumexp(axis=1).tolist() == [-math.inf] * 3                        # log 0
    # DIFFERENCE: PyTorch raises IndexError when the empty axis is named and RuntimeError for a reduction
    # over all axes; chainrule raises IndexError, with one message, in both cases
    for name in ("max", "min"):
        with pytest.raises(IndexError, match="size 0.*no identity"):
            getattr(x, name)(axis=1)
        with pytest.raises(IndexError, match="size 0"):
            getattr(x, name)()
    (x.sum(axis=1).sum() + x.mean(axis=1).sum() * 0).backward()
    assert x.grad.shape == (3, 0)
    assert x.softmax(axis=1).shape == (3, 0)


def test_zero_size_parts_in_indexing_concatenation_stack_split_matmul():
    x = cr.ones(0, 3, dtype="float64", requires_grad=True)
    y = cr.ones(2, 3, dtype="float64", requires_grad=True)
    joined = cr.concatenate([x, y], axis=0)
    stacked = cr.stack([x, x * 2], axis=1)
    picked = y[np.array([], dtype=np.int64)]
    rows = x[np.array([], dtype=np.int64)]
    assert joined.shape == (2, 3) and stacked.shape == (0, 2, 3) and picked.shape == (0, 3)
    assert [p.shape for p in cr.split(x, 2, axis=0)] == [(0, 3)]
    (joined.sum() + stacked.sum() + picked.sum() + rows.sum()).backward()
    assert x.grad.shape == (0, 3) and y.grad.tolist() == [[1.0] * 3] * 2
    a = cr.ones(2, 0, dtype="float64", requires_grad=True)
    b = cr.ones(0, 4, dtype="float64", requires_grad=True)
    product = a @ b
    assert product.tolist() == [[0.0] * 4] * 2
    product.sum().backward()
    assert a.grad.shape == (2, 0) and b.grad.shape == (0, 4)
    batched = cr.ones(2, 3, 0, dtype="float64", requires_grad=True)
    (batched @ cr.ones(0, 4, dtype="float64")).sum().backward()
    assert batched.grad.shape == (2, 3, 0)


# -- float16: accumulations the user did not ask to be float16 ----------------------------------------------

@needs_torch
def test_float16_accumulations_do_not_overflow():
    values = np.array([60000.0, 60000.0, -60000.0], dtype=np.float16)
    tv = torch.tensor(values)
    x = cr.tensor(values)
    assert x.sum().item() == tv.sum().item() == 60000.0
    pair = np.array([60000.0, 60000.0], dtype=np.float16)
    assert cr.tensor(pair).mean().item() == torch.tensor(pair).mean().item() == 60000.0
    assert cr.tensor(pair).logsumexp().item() == torch.tensor(pair).logsumexp(0).item()
    row = cr.tensor(values.reshape(1, 3))
    column = cr.ones(3, 1, dtype="float16")
    assert (row @ column).item() == (torch.tensor(values.reshape(1, 3)) @ torch.ones(3, 1, dtype=torch.float16)).item()
    # a broadcast input's gradient is summed back in float32 too
    w = cr.tensor(np.ones(1, np.float16), requires_grad=True)
    (w * cr.tensor(values)).sum().backward()
    assert w.grad.tolist() == [60000.0]
    big = np.full(4096, 30.0, dtype=np.float16)   # sum 122880 overflows float16; the mean is 30
    many = cr.zeros(70000, dtype="float16", requires_grad=True)   # 1 / 70000: the count is not float16
    many.mean().backward()
    torch_many = torch.zeros(70000, dtype=torch.float16, requires_grad=True)
    torch_many.mean().backward()
    assert many.grad[0] == torch_many.grad[0].item() > 0
    # the same under create_graph (the graph's count was a float16 inf, and the gradient 0)
    (second,) = cr.grad(many.mean(), many, create_graph=True)
    assert second.dtype == np.float16 and second[0].item() == torch_many.grad[0].item()
    # and the sums inside softmax's and log_softmax's backward stay float32 in the graph too
    for name in ("softmax", "log_softmax"):
        x = cr.tensor(np.zeros(4096, np.float16), requires_grad=True)
        tx = torch.tensor(np.zeros(4096, np.float16), requires_grad=True)
        (g,) = cr.grad(getattr(x, name)(), x, grad_outputs=cr.tensor(big), create_graph=True)
        getattr(tx, name)(0).backward(torch.tensor(big))
        assert_same(g.data, tx.grad.numpy(), "float16", f"create_graph gradient of {name}")
    assert cr.tensor(big).mean().item() == torch.tensor(big).mean().item() == 30.0
    assert_same(cr.tensor(big).softmax().data, torch.tensor(big).softmax(0).numpy(), "float16", "softmax")
    # the sums inside the backward of softmax and log_softmax (Σ g = 122880 here) are float32 too
    for name in ("softmax", "log_softmax"):
        x = cr.tensor(np.zeros(4096, np.float16), requires_grad=True)
        tx = torch.tensor(np.zeros(4096, np.float16), requires_grad=True)
        getattr(x, name)().backward(big)
        getattr(tx, name)(0).backward(torch.tensor(big))
        assert_same(x.grad, tx.grad.numpy(), "float16", f"gradient of {name}")


# -- Value against the Tensor engine ----------------------------------------------------------------------

VALUE_UNARY = {
    "neg": (lambda v: -v, lambda t: -t),
    "exp": (lambda v: v.exp(), lambda t: t.exp()),
    "log": (lambda v: v.log(), lambda t: t.log()),
    "tanh": (lambda v: v.tanh(), lambda t: t.tanh()),
    "sigmoid": (lambda v: v.sigmoid(), lambda t: t.sigmoid()),
    "relu": (lambda v: v.relu(), lambda t: t.relu()),
    "sqrt": (lambda v: v ** 0.5, lambda t: t ** 0.5),
    "rsqrt": (lambda v: v ** -0.5, lambda t: t ** -0.5),
    "square": (lambda v: v ** 2, lambda t: t ** 2),
    "pow_zero": (lambda v: v ** 0, lambda t: t ** 0),
    "pow_2.5": (lambda v: v ** 2.5, lambda t: t ** 2.5),
    "rpow": (lambda v: 2.0 ** v, lambda t: 2.0 ** t),
    "rpow_zero_base": (lambda v: 0.0 ** v, lambda t: 0.0 ** t),
    "radd": (lambda v: 1.5 + v, lambda t: 1.5 + t),
    "rsub": (lambda v: 1.0 - v, lambda t: 1.0 - t),
    "rmul": (lambda v: 3.0 * v, lambda t: 3.0 * t),
    "rdiv": (lambda v: 1.0 / v, lambda t: 1.0 / t),
}
VALUE_BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** b,
}
SCALARS = st.sampled_from(special_values("float64").tolist())


def same_number(ours: float, theirs: float) -> bool:
    if math.isnan(theirs):
        return math.isnan(ours)
    return ours == theirs or (math.isfinite(theirs) and math.isclose(ours, theirs, rel_tol=1e-12, abs_tol=1e-300))


@pytest.mark.parametrize("name", VALUE_UNARY)
@given(x=SCALARS)
def test_value_unary_ops_agree_with_the_tensor_engine(name, x):
    on_value, on_tensor = VALUE_UNARY[name]
    v = Value(x)
    out = on_value(v)
    out.backward()
    t = cr.tensor(x, dtype="float64", requires_grad=True)
    with np.errstate(all="ignore"):
        expected = on_tensor(t)
        expected.backward()
    assert same_number(out.data, expected.item()), (out.data, expected.item())
    assert same_number(v.grad, float(t.grad)), (v.grad, float(t.grad))


@pytest.mark.parametrize("name", VALUE_BINARY)
@given(x=SCALARS, y=SCALARS)
def test_value_binary_ops_agree_with_the_tensor_engine(name, x, y):
    a, b = Value(x), Value(y)
    out = VALUE_BINARY[name](a, b)
    out.backward()
    ta = cr.tensor(x, dtype="float64", requires_grad=True)
    tb = cr.tensor(y, dtype="float64", requires_grad=True)
    with np.errstate(all="ignore"):
        expected = VALUE_BINARY[name](ta, tb)
        expected.backward()
    assert same_number(out.data, expected.item())
    assert same_number(a.grad, float(ta.grad)), (a.grad, float(ta.grad))
    assert same_number(b.grad, float(tb.grad)), (b.grad, float(tb.grad))


def test_value_never_raises_at_special_points():
    values = special_values("float64").tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a NumPy RuntimeWarning
        for x in values:
            for on_value, _ in VALUE_UNARY.values():
                v = Value(x)
                on_value(v).backward()
            for y in values:
                for op in VALUE_BINARY.values():
                    op(Value(x), Value(y)).backward()


@needs_torch
@pytest.mark.parametrize("upstream", [math.inf, -math.inf, math.nan])
def test_value_selects_a_structural_zero_under_an_infinite_upstream_gradient(upstream):
    # A Value marks the edges whose local derivative is a selected 0 (relu below its kink, the base of
    # x ** 0): they pass 0 whatever the upstream gradient, as in the Tensor engine and PyTorch, where
    # inf · 0 would give NaN. The exponent's gradient at a zero base is multiplied in PyTorch (NaN) and so
    # in both engines.
    cases = [(-1.0, None, lambda a, b: a.relu()), (0.0, None, lambda a, b: a.relu()),
             (2.0, 0.0, lambda a, b: a ** b), (0.0, 1.0, lambda a, b: a ** b), (-3.0, 0.0, lambda a, b: a ** b),
             (2.0, None, lambda a, b: a ** 0)]
    for x, y, op in cases:
        leaves = [Value(x)] + ([Value(y)] if y is not None else [])
        (op(*leaves, *([None] if y is None else [])) * upstream).backward()
        tensors = [cr.tensor(v, dtype="float64", requires_grad=True) for v in ([x] if y is None else [x, y])]
        (op(*tensors, *([None] if y is None else [])) * upstream).backward()
        theirs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in ([x] if y is None else [x, y])]
        (op(*theirs, *([None] if y is None else [])) * upstream).backward()
        for leaf, tensor, reference in zip(leaves, tensors, theirs):
            expected = reference.grad.item()
            for got in (leaf.grad, float(tensor.grad)):
                assert (math.isnan(got) and math.isnan(expected)) or got == expected, (x, y, got, expected)
    relu_leaf = Value(-1.0)
    (relu_leaf.relu() * Value(math.inf)).backward()
    power_leaf = Value(2.0)
    ((power_leaf ** 0) * Value(math.inf)).backward()
    assert relu_leaf.grad == power_leaf.grad == 0.0   # the examples (PyTorch: 0)


@needs_torch
@pytest.mark.parametrize("create_graph", [False, True])
def test_grad_of_an_input_listed_twice_is_given_at_both_places(create_graph):
    # PyTorch: (tensor([2., 4.]), tensor([2., 4.])); chainrule said "inputs[0] was not used"
    x = cr.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    unused = cr.tensor([3.0], dtype="float64", requires_grad=True)
    tx = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    expected = [g.numpy() for g in torch.autograd.grad((tx * tx).sum(), [tx, tx])]
    first, second = cr.grad((x * x).sum(), [x, x], create_graph=create_graph)
    np.testing.assert_array_equal(first.numpy(), expected[0])
    np.testing.assert_array_equal(second.numpy(), expected[1])
    got = cr.grad((x * x).sum(), [x, unused, x], allow_unused=True, create_graph=create_graph)
    assert got[1] is None
    np.testing.assert_array_equal(got[0].numpy(), [2.0, 4.0])
    np.testing.assert_array_equal(got[2].numpy(), [2.0, 4.0])
    if create_graph:   # each copy is differentiable again: d/dx Σ (2x) = 2
        (again,) = cr.grad(second.sum(), x)
        np.testing.assert_array_equal(again.numpy(), [2.0, 2.0])


@needs_torch
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_pow_with_a_tensor_exponent_of_one_half_follows_pow_not_sqrt(dtype):
    # PyTorch takes sqrt's convention only for a Python-number exponent 0.5 (pow(Tensor, Scalar)); a Tensor
    # exponent, even 0-d, follows pow: (-0) ** 0.5 = +0 with gradient inf, (-inf) ** 0.5 = inf with gradient 0.
    # NumPy takes any scalar exponent 0.5 as sqrt, so float32 and float64 disagreed with float16
    values = np.array([-0.0, -np.inf, 0.0, 4.0, np.nan, -1.0], dtype)
    for exponent_shape in [(), (1,)]:
        base = cr.tensor(values, requires_grad=True)
        exponent = cr.tensor(np.full(exponent_shape, 0.5, dtype), requires_grad=True)
        out = base ** exponent
        out.sum().backward()
        tb = torch.tensor(values, requires_grad=True)
        te = torch.tensor(np.full(exponent_shape, 0.5, dtype), requires_grad=True)
        tout = tb ** te
        tout.sum().backward()
        assert_same(out.data, tout.detach().numpy(), dtype, "value")
        assert np.array_equal(np.signbit(out.data), np.signbit(tout.detach().numpy()))   # +0, not -0
        assert_same(base.grad, tb.grad.numpy(), dtype, "gradient of the base")
        np.testing.assert_array_equal(out.data[:2].astype(np.float64), [0.0, np.inf])
        np.testing.assert_array_equal(base.grad[:2].astype(np.float64), [np.inf, 0.0])
    # a Python-number exponent keeps sqrt's convention (float32, float64), as pow(Tensor, Scalar)
    base = cr.tensor(values, requires_grad=True)
    (base ** 0.5).sum().backward()
    tb = torch.tensor(values, requires_grad=True)
    (tb ** 0.5).sum().backward()
    assert_same(base.grad, tb.grad.numpy(), dtype, "gradient of the base, Python exponent")


def test_value_pow_with_a_value_exponent_follows_pow_as_the_tensor_engine():
    for x, value, grad in [(-0.0, 0.0, math.inf), (-math.inf, math.inf, 0.0), (4.0, 2.0, 0.25)]:
        base, exponent = Value(x), Value(0.5)
        out = base ** exponent
        out.backward()
        assert out.data == value and math.copysign(1.0, out.data) == 1.0 and base.grad == grad
        t = cr.tensor(x, dtype="float64", requires_grad=True)
        (t ** cr.tensor(0.5, dtype="float64")).backward()
        assert float(t.grad) == base.grad
    number = Value(-0.0)
    (number ** 0.5).backward()   # a number exponent: sqrt's convention, as pow(Tensor, Scalar)
    assert number.grad == -math.inf


REDUCTIONS_WITH_KEEPDIM = ["sum", "mean", "max", "min", "logsumexp"]


@needs_torch
@pytest.mark.parametrize("name", REDUCTIONS_WITH_KEEPDIM + ["softmax", "log_softmax"])
def test_axis_and_dim_given_together_are_refused_as_by_torch(name):
    x, tx = cr.ones(2, 3), torch.ones(2, 3)
    with pytest.raises(TypeError):
        getattr(tx, name)(axis=0, dim=1)   # PyTorch refuses the pair
    with pytest.raises(TypeError, match="both axis=0 and dim=1"):
        getattr(x, name)(axis=0, dim=1)
    with pytest.raises(TypeError, match="both axis=0 and dim=1"):
        getattr(cr, name)(x, axis=0, dim=1)
    with pytest.raises(TypeError, match="both axis=0 and dim=0"):   # even when they agree
        getattr(x, name)(axis=0, dim=0)
    if name in REDUCTIONS_WITH_KEEPDIM:
        with pytest.raises(TypeError, match="both keepdims=False and keepdim=True"):
            getattr(x, name)(1, keepdims=False, keepdim=True)
        assert getattr(x, name)(dim=1, keepdim=True).shape == getattr(x, name)(axis=1, keepdims=True).shape == (2, 1)
    expected = getattr(torch, {"max": "amax", "min": "amin"}.get(name, name))(tx, 0).shape
    assert getattr(x, name)(dim=0).shape == getattr(x, name)(axis=0).shape == tuple(expected)


def test_axis_and_dim_given_together_are_refused_by_the_joins():
    a, b = cr.ones(2, 3), cr.ones(2, 3)
    for call in (lambda: cr.concatenate([a, b], axis=0, dim=1), lambda: cr.stack([a, b], axis=0, dim=1),
                 lambda: cr.split(a, 1, axis=0, dim=1), lambda: a.split(1, axis=0, dim=1)):
        with pytest.raises(TypeError, match="both axis=0 and dim=1"):
            call()
    assert cr.concatenate([a, b], dim=1).shape == (2, 6) and cr.concatenate([a, b]).shape == (4, 3)
    assert cr.stack([a, b], dim=1).shape == (2, 2, 3) and cr.stack([a, b]).shape == (2, 2, 3)
    assert [p.shape for p in a.split(1, dim=1)] == [(2, 1)] * 3 and len(cr.split(a, 1)) == 2
    assert cr.softmax(a).shape == a.log_softmax().shape == (2, 3)


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_and_clamp_keep_negative_zero_as_torch(dtype):
    values = np.array([-0.0, 0.0, np.nan, -1.0, 2.0], dtype)
    t = torch.tensor(values)
    for ours, theirs in [(cr.relu(cr.tensor(values)), torch.relu(t)),
                         (cr.clip(cr.tensor(values), 0), torch.clamp(t, min=0)),
                         (cr.clip(cr.tensor(values), -0.5, 0), torch.clamp(t, -0.5, 0)),
                         (cr.clip(cr.tensor(values), max=-0.0), torch.clamp(t, max=-0.0))]:
        assert_same(ours.data, theirs.numpy(), dtype, "value")
        assert np.array_equal(np.signbit(ours.data), np.signbit(theirs.numpy()))
    assert np.signbit(cr.relu(cr.tensor(values)).data[0])   # relu(-0) = -0
    assert math.copysign(1.0, Value(-0.0).relu().data) == -1.0   # Value as the Tensor engine


@needs_torch
@pytest.mark.parametrize("implementation", ["fused", "reference"])
def test_relu_rnn_keeps_negative_zero_as_torch(implementation):
    rnn = cr.nn.RNN(1, 1, nonlinearity="relu", bias=False, implementation=implementation).to("float64")
    rnn.weight_ih_l0.data[...] = 1.0
    rnn.weight_hh_l0.data[...] = 0.0
    out, _ = rnn(cr.tensor(np.array([[[-0.0]]])))
    theirs = torch.nn.RNN(1, 1, nonlinearity="relu", bias=False, batch_first=True).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in rnn.state_dict().items()})
    expected = theirs(torch.tensor([[[-0.0]]], dtype=torch.float64))[0].detach().numpy()
    assert np.array_equal(np.signbit(out.data), np.signbit(expected))


@pytest.mark.parametrize("row", [[1.0, math.nan, 3.0, 2.0], [1.0, math.nan, 3.0, math.nan], [1.0, 4.0, 3.0, 4.0]])
@pytest.mark.parametrize("which", ["max", "min"])
def test_max_and_min_over_nan_send_the_gradient_to_the_nans(row, which):
    """Issue 16b, 5: a NaN is the max (and the min); the NaNs share the gradient, as torch.max()/min() (full
    reduction) give, and as torch.max(dim) gives with one NaN. Deliberately not torch.amax's backward, which
    is NaN everywhere (NaN != NaN): chainrule's max is amax for ties of numbers, and a NaN is selected."""
    torch = pytest.importorskip("torch")
    data = np.array([row, [1.0, 2.0, math.nan, 2.0]], np.float32)
    x = cr.tensor(data, requires_grad=True)
    getattr(cr, which)(x).backward()
    reference = torch.tensor(data, requires_grad=True)
    getattr(reference, which)().backward()
    np.testing.assert_allclose(x.grad, reference.grad.numpy(), rtol=1e-6)
    along = cr.tensor(data[:1], requires_grad=True)
    getattr(cr, which)(along, axis=1).sum().backward()
    reference = torch.tensor(data[:1], requires_grad=True)
    getattr(reference, which)().backward()   # one row: the full reduction of that row
    np.testing.assert_allclose(along.grad, reference.grad.numpy(), rtol=1e-6)
    if sum(math.isnan(v) for v in row) <= 1:   # one NaN (or none, no ties) per row: torch.max(dim)'s one-hot
        per_row = cr.tensor(data, requires_grad=True)
        getattr(cr, which)(per_row, axis=1).sum().backward()
        reference = torch.tensor(data, requires_grad=True)
        getattr(reference, which)(dim=1).values.sum().backward()
        if not np.array_equal(data[0], [1.0, 4.0, 3.0, 4.0]):
            np.testing.assert_allclose(per_row.grad, reference.grad.numpy(), rtol=1e-6)
