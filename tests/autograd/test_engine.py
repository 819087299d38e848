"""The backward pass: reuse, ordering, retain_graph, accumulation, modes, errors."""
import weakref

import numpy as np
import pytest

import chainrule as cr
from chainrule._kernels.memory import REFERENCES_COUNTED


def test_reuse_through_multiply_sums_both_paths():
    # the source book's over-counting case: b = 2a, c = b*b at a = 3 -> dc/da = 8a = 24 (book: 36)
    a = cr.tensor(3.0, requires_grad=True)
    b = a * 2
    c = b * b
    c.backward()
    assert a.grad == pytest.approx(24.0)


def test_reuse_through_add_gives_two():
    a = cr.tensor(3.0, requires_grad=True)
    b = a * 1
    (b + b).backward()
    assert a.grad == pytest.approx(2.0)
    leaf = cr.tensor(3.0, requires_grad=True)
    (leaf + leaf).backward()
    assert leaf.grad == pytest.approx(2.0)


def test_diamond_each_node_backward_runs_once():
    calls = []

    class Spy(cr.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1.0

        @staticmethod
        def backward(ctx, g):
            calls.append(1)
            return g

    a = cr.tensor(2.0, requires_grad=True)
    shared = Spy.apply(a)
    left, right = shared * 3, shared.exp()
    (left + right * left).backward()
    assert len(calls) == 1
    expected = 3 + np.exp(2.0) * 6 + np.exp(2.0) * 3
    assert a.grad == pytest.approx(expected, rel=1e-6)


def test_book_scalar_example_on_tensors():
    a = cr.tensor(3.0, dtype="float64", requires_grad=True)
    b = a * 4
    c = b + 3
    d = c * (a + 2)
    d.backward()
    assert d.item() == 75.0
    assert a.grad == pytest.approx(35.0)


def test_seed_article_f_equals_z_times_x_plus_y():
    x, y, z = (cr.tensor(v, dtype="float64", requires_grad=True) for v in (-2.0, 5.0, -4.0))
    q = x + y  # the add node distributes
    f = q * z  # the multiply node swaps
    f.backward()
    assert f.item() == -12.0
    assert (x.grad, y.grad, z.grad) == (-4.0, -4.0, 3.0)


def test_softmax_nll_gradient_is_s_minus_one_at_target(rng):
    logits = cr.tensor(rng.standard_normal(5), dtype="float64", requires_grad=True)
    target = 3
    loss = -cr.log_softmax(logits)[target]
    loss.backward()
    expected = np.exp(logits.data) / np.exp(logits.data).sum()
    expected[target] -= 1.0
    np.testing.assert_allclose(logits.grad, expected, rtol=1e-12)


def test_chain_of_100000_ops_has_no_recursion_error():
    x = cr.tensor([0.5], dtype="float64", requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.00001
    y.sum().backward()
    assert x.grad[0] == pytest.approx(1.00001 ** 100_000, rel=1e-9)


def test_leaf_gradients_accumulate_until_zeroed():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, 6.0])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


class _Doubling(cr.Function):
    """y = 2x whose backward can keep the gradient array it returns (to test leaf-gradient ownership)."""
    made: list = []
    keep = False

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        out = grad * 2
        _Doubling.made.append(out if _Doubling.keep else weakref.ref(out))
        return out


@pytest.mark.skipif(not REFERENCES_COUNTED, reason="reference counts are not exact on this Python")
def test_a_fresh_gradient_becomes_the_leaf_grad_without_a_copy():
    _Doubling.made, _Doubling.keep = [], False
    x = cr.tensor(np.ones(3), requires_grad=True)
    _Doubling.apply(x).sum().backward()
    assert x.grad is _Doubling.made[0]()


