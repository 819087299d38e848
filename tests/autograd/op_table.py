"""One table of operations shared by the gradcheck and the PyTorch-oracle tests.

Each entry: how many inputs, how to make their values (kept away from kinks and outside domains), the
chainrule call and the equivalent torch call. The gradcheck and random-value oracle tests use the makers;
tests/test_special_values.py ignores them and draws every op's inputs from the special values
(0, -0, ±inf, NaN, subnormals, the largest finite value, ±1, small normals) in every float dtype.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import chainrule as cr


def normal(rng, shape):
    return rng.standard_normal(shape)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def away_from_zero(rng, shape):
    values = rng.uniform(0.2, 2.0, shape)
    return values * rng.choice([-1.0, 1.0], shape)


def away_from_half(rng, shape):  # for clip(-0.5, 0.5)
    values = rng.uniform(0.0, 1.0, shape)
    values = np.where(np.abs(values - 0.5) < 0.1, values + 0.25, values)
    return values * rng.choice([-1.0, 1.0], shape)


def distinct(rng, shape):  # max/min: no near-ties
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) * 0.1 + rng.uniform(0, 0.01, shape)) - size * 0.05


@dataclass
class Op:
    name: str
    ours: Callable[..., Any]
    theirs: Callable[..., Any]
    makers: tuple = (normal,)
    second_order: bool = True
    kwargs: dict = field(default_factory=dict)


UNARY = [
    Op("neg", lambda x: -x, lambda x: -x),
    Op("exp", cr.exp, lambda x: x.exp()),
    Op("log", cr.log, lambda x: x.log(), (positive,)),
    Op("sqrt", cr.sqrt, lambda x: x.sqrt(), (positive,)),
    Op("tanh", cr.tanh, lambda x: x.tanh()),
    Op("sigmoid", cr.sigmoid, lambda x: x.sigmoid()),
    Op("relu", cr.relu, lambda x: x.relu(), (away_from_zero,)),
    Op("abs", cr.abs, lambda x: x.abs(), (away_from_zero,)),
    Op("clip", lambda x: cr.clip(x, -0.5, 0.5), lambda x: x.clamp(-0.5, 0.5), (away_from_half,)),
    Op("square", lambda x: x ** 2, lambda x: x ** 2),
    Op("pow_2.5", lambda x: x ** 2.5, lambda x: x ** 2.5, (positive,)),
    Op("pow_half", lambda x: x ** 0.5, lambda x: x ** 0.5, (positive,)),
    Op("pow_minus_half", lambda x: x ** -0.5, lambda x: x ** -0.5, (positive,)),
    Op("pow_zero", lambda x: x ** 0, lambda x: x ** 0),
    Op("cube", lambda x: x ** 3, lambda x: x ** 3),
    Op("reciprocal_pow", lambda x: x ** -1, lambda x: x ** -1, (away_from_zero,)),
    Op("rpow", lambda x: 2.0 ** x, lambda x: 2.0 ** x),
    Op("rpow_zero_base", lambda x: 0.0 ** x, lambda x: 0.0 ** x, (positive,)),
    Op("rsub", lambda x: 1.0 - x, lambda x: 1.0 - x),
    Op("rdiv", lambda x: 1.0 / x, lambda x: 1.0 / x, (away_from_zero,)),
    Op("sum", lambda x: x.sum(), lambda x: x.sum()),
    Op("mean", lambda x: x.mean(), lambda x: x.mean()),
    Op("max", lambda x: x.max(), lambda x: x.amax(), (distinct,)),
    Op("min", lambda x: x.min(), lambda x: x.amin(), (distinct,)),
    Op("logsumexp", lambda x: x.logsumexp(), lambda x: x.logsumexp(dim=tuple(range(x.ndim)))),
    Op("reshape", lambda x: x.reshape(-1), lambda x: x.reshape(-1)),
    Op("T", lambda x: x.T, lambda x: x.permute(tuple(reversed(range(x.ndim))))),
    Op("getitem_repeats", lambda x: x.reshape(-1)[[0, 0, -1]], lambda x: x.reshape(-1)[[0, 0, -1]]),
    Op("broadcast", lambda x: x.broadcast_to((2,) + x.shape), lambda x: x.expand((2,) + x.shape)),
    Op("unsqueeze", lambda x: x.unsqueeze(0), lambda x: x.unsqueeze(0)),
    Op("clamp_min", lambda x: x.clamp(min=0.0), lambda x: x.clamp(min=0.0), (away_from_zero,)),
    Op("astype_float64", lambda x: x.astype("float64") * 2, lambda x: x.double() * 2),
]

# ops that take an axis: applied along the last axis of tensors with at least one dimension
AXIS = [
    Op("sum_axis", lambda x: x.sum(axis=-1), lambda x: x.sum(dim=-1)),
    Op("sum_keepdims", lambda x: x.sum(axis=0, keepdims=True), lambda x: x.sum(dim=0, keepdim=True)),
    Op("mean_axis", lambda x: x.mean(axis=-1), lambda x: x.mean(dim=-1)),
    Op("max_axis", lambda x: x.max(axis=-1), lambda x: x.amax(dim=-1), (distinct,)),
    Op("min_axis", lambda x: x.min(axis=0, keepdims=True), lambda x: x.amin(dim=0, keepdim=True), (distinct,)),
    Op("softmax", lambda x: x.softmax(axis=-1), lambda x: x.softmax(dim=-1)),
    Op("log_softmax", lambda x: x.log_softmax(axis=0), lambda x: x.log_softmax(dim=0)),
    Op("logsumexp_axis", lambda x: x.logsumexp(axis=-1, keepdims=True), lambda x: x.logsumexp(dim=-1, keepdim=True)),
    Op("getitem_slice", lambda x: x[..., ::2], lambda x: x[..., ::2]),
    Op("getitem_last", lambda x: x[..., -1], lambda x: x[..., -1]),
    Op("split", lambda x: x.split(1, axis=-1)[0] * 2 + x.split(1, axis=-1)[-1],
       lambda x: x.split(1, dim=-1)[0] * 2 + x.split(1, dim=-1)[-1]),
    Op("flip_concat", lambda x: cr.concatenate([x, x * 2], axis=-1),
       lambda x: __import__("torch").cat([x, x * 2], dim=-1)),
    Op("stack", lambda x: cr.stack([x, x.exp()], axis=-1), lambda x: __import__("torch").stack([x, x.exp()], dim=-1)),
    Op("swapaxes", lambda x: x.swapaxes(0, -1), lambda x: x.transpose(0, -1)),
]

BINARY = [
    Op("add", lambda x, y: x + y, lambda x, y: x + y, (normal, normal)),
    Op("sub", lambda x, y: x - y, lambda x, y: x - y, (normal, normal)),
    Op("mul", lambda x, y: x * y, lambda x, y: x * y, (normal, normal)),
    Op("div", lambda x, y: x / y, lambda x, y: x / y, (normal, away_from_zero)),
    Op("pow", lambda x, y: x ** y, lambda x, y: x ** y, (positive, normal)),
    Op("maximum", cr.maximum, lambda x, y: __import__("torch").maximum(x, y), (distinct, normal)),
    Op("minimum", cr.minimum, lambda x, y: __import__("torch").minimum(x, y), (distinct, normal)),
    Op("where", lambda x, y: cr.where(x.data > 0, x, y),
       lambda x, y: __import__("torch").where(x > 0, x, y), (away_from_zero, normal)),
    Op("where_log", lambda x, y: cr.where(x.data > 0, x.log(), y),  # the unselected log(x <= 0) is NaN
       lambda x, y: __import__("torch").where(x > 0, x.log(), y), (away_from_zero, normal)),
]

# matrix products: the shapes are drawn by each test (they must agree in the contracted dimension)
MATMUL = Op("matmul", lambda x, y: x @ y, lambda x, y: x @ y, (normal, normal))
