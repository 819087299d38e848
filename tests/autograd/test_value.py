"""The scalar engine: the book's NumberWithGrad, done right."""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chainrule import Value


def test_book_example():
    a = Value(3)
    b = a * 4
    c = b + 3
    d = c * (a + 2)
    d.backward()
    assert d.data == 75.0
    assert a.grad == 35.0
    numerical = ((3 + 1e-6) * 4 + 3) * (3 + 1e-6 + 2) - ((3 - 1e-6) * 4 + 3) * (3 - 1e-6 + 2)
    assert numerical / 2e-6 == pytest.approx(35.0, abs=1e-6)


def test_reuse_is_not_over_counted():
    a = Value(3.0)
    b = a * 2
    c = b * b
    c.backward()
    assert a.grad == 24.0  # the book's recursion gives 36
    a = Value(3.0)
    b = a * 1
    (b + b).backward()
    assert a.grad == 2.0


def test_reflected_operators_and_functions():
    x = Value(0.5)
    y = 2 - x + 3 * x / (1 + x) + 2 ** x + x ** 2
    y.backward()
    expected = -1 + 3 / (1 + 0.5) ** 2 + 2 ** 0.5 * math.log(2) + 2 * 0.5
    assert x.grad == pytest.approx(expected)


@given(st.floats(-3, 3))
def test_unary_functions_against_central_differences(v):
    for name in ("exp", "tanh", "sigmoid"):
        x = Value(v)
        getattr(x, name)().backward()
        f = lambda t: getattr(Value(t), name)().data  # noqa: E731
        assert x.grad == pytest.approx((f(v + 1e-6) - f(v - 1e-6)) / 2e-6, rel=1e-5, abs=1e-8)
    x = Value(abs(v) + 0.1)
    x.log().backward()
    assert x.grad == pytest.approx(1 / (abs(v) + 0.1))


def test_relu_and_deep_chain():
    x = Value(2.0)
    y = x
    for _ in range(50_000):
        y = y * 1.0
    y.relu().backward()
    assert x.grad == 1.0


def test_bad_operands():
    with pytest.raises(TypeError, match="str"):
        Value(1.0) + "a"
    with pytest.raises(TypeError):
        Value("a")



def test_points_outside_the_domain_give_nan_not_exceptions():
    # the book's engine raised ValueError here; Value follows the Tensor engine and PyTorch instead
    assert math.isnan(Value(-1.0).log().data)
    assert math.isnan((Value(-8.0) ** 0.5).data)
    assert Value(0.0).log().data == -math.inf
    assert (Value(1.0) / 0).data == math.inf
    assert Value(1000.0).exp().data == math.inf


def test_example_2_sqrt_at_zero():
    # issue 15, example 2: Value(0.0) ** 0.5 raised ZeroDivisionError while building the node
    # [PyTorch: value 0, gradient inf]
    x = Value(0.0)
    y = x ** 0.5
    y.backward()
    assert y.data == 0.0 and x.grad == math.inf
    x = Value(-0.0)  # PyTorch's pow(x, 0.5) is sqrt: sqrt(-0) = -0 and 1 / (2 sqrt(-0)) = -inf
    y = x ** 0.5
    y.backward()
    assert math.copysign(1, y.data) == -1 and x.grad == -math.inf


def test_gradients_accumulate_and_zero():
    a = Value(2.0)
    y = a * a
    y.backward()
    y.backward()
    assert a.grad == 8.0
    y.zero_grad()
    assert a.grad == 0.0
