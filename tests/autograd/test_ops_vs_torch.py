"""PyTorch as an oracle: forward values and gradients of every op on random inputs (float64)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import chainrule as cr
from op_table import AXIS, BINARY, UNARY

torch = pytest.importorskip("torch", reason="PyTorch is a test-only oracle: pip install torch==2.13.0")

seeds = st.integers(0, 2**31 - 1)


def compare(op, shapes, seed):
    rng = np.random.default_rng(seed)
    values = [maker(rng, shape) for maker, shape in zip(op.makers, shapes)]
    ours = [cr.tensor(v, dtype="float64", requires_grad=True) for v in values]
    theirs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]
    out, expected = op.ours(*ours), op.theirs(*theirs)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    weights = rng.standard_normal(expected.shape)
    (out * cr.tensor(weights)).sum().backward()
    (expected * torch.tensor(weights)).sum().backward()
    for mine, reference in zip(ours, theirs):
        np.testing.assert_allclose(mine.grad, reference.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("op", UNARY, ids=lambda op: op.name)
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4), seed=seeds)
def test_unary_matches_torch(op, shape, seed):
    compare(op, [shape], seed)


@pytest.mark.parametrize("op", AXIS, ids=lambda op: op.name)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), seed=seeds)
def test_axis_ops_match_torch(op, shape, seed):
    compare(op, [shape], seed)


@pytest.mark.parametrize("op", BINARY, ids=lambda op: op.name)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3), seed=seeds)
def test_binary_matches_torch(op, shapes, seed):
    compare(op, shapes.input_shapes, seed)


@given(batch=st.integers(1, 3), n=st.integers(1, 4), k=st.integers(1, 4), m=st.integers(1, 4), seed=seeds)
def test_batched_matmul_matches_torch(batch, n, k, m, seed):
    from op_table import Op, normal
    op = Op("matmul", cr.matmul, torch.matmul, (normal, normal))
    compare(op, [(batch, n, k), (k, m)], seed)


def test_float32_matches_torch_float32(rng):
    values = rng.standard_normal((4, 5)).astype(np.float32)
    ours = cr.tensor(values, requires_grad=True)
    theirs = torch.tensor(values, requires_grad=True)
    (ours.tanh() @ ours.T).log_softmax(axis=1).sum().backward()
    (theirs.tanh() @ theirs.T).log_softmax(dim=1).sum().backward()
    assert ours.grad.dtype == np.float32
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-5, atol=1e-5)
