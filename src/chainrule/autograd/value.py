"""`Value`: the `NumberWithGrad` of Seth Weidman's *Deep Learning from Scratch* (O'Reilly 2019, ch. 6),
done right.

A Value wraps one Python number and remembers the Values it was computed from together with the local
derivative with respect to each (the "local gradient" of the RNN backpropagation article; README, Sources).
`backward()` walks the graph with the same reverse-topological traversal as `Tensor`, so each node passes
its gradient on once, after all its uses have contributed: for b = 2a, c = b·b it gives dc/da = 24, where
the book's recursion, which re-sends the running total on every visit, gives 36.
"""
from __future__ import annotations

from typing import Any, Union

import numpy as np

from .engine import reverse_topological_order
from .ops.elementwise import (_scalar_power, div_gradients, pow_base_blocked, pow_gradients, relu_blocked, relu_forward,
                              sigmoid_forward)

Number = Union[int, float]
_F = np.float64
_ONE = np.float64(1.0)


class Value:
    """A scalar that records how it was computed.

    >>> from chainrule import Value
    >>> a = Value(3.0)
    >>> b = a * 4
    >>> c = b + 3
    >>> d = c * (a + 2)
    >>> d.backward()
    >>> d.data, a.grad
    (75.0, 35.0)
    """

    __slots__ = ("data", "grad", "parents", "local_grads", "op", "label", "blocked")

    def __init__(self, data: Number, parents: tuple[Value, ...] = (), local_grads: tuple[float, ...] = (),
                 op: str = "", label: str = "", blocked: tuple[bool, ...] = ()) -> None:
        if isinstance(data, Value):
            raise TypeError("Value(Value(...)): wrap a number, not another Value")
        if not isinstance(data, (int, float)) or isinstance(data, bool):
            try:
                data = float(data)  # NumPy scalars and the like
            except (TypeError, ValueError):
                raise TypeError(f"Value wraps a number; got {type(data).__name__}") from None
        self.data = float(data)
        self.grad = 0.0
        self.parents = parents
        self.local_grads = local_grads
        self.op = op
        self.label = label
        # per edge: whether its local derivative is a selected (structural) 0, which passes 0 whatever the
        # upstream gradient (relu below its kink, the base of x ** 0), as the Tensor engine and PyTorch select
        self.blocked = tuple(bool(b) for b in blocked)

    @staticmethod
    def _lift(other: Value | Number, op: str) -> Value:
        if isinstance(other, Value):
            return other
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return Value(other)
        raise TypeError(f"unsupported operand for {op}: Value and {type(other).__name__}")

    # Each op computes its value and its local derivatives with NumPy float64 and the same functions as the
    # Tensor engine (chainrule.autograd.ops.elementwise), so the two engines agree at every special point: no
    # Python-float exceptions (ZeroDivisionError, OverflowError, math domain errors), but inf and NaN as PyTorch gives.
    def _result(self, out: Any, parents: tuple[Value, ...], local_grads: tuple, op: str,
                blocked: tuple = ()) -> Value:
        return Value(float(out), parents, tuple(float(local) for local in local_grads), op, blocked=blocked)

    def __add__(self, other: Value | Number) -> Value:
        other = self._lift(other, "+")
        with np.errstate(all="ignore"):
            return self._result(_F(self.data) + _F(other.data), (self, other), (1.0, 1.0), "+")

    def __mul__(self, other: Value | Number) -> Value:
        other = self._lift(other, "*")
        with np.errstate(all="ignore"):
            return self._result(_F(self.data) * _F(other.data), (self, other), (other.data, self.data), "*")

    def __pow__(self, exponent: Value | Number) -> Value:
        """self ** exponent. A number exponent follows PyTorch's pow(Tensor, Scalar) (0.5 is sqrt, so
        Value(-0.0) ** 0.5 is -0.0 with gradient -inf); a Value exponent follows pow(Tensor, Tensor)."""
        lifted = self._lift(exponent, "**")
        x = _F(self.data)
        # a Value exponent is an array to the shared kernel, so it takes pow's convention, not sqrt's
        y = float(exponent) if not isinstance(exponent, Value) else np.asarray(exponent.data, np.float64)
        with np.errstate(all="ignore"):
            out = _scalar_power(x, y)
            local_base, local_exponent = pow_gradients(_ONE, x, y, out)
        return self._result(out, (self, lifted), (local_base, local_exponent), "**",
                            (bool(pow_base_blocked(y)), False))

    def __neg__(self) -> Value:
        return self._result(-_F(self.data), (self,), (-1.0,), "neg")

    def __sub__(self, other: Value | Number) -> Value:
        other = self._lift(other, "-")
        with np.errstate(all="ignore"):
            return self._result(_F(self.data) - _F(other.data), (self, other), (1.0, -1.0), "-")

    def __truediv__(self, other: Value | Number) -> Value:
        """self / other; division by 0 gives ±inf or NaN (and gradients to match), as for Tensors."""
        other = self._lift(other, "/")
        x, y = _F(self.data), _F(other.data)
        with np.errstate(all="ignore"):
            return self._result(x / y, (self, other), div_gradients(_ONE, x, y), "/")

    def __radd__(self, other: Number) -> Value:
        return self._lift(other, "+") + self

    def __rmul__(self, other: Number) -> Value:
        return self._lift(other, "*") * self

    def __rsub__(self, other: Number) -> Value:
        return self._lift(other, "-") - self

    def __rtruediv__(self, other: Number) -> Value:
        return self._lift(other, "/") / self

    def __rpow__(self, base: Number) -> Value:
        return self._lift(base, "**") ** self

    def exp(self) -> Value:
        with np.errstate(all="ignore"):
            out = np.exp(_F(self.data))
        return self._result(out, (self,), (out,), "exp")

    def log(self) -> Value:
        """ln(self): -inf at 0 (gradient inf), NaN below 0, as for Tensors and in PyTorch."""
        x = _F(self.data)
        with np.errstate(all="ignore"):
            return self._result(np.log(x), (self,), (_ONE / x,), "log")

    def tanh(self) -> Value:
        out = np.tanh(_F(self.data))
        with np.errstate(all="ignore"):
            return self._result(out, (self,), (1 - out * out,), "tanh")

    def sigmoid(self) -> Value:
        with np.errstate(all="ignore"):
            out = sigmoid_forward(_F(self.data))
            return self._result(out, (self,), ((1 - out) * out,), "sigmoid")

    def relu(self) -> Value:
        out = _F(relu_forward(_F(self.data)))
        blocked = bool(relu_blocked(out))
        return self._result(out, (self,), (0.0 if blocked else 1.0,), "relu", (blocked,))

    def backward(self) -> None:
        """Add d(self)/d(v) to `v.grad` for every Value v this one was computed from (and itself).

        >>> from chainrule import Value
        >>> a = Value(3.0)
        >>> b = a * 2
        >>> c = b * b
        >>> c.backward()
        >>> a.grad
        24.0
        """
        grads: dict[Value, float] = {self: 1.0}
        for node in reverse_topological_order([self], lambda value: value.parents):
            upstream = grads.pop(node, 0.0)
            node.grad += upstream
            blocked = node.blocked or (False,) * len(node.parents)
            for parent, local, stop in zip(node.parents, node.local_grads, blocked):
                # downstream = upstream × local (Python floats: inf · 0 is NaN, never an exception); a
                # blocked edge passes 0, selected as in the Tensor engine
                grads[parent] = grads.get(parent, 0.0) + (0.0 if stop else upstream * local)

    def zero_grad(self) -> None:
        """Set the grad of this Value and of everything it was computed from back to 0."""
        for node in reverse_topological_order([self], lambda value: value.parents):
            node.grad = 0.0

    def __repr__(self) -> str:
        return f"Value(data={self.data:g}, grad={self.grad:g})"

    __hash__ = object.__hash__
