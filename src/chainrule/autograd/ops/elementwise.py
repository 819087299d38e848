"""Elementwise primitives, each op's forward and backward side by side: arithmetic (+, -, ×, ÷, **, neg)
and the elementwise functions (exp, log, tanh, sigmoid, relu, abs, clip, maximum, where, cast).

Every backward receives the upstream gradient `g` and returns the downstream gradient of each input
(upstream × local). It is written with operators and methods that NumPy arrays and Tensors share, so
the same lines run on arrays in a normal backward and on Tensors under `create_graph=True`. Gradients
of broadcast inputs are summed back to the input's shape by the engine, not here.
"""
from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from ..._kernels.device import NUMPY, backend_of, device_of, to_device
from ..function import Function
from ..tensor import Tensor


def _exp(x: Any) -> Any:
    return x.exp() if isinstance(x, Tensor) else np.exp(x)


def _log(x: Any) -> Any:
    return x.log() if isinstance(x, Tensor) else np.log(x)


def _where(condition: np.ndarray, x: Any, y: Any) -> Any:
    """Select (never multiply by a mask: inf · 0 and NaN · 0 are NaN)."""
    if isinstance(x, Tensor) or isinstance(y, Tensor):
        return Where.apply(condition, x, y)
    return np.where(condition, x, y)