def test_a_gradient_held_elsewhere_is_copied_into_the_leaf():
    _Doubling.made, _Doubling.keep = [], True
    x = cr.tensor(np.ones(3), requires_grad=True)
    _Doubling.apply(x).sum().backward()
    assert x.grad is not _Doubling.made[0] and not np.shares_memory(x.grad, _Doubling.made[0])
    _Doubling.made[0][:] = 99.0
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])


def test_one_gradient_sent_to_two_leaves_is_not_shared():
    a, b = cr.tensor(np.ones(3), requires_grad=True), cr.tensor(np.ones(3), requires_grad=True)
    upstream = np.array([1.0, 2.0, 3.0])
    (a + b).backward(upstream)
    assert not np.shares_memory(a.grad, b.grad) and not np.shares_memory(a.grad, upstream)
    a.grad += 10
    np.testing.assert_array_equal(b.grad, upstream)
    (a + b).backward(upstream)
    np.testing.assert_array_equal(b.grad, 2 * upstream)
    np.testing.assert_array_equal(a.grad, 2 * upstream + 10)


def test_second_backward_through_freed_graph_raises():
    x = cr.tensor([1.0], requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = cr.tensor([1.0], requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, [4 * np.e], rtol=1e-6)


def test_saved_buffers_freed_after_backward():
    x = cr.tensor([1.0], requires_grad=True)
    y = x.exp()
    y.sum().backward()
    assert y.grad_fn.saved is None


def test_backward_on_non_scalar_needs_gradient():
    x = cr.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match=r"shape \(3,\)"):
        (x * 2).backward(np.ones(4))
    (x * 2).backward(np.ones(3))
    np.testing.assert_allclose(x.grad, [2, 2, 2])


def test_backward_without_graph_says_so():
    with pytest.raises(RuntimeError, match="does not require grad"):
        cr.ones(2).sum().backward()


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(RuntimeError, match="floating-point"):
        cr.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="floating-point"):
        cr.arange(3).requires_grad_()


def test_default_dtypes_follow_pytorch():
    assert cr.tensor([1.0, 2.0]).dtype == np.float32
    assert cr.tensor(1.5).dtype == np.float32
    assert cr.tensor([1, 2]).dtype == np.int64
    assert cr.tensor(np.zeros(2)).dtype == np.float64
    assert cr.zeros(2).dtype == np.float32
    assert cr.randn(2, dtype="float64").dtype == np.float64
    x = cr.ones(2, requires_grad=True)
    (x * 2.5).sum().backward()
    assert (x * 2.5).dtype == np.float32 and x.grad.dtype == np.float32


def test_float64_everywhere():
    x = cr.randn(3, 4, dtype="float64", requires_grad=True)
    out = (x.tanh() @ cr.randn(4, 2, dtype="float64")).softmax(axis=1).log().mean()
    out.backward()
    assert out.dtype == np.float64 and x.grad.dtype == np.float64


def test_gradient_cast_back_to_input_dtype():
    x = cr.ones(2, requires_grad=True)  # float32
    y = x * np.ones(2, dtype=np.float64)  # promoted to float64
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_no_grad_and_enable_grad_as_context_and_decorator():
    x = cr.ones(2, requires_grad=True)
    with cr.no_grad():
        assert not (x * 2).requires_grad
        with cr.enable_grad():
            assert (x * 2).requires_grad
    assert cr.is_grad_enabled()

    @cr.no_grad()
    def double(t):
        return t * 2

    assert not double(x).requires_grad
    assert cr.is_grad_enabled()


def test_detach_cuts_the_graph():
    x = cr.ones(2, requires_grad=True)
    h = (x * 2).detach()
    assert not h.requires_grad and h.is_leaf
    out = (h * x).sum()
    out.backward()
    np.testing.assert_allclose(x.grad, [2.0, 2.0])


def test_retain_grad_on_intermediate():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, [6.0, 12.0])


