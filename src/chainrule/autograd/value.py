"""`Value`: the source book's `NumberWithGrad`, done right.

A Value wraps one Python number and remembers the Values it was computed from together with the local
derivative with respect to each (the "local gradient" of the seed article). `backward()` walks the graph
with the same reverse-topological traversal as `Tensor`, so each node passes its gradient on once, after
all its uses have contributed: for b = 2a, c = b·b it gives dc/da = 24, where the book's recursion,
which re-sends the running total on every visit, gives 36.
"""
from __future__ import annotations

import math
from typing import Union

from .engine import reverse_topological_order

Number = Union[int, float]


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

    __slots__ = ("data", "grad", "parents", "local_grads", "op", "label")

    def __init__(self, data: Number, parents: tuple[Value, ...] = (), local_grads: tuple[float, ...] = (),
                 op: str = "", label: str = "") -> None:
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

    @staticmethod
    def _lift(other: Value | Number, op: str) -> Value:
        if isinstance(other, Value):
            return other
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return Value(other)
        raise TypeError(f"unsupported operand for {op}: Value and {type(other).__name__}")

    # each op: the value, then ∂out/∂input for every input
    def __add__(self, other: Value | Number) -> Value:
        other = self._lift(other, "+")
        return Value(self.data + other.data, (self, other), (1.0, 1.0), "+")

    def __mul__(self, other: Value | Number) -> Value:
        other = self._lift(other, "*")
        return Value(self.data * other.data, (self, other), (other.data, self.data), "*")

    def __pow__(self, exponent: Value | Number) -> Value:
        exponent = self._lift(exponent, "**")
        out = self.data ** exponent.data
        if isinstance(out, complex):
            raise ValueError(f"Value: {self.data} ** {exponent.data} is not a real number")
        local_base = exponent.data * self.data ** (exponent.data - 1) if exponent.data != 0 else 0.0
        local_exponent = out * math.log(self.data) if self.data > 0 else 0.0
        return Value(out, (self, exponent), (local_base, local_exponent), "**")

    def __neg__(self) -> Value:
        return Value(-self.data, (self,), (-1.0,), "neg")

    def __sub__(self, other: Value | Number) -> Value:
        other = self._lift(other, "-")
        return Value(self.data - other.data, (self, other), (1.0, -1.0), "-")

    def __truediv__(self, other: Value | Number) -> Value:
        other = self._lift(other, "/")
        if other.data == 0:
            raise ZeroDivisionError("Value division by zero")
        return Value(self.data / other.data, (self, other),
                     (1.0 / other.data, -self.data / other.data ** 2), "/")

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
        out = math.exp(self.data)
        return Value(out, (self,), (out,), "exp")

    def log(self) -> Value:
        if self.data <= 0:
            raise ValueError(f"Value.log of a non-positive number ({self.data})")
        return Value(math.log(self.data), (self,), (1.0 / self.data,), "log")

    def tanh(self) -> Value:
        out = math.tanh(self.data)
        return Value(out, (self,), (1.0 - out * out,), "tanh")

    def sigmoid(self) -> Value:
        z = self.data
        out = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
        return Value(out, (self,), (out * (1.0 - out),), "sigmoid")

    def relu(self) -> Value:
        return Value(max(self.data, 0.0), (self,), (1.0 if self.data > 0 else 0.0,), "relu")

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
            for parent, local in zip(node.parents, node.local_grads):
                grads[parent] = grads.get(parent, 0.0) + upstream * local  # downstream = upstream × local

    def zero_grad(self) -> None:
        """Set the grad of this Value and of everything it was computed from back to 0."""
        for node in reverse_topological_order([self], lambda value: value.parents):
            node.grad = 0.0

    def __repr__(self) -> str:
        return f"Value(data={self.data:g}, grad={self.grad:g})"

    __hash__ = object.__hash__