def _data(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _accumulation_dtype(dtype: np.dtype) -> Any:
    """float16 is summed in float32 (as PyTorch's CPU kernels do), so a sum never overflows on the way to a
    result that fits; other dtypes are summed in their own precision (None)."""
    return np.float32 if dtype == np.float16 else None


def _in_float32_for_float16(fn: Any, *arrays: Any) -> Any:
    """fn(*arrays), computed in float32 and rounded once when the arrays are float16 (PyTorch's CPU kernels
    do so: a sum inside a backward must not overflow float16 when the result fits); else as it is."""
    if builtins.any(a.dtype != np.float16 for a in arrays):
        return fn(*arrays)
    # a Tensor (create_graph) goes through the differentiable Cast, so the graph computes the same as here
    return fn(*(a.astype(np.float32) for a in arrays)).astype(np.float16)


def _scalar_power(x: Any, exponent: Any) -> Any:
    """x ** exponent for an array x; for float32 and float64 a Python-number exponent of 0.5 or -0.5 is
    sqrt(x) or 1 / sqrt(x), as in PyTorch's pow(Tensor, Scalar) (they differ from C's pow at -0 and -inf:
    sqrt(-0) = -0, sqrt(-inf) = NaN); float16, as in PyTorch, keeps C's pow."""
    if isinstance(exponent, (int, float)) and not isinstance(exponent, bool) and \
            getattr(x, "dtype", None) in (np.float32, np.float64):
        if exponent == 0.5:
            return np.sqrt(x)
        if exponent == -0.5:
            return np.reciprocal(np.sqrt(x))
        return np.power(x, exponent)
    out = np.power(x, exponent)
    e = _data(exponent)   # read without np.asarray, which a GPU's array refuses
    if (np.size(e) == 1 and (e.dtype.kind if hasattr(e, "dtype") else np.result_type(e).kind) == "f"
            and float(e.reshape(-1)[0] if hasattr(e, "reshape") else e) == 0.5):
        # NumPy takes a scalar exponent 0.5 as sqrt (-0 -> -0, -inf -> NaN); a Tensor exponent follows C's
        # pow, as in PyTorch's pow(Tensor, Tensor): pow(-0, 0.5) = +0, pow(-inf, 0.5) = +inf
        kind = np.result_type(out).type   # scalars, not 0-d NumPy arrays: they combine with arrays on any device
        out = np.where(np.isneginf(x), kind(np.inf), out + kind(0))
        out = out.astype(np.result_type(x, exponent), copy=False) if isinstance(out, np.ndarray) else out
    return out


def _power(x: Any, exponent: Any) -> Any:
    if isinstance(x, Tensor) or isinstance(exponent, Tensor):
        return Pow.apply(x, exponent)
    return _scalar_power(x, exponent)


def pow_gradients(g: Any, x: Any, y: Any, out: Any, need_x: bool = True, need_y: bool = True) -> tuple:
    """Gradients of out = x ** y (PyTorch's pow_backward):
    ∂/∂x = y x^(y-1), selected to 0 where y == 0 (even at x = 0, inf or NaN);
    ∂/∂y = x^y ln x, selected to 0 where x == 0 and y >= 0 (0 · ln 0 is the limit 0, not NaN);
    a negative base gives NaN for ∂/∂y (ln of a negative number), as in PyTorch."""
    grad_x = grad_y = None
    if need_x:
        if isinstance(y, (int, float)) and not isinstance(y, bool):
            grad_x = np.zeros_like(_data(g)) if y == 0 else g * (y * _power(x, y - 1))   # zeros on g's device
        else:
            # y - 1 kept an array: NumPy turns a 0-d result into np.float64, a float, which would take the
            # Python-number (sqrt) convention at -0.5
            minus_one: Tensor | np.ndarray
            if isinstance(y, Tensor):
                minus_one = y - 1
            else:
                minus_one = np.subtract(y, 1)
                if isinstance(minus_one, np.generic):  # (np.asarray would refuse a GPU's array)
                    minus_one = np.asarray(minus_one)
            grad_x = _where(pow_base_blocked(y), 0, g * (y * _power(x, minus_one)))
    if need_y:
        # selected inside, then multiplied by g, as PyTorch's pow_backward_exponent (inf upstream: NaN)
        at_zero = np.logical_and(np.equal(_data(x), 0), np.greater_equal(_data(y), 0))
        grad_y = g * _where(at_zero, 0, out * _log(x))
    return grad_x, grad_y


def pow_base_blocked(y: Any) -> Any:
    """Where the base's gradient is selected to 0 whatever the upstream one (inf, NaN): y == 0 (PyTorch's
    pow_backward selects it; the exponent's gradient at x = 0 is a selected 0 multiplied by the upstream)."""
    return np.equal(_data(y), 0)


def div_gradients(g: Any, x: Any, y: Any) -> tuple:
    """Gradients of x / y: g / y and -g (x / y) / y (PyTorch's order: -g · x / y² overflows sooner)."""
    return g / y, -g * ((x / y) / y)


def sigmoid_forward(x: Any) -> Any:
    """1 / (1 + e^-x) written so that neither branch overflows."""
    return np.exp(-np.logaddexp(0, -x)).astype(x.dtype, copy=False)


def relu_forward(x: Any) -> Any:
    """max(x, 0) as PyTorch's clamp_min: x where x >= 0 or NaN, so -0 stays -0 (np.maximum gives +0)."""
    return np.where(np.less(x, 0), np.result_type(x).type(0), x)   # a scalar 0: fits an array on any device


def relu_blocked(out: Any) -> Any:
    """Where relu passes no gradient: out <= 0 (PyTorch's threshold_backward; NaN passes its gradient)."""
    return np.less_equal(out, 0)


class Add(Function):
    """z = x + y: the add node distributes the upstream gradient to both inputs unchanged."""

    @staticmethod
    def forward(ctx, x, y):
        return x + y

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    @staticmethod
    def forward(ctx, x, y):
        return x - y

    @staticmethod
    def backward(ctx, g):
        return g, -g


class Mul(Function):
    """z = x * y: the multiply node swaps its inputs: dz/dx = y, dz/dy = x."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        need_x, need_y = ctx.inputs
        return (g * y if need_x is not None else None), (g * x if need_y is not None else None)


class Div(Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x / y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        grad_x, grad_y = div_gradients(g, x, y)
        return grad_x, (grad_y if ctx.needs_input_grad[1] else None)


class Pow(Function):
    """z = x ** y; the gradients and their special points are in `pow_gradients`."""

    @staticmethod
    def forward(ctx, x, y):
        out = _scalar_power(x, y)
        ctx.save_for_backward(x, y, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, y, out = ctx.saved_tensors
        return pow_gradients(g, x, y, out, *ctx.needs_input_grad)


class Sqrt(Function):
    """√x; d√x/dx = 1 / (2√x): inf at 0, -inf at -0 (PyTorch's sqrt_backward g / (2 out))."""

    @staticmethod
    def forward(ctx, x):
        out = np.sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g / (2 * out)


class Neg(Function):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, g):
        return -g


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        out = np.exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / x


class Tanh(Function):
    """The tanh node: dtanh(x)/dx = 1 - tanh(x)²."""

    @staticmethod
    def forward(ctx, x):
        out = np.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * (1 - out * out)


class Sigmoid(Function):
    """The sigmoid node: dσ(x)/dx = σ(x) (1 - σ(x))."""

    @staticmethod
    def forward(ctx, x):
        out = sigmoid_forward(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * (1 - out) * out


class Relu(Function):
    """max(x, 0) (NaN stays NaN); the gradient is selected: 0 where the output is <= 0, else g."""

    @staticmethod
    def forward(ctx, x):
        out = relu_forward(x)
        ctx.save_for_backward(relu_blocked(out))
        return out

    @staticmethod
    def backward(ctx, g):
        (blocked,) = ctx.saved_tensors
        return _where(blocked, 0, g)


class Abs(Function):
    """|x|; gradient g · sign(x), where sign(0) = sign(NaN) = 0 (PyTorch's sgn)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(np.greater(x, 0).astype(x.dtype) - np.less(x, 0))
        return np.abs(x)

    @staticmethod
    def backward(ctx, g):
        (sign,) = ctx.saved_tensors
        return g * sign


class Clip(Function):
    """Gradient 1 where low <= x <= high (PyTorch's clamp), 0 outside."""

    @staticmethod
    def forward(ctx, x, low, high):
        inside = np.ones_like(x, dtype=bool)   # on x's device
        if low is not None:
            inside &= x >= low
        if high is not None:
            inside &= x <= high
        ctx.save_for_backward(inside)
        # PyTorch's clamp: x is kept where it equals a bound (-0 stays -0, np.clip gives the bound's +0)
        out = x
        if low is not None:
            out = np.where(np.less(out, low), low, out)
        if high is not None:
            out = np.where(np.greater(out, high), high, out)
        return out.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (inside,) = ctx.saved_tensors
        return _where(inside, g, 0), None, None


class Maximum(Function):
    """Elementwise max (NaN wins); where x == y the gradient is split equally, and where either is NaN
    both get g (PyTorch: x's gradient is g/2 on ties, 0 where x < y, else g; y's likewise)."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(np.less(x, y), np.equal(x, y), np.greater(x, y))
        return np.maximum(x, y)

    @staticmethod
    def backward(ctx, g):
        less, equal, greater = ctx.saved_tensors
        shared = _where(equal, g / 2, g)
        return _where(less, 0, shared), _where(greater, 0, shared)


class Where(Function):
    @staticmethod
    def forward(ctx, condition, x, y):
        on_gpu = next((a for a in (x, y) if type(a) is not np.ndarray and backend_of(a) is not NUMPY), None)
        if on_gpu is not None and type(condition) is np.ndarray:  # a host mask joins the values on their device
            condition = to_device(condition, device_of(on_gpu))
        ctx.save_for_backward(condition)
        return np.where(condition, x, y)

    @staticmethod
    def backward(ctx, g):
        (condition,) = ctx.saved_tensors
        return None, _where(condition, g, 0), _where(condition, 0, g)


class Cast(Function):
    @staticmethod
    def forward(ctx, x, dtype):
        ctx.input_dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.input_dtype), None