def test_shape_mismatch_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"Add.*\(2, 3\).*\(4,\)"):
        cr.ones(2, 3) + cr.ones(4)
    with pytest.raises(ValueError, match=r"MatMul.*\(2, 3\).*\(4, 5\)"):
        cr.ones(2, 3) @ cr.ones(4, 5)


def test_unsupported_operand_type_is_named():
    with pytest.raises(TypeError, match="str"):
        cr.ones(2) + "a"
    with pytest.raises(TypeError, match="list"):
        cr.ones(2) * [1, 2]
    with pytest.raises(TypeError, match="dtype"):
        cr.tensor(["a"])


def test_detect_anomaly_names_op_and_creation_site():
    x = cr.tensor([0.0, 1.0], requires_grad=True)
    with cr.detect_anomaly():
        y = x.sqrt()  # d sqrt / dx at 0 is inf
        with pytest.raises(FloatingPointError) as info:
            y.sum().backward()
    message = str(info.value)
    assert "Sqrt" in message and "inf" in message
    assert "test_engine.py" in message and "y = x.sqrt()" in message


def test_detect_anomaly_creation_site_leaves_out_every_chainrule_frame():
    # an op created inside a layer: the site shown is the user's call, not nn's or autograd's code
    layer = cr.nn.Linear(2, 1)
    with cr.detect_anomaly():
        y = layer(cr.ones(1, 2))
    frames = y.grad_fn._creation
    assert frames and all("chainrule" not in frame.filename.split("src")[-1] for frame in frames)
    assert frames[-1].line == "y = layer(cr.ones(1, 2))"


def test_custom_function_first_and_second_order():
    class Cube(cr.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x ** 2

    x = cr.tensor(2.0, dtype="float64", requires_grad=True)
    (dy,) = cr.grad(Cube.apply(x), x, create_graph=True)
    (d2y,) = cr.grad(dy, x)
    assert dy.item() == pytest.approx(12.0) and d2y.item() == pytest.approx(12.0)
    assert cr.gradcheck(Cube.apply, (cr.randn(4, dtype="float64", requires_grad=True),))
    assert cr.gradgradcheck(Cube.apply, (cr.randn(4, dtype="float64", requires_grad=True),))


def test_grad_function_does_not_touch_leaf_grads():
    x = cr.ones(2, requires_grad=True)
    (g,) = cr.grad((x * x).sum(), x)
    np.testing.assert_allclose(g.data, [2, 2])
    assert x.grad is None


def test_grad_unused_input():
    x, y = cr.ones(2, requires_grad=True), cr.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="not used"):
        cr.grad((x * 2).sum(), [x, y])
    gx, gy = cr.grad((x * 2).sum(), [x, y], allow_unused=True)
    assert gy is None


def test_grad_with_respect_to_intermediate():
    x = cr.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    h = x * x
    loss = (h * 3 + h).sum()
    (gh,) = cr.grad(loss, h)
    np.testing.assert_allclose(gh.data, [4.0, 4.0])


def test_second_derivative_of_tanh():
    x = cr.tensor([-1.0, 0.3, 2.0], dtype="float64", requires_grad=True)
    (first,) = cr.grad(x.tanh().sum(), x, create_graph=True)
    (second,) = cr.grad(first.sum(), x)
    t = np.tanh(x.data)
    np.testing.assert_allclose(first.data, 1 - t ** 2, rtol=1e-12)
    np.testing.assert_allclose(second.data, -2 * t * (1 - t ** 2), rtol=1e-12)


def test_hessian_vector_product(rng):
    a = rng.standard_normal((4, 4))
    hessian = a + a.T
    x = cr.tensor(rng.standard_normal(4), requires_grad=True)
    v = rng.standard_normal(4)
    f = (x @ cr.tensor(a) @ x)  # xᵀAx, Hessian A + Aᵀ
    (g,) = cr.grad(f, x, create_graph=True)
    (hv,) = cr.grad((g * cr.tensor(v)).sum(), x)
    np.testing.assert_allclose(hv.data, hessian @ v, rtol=1e-10)


