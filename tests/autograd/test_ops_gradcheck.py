"""Every op gradchecked in float64 on random shapes (Hypothesis), first order and second order."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import chainrule as cr
from op_table import AXIS, BINARY, UNARY

any_shape = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
shape_with_axis = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
seeds = st.integers(0, 2**31 - 1)


def leaves(op, shapes, seed):
    rng = np.random.default_rng(seed)
    return tuple(cr.tensor(maker(rng, shape), dtype="float64", requires_grad=True)
                 for maker, shape in zip(op.makers, shapes))


@pytest.mark.parametrize("op", UNARY, ids=lambda op: op.name)
@given(shape=any_shape, seed=seeds)
def test_unary_gradcheck(op, shape, seed):
    inputs = leaves(op, [shape], seed)
    assert cr.gradcheck(op.ours, inputs)


@pytest.mark.parametrize("op", AXIS, ids=lambda op: op.name)
@given(shape=shape_with_axis, seed=seeds)
def test_axis_gradcheck(op, shape, seed):
    inputs = leaves(op, [shape], seed)
    assert cr.gradcheck(op.ours, inputs)


@pytest.mark.parametrize("op", BINARY, ids=lambda op: op.name)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       seed=seeds)
def test_binary_broadcasting_gradcheck(op, shapes, seed):
    inputs = leaves(op, shapes.input_shapes, seed)
    assert cr.gradcheck(op.ours, inputs)


@pytest.mark.parametrize("op", [op for op in UNARY + AXIS + BINARY if op.second_order], ids=lambda op: op.name)
@given(seed=seeds)
def test_second_order(op, seed):
    shapes = [(2, 3), (3,)][: len(op.makers)]
    inputs = leaves(op, shapes, seed)
    assert cr.gradgradcheck(op.ours, inputs)


matmul_shapes = st.sampled_from([
    ((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((1, 3), (3, 1)),
    ((2, 2, 3), (3, 4)), ((2, 1, 2, 3), (3, 3, 2)), ((3,), (2, 3, 2)), ((2, 4, 3), (3,)),
])


@given(shapes=matmul_shapes, seed=seeds)
def test_matmul_gradcheck(shapes, seed):
    rng = np.random.default_rng(seed)
    a, b = (cr.tensor(rng.standard_normal(s), dtype="float64", requires_grad=True) for s in shapes)
    assert cr.gradcheck(cr.matmul, (a, b))


@given(shapes=matmul_shapes, seed=seeds)
def test_matmul_second_order(shapes, seed):
    rng = np.random.default_rng(seed)
    a, b = (cr.tensor(rng.standard_normal(s), dtype="float64", requires_grad=True) for s in shapes)
    assert cr.gradgradcheck(lambda x, y: (x @ y).tanh(), (a, b))


@pytest.mark.usefixtures("kernel_backend")
@given(seed=seeds, repeats=st.lists(st.integers(0, 4), min_size=1, max_size=8))
def test_advanced_index_repeats_accumulate(seed, repeats):
    rng = np.random.default_rng(seed)
    x = cr.tensor(rng.standard_normal((5, 2)), dtype="float64", requires_grad=True)
    x[repeats].sum().backward()
    counts = np.bincount(repeats, minlength=5)[:, None] * np.ones((1, 2))
    np.testing.assert_array_equal(x.grad, counts)
    assert cr.gradcheck(lambda t: t[repeats] * t[repeats[::-1]], (x,))


@pytest.mark.usefixtures("kernel_backend")
def test_embedding_style_lookup_gradient_both_backends():
    rng = np.random.default_rng(5)
    table = cr.tensor(rng.standard_normal((7, 3)), dtype="float64", requires_grad=True)
    ids = rng.integers(-7, 7, (4, 5))  # negative indices too
    table[ids].sum().backward()
    expected = np.zeros((7, 3))
    np.add.at(expected, ids, 1.0)
    np.testing.assert_array_equal(table.grad, expected)
    assert cr.gradcheck(lambda t: t[ids] * t[ids[::-1]], (table,))


def test_boolean_mask_and_tensor_index():
    x = cr.tensor(np.arange(6.0).reshape(2, 3), dtype="float64", requires_grad=True)
    assert cr.gradcheck(lambda t: t[t.data > 1.5] * 2, (x,))
    assert cr.gradcheck(lambda t: t[cr.tensor([1, 0, 1])], (x,))
    assert cr.gradcheck(lambda t: t[:, [2, 2]], (x,))


def test_split_sections_and_unused_piece():
    x = cr.randn(6, 2, dtype="float64", requires_grad=True)
    first, second, third = x.split([1, 2, 3])
    assert (first.shape, second.shape, third.shape) == ((1, 2), (2, 2), (3, 2))
    (second * 3).sum().backward()  # the other outputs of the Split node get zero gradient
    np.testing.assert_array_equal(x.grad, np.r_[np.zeros((1, 2)), 3 * np.ones((2, 2)), np.zeros((3, 2))])
    with pytest.raises(ValueError, match="add up"):
        x.split([1, 2])


def test_max_ties_share_gradient():
    x = cr.tensor([1.0, 3.0, 3.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_allclose(x.grad, [0.0, 0.5, 0.5])


def test_zero_dimensional_edge_cases():
    x = cr.tensor(0.7, dtype="float64", requires_grad=True)
    for fn in (lambda t: t.sum(), lambda t: t.softmax(), lambda t: t.logsumexp(axis=0), lambda t: t * t,
               lambda t: t.reshape(1, 1), lambda t: t.max()):
        assert cr.gradcheck(fn, (x,))


@pytest.mark.parametrize("axes", [(1, 0, 2), (2, 0, 1, 3)], ids=["BTH-of-TBH", "4d"])
def test_matmul_takes_a_permuted_views_rows_in_memory_order(axes):
    """x [..., K] @ W for x a permuted view of a contiguous array: no copy, the result in x's layout, the
    gradients right (first and second order) and equal to those of a contiguous x."""
    rng = np.random.default_rng(4)
    base_shape = tuple(np.array([3, 5, 4, 6][:len(axes)])[np.argsort(axes)])
    base = cr.tensor(rng.standard_normal(base_shape), dtype="float64", requires_grad=True)
    weight = cr.tensor(rng.standard_normal((base_shape[axes[-1]], 2)), dtype="float64", requires_grad=True)

    def f(base, weight):
        return base.permute(axes) @ weight

    out = f(base, weight)
    assert not out.data.flags.c_contiguous
    assert out.data.transpose(np.argsort(axes)).flags.c_contiguous   # the result is laid out as x is
    contiguous = cr.tensor(np.ascontiguousarray(base.data.transpose(axes)), dtype="float64")
    np.testing.assert_allclose(out.data, (contiguous @ weight).data, rtol=1e-13)
    assert cr.gradcheck(f, (base, weight))
    assert cr.gradgradcheck(f, (base, weight))