def test_reverse_topological_order_is_iterative_and_complete():
    parents = {i: [i - 1] if i else [] for i in range(50_000)}
    order = list(cr.reverse_topological_order([49_999], parents.__getitem__))
    assert order == list(range(49_999, -1, -1))


def test_logsumexp_and_softmax_are_stable_at_large_logits():
    x = cr.tensor([1e4, 1e4 - 1, -1e4], dtype="float64", requires_grad=True)
    lse = x.logsumexp()
    assert np.isfinite(lse.item()) and lse.item() == pytest.approx(1e4 + np.log(1 + np.e ** -1))
    lse.backward()
    assert np.all(np.isfinite(x.grad))
    assert np.all(np.isfinite(cr.softmax(x).data)) and np.all(np.isfinite(cr.log_softmax(x).data))


def test_grad_of_several_outputs_where_one_feeds_the_other():
    x = cr.tensor(2.0, dtype="float64", requires_grad=True)
    y = x * x
    z = y * 3
    gx, = cr.grad([y, z], x)  # d(y + z)/dx = 2x + 6x
    assert gx.item() == pytest.approx(16.0)
    order = list(cr.reverse_topological_order(["z", "y"], {"z": ["y", "x"], "y": ["x"], "x": []}.__getitem__))
    assert order == ["z", "y", "x"]


def test_reflected_operators_with_numpy_arrays_and_numbers():
    x = cr.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    array = np.array([3.0, 4.0])
    out = array + x, array - x, array * x, array / x, array ** x, 2 + x, 2 - x, 2 * x, 2 / x, 2 ** x
    assert all(isinstance(o, cr.Tensor) for o in out)
    np.testing.assert_allclose((array - x).data, [2.0, 2.0])
    sum(o.sum() for o in out).backward()
    expected = 1 - 1 + array - array / x.data ** 2 + array ** x.data * np.log(array) + 1 - 1 + 2 \
        - 2 / x.data ** 2 + 2 ** x.data * np.log(2)
    np.testing.assert_allclose(x.grad, expected)
    m = np.ones((3, 2))
    assert (m @ cr.ones(2, requires_grad=True)).shape == (3,)


def test_gradcheck_reports_input_and_worst_element():
    class WrongSquare(cr.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            wrong = 2 * x
            wrong[1] += 0.5  # one element off
            return g * wrong

    y = cr.tensor([1.0, 2.0, 3.0], dtype="float64", requires_grad=True)
    with pytest.raises(cr.GradcheckError, match=r"input 1 .*element \(1,\).*analytical 4\.5.*numerical 4"):
        cr.gradcheck(lambda a, b: WrongSquare.apply(b) * a, (cr.ones(3, dtype="float64"), y))
    assert cr.gradcheck(lambda b: WrongSquare.apply(b), (y,), raise_exception=False) is False
    with pytest.raises(TypeError, match="float64"):
        cr.gradcheck(cr.tanh, (cr.ones(2, requires_grad=True),))


def test_c_ordered_copy_into_out_and_its_errors():
    from chainrule._kernels.memory import c_ordered_copy
    source = np.arange(12.0, dtype=np.float32).reshape(3, 4).T     # F-ordered [4, 3]
    out = np.empty((4, 3), np.float32)
    assert c_ordered_copy(source, out=out) is out
    np.testing.assert_array_equal(out, source)
    with pytest.raises(ValueError,
                       match=r"out must be C-ordered float32 of shape \(4, 3\), got float64 of shape \(4, 3\)"):
        c_ordered_copy(source, out=np.empty((4, 3)))
    with pytest.raises(ValueError, match=r"got float32 of shape \(3, 4\)"):
        c_ordered_copy(source, out=np.empty((3, 4), np.float32))
    with pytest.raises(ValueError, match="out must be C-ordered"):
        c_ordered_copy(source, out=np.empty((3, 4), np.float32).T)
