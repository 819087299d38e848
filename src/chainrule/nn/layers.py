"""Feed-forward layers, activations and loss modules."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._kernels.device import to_host
from ..autograd.tensor import Tensor, default_generator
from . import functional as F
from .module import Module, Parameter


def uniform_parameter(shape: tuple[int, ...], bound: float, dtype: Any = np.float32) -> Parameter:
    """A Parameter drawn from U(-bound, bound) with chainrule's global generator (PyTorch's default init).

    >>> uniform_parameter((2, 3), 0.5).shape
    (2, 3)
    """
    return Parameter(default_generator().uniform(-bound, bound, shape).astype(dtype))


class Linear(Module):
    """y = x Wᵀ + b with W [out_features, in_features], initialised U(±1/√in_features) like PyTorch.

    Input [..., in_features] of the parameters' dtype (another dtype: ValueError, as PyTorch refuses it);
    output [..., out_features].

    >>> import chainrule as cr
    >>> Linear(3, 2)(cr.ones(5, 3)).shape
    (5, 2)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"Linear: {name} must be a positive integer, got {value!r}")
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = uniform_parameter((out_features, in_features), bound)
        self.bias = uniform_parameter((out_features,), bound) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear: expected input with {self.in_features} features in the last axis, "
                             f"got shape {x.shape}")
        if x.dtype != self.weight.dtype:   # as PyTorch (NumPy would silently promote to the wider dtype)
            raise ValueError(f"Linear: input dtype ({x.dtype}) does not match the parameters' dtype "
                             f"({self.weight.dtype}): convert the input (.astype) or the layer (.to(dtype))")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: integer indices -> rows of a [num_embeddings, embedding_dim] weight (N(0, 1) init).

    >>> import chainrule as cr
    >>> Embedding(10, 4)(cr.tensor([[1, 2, 3]])).shape
    (1, 3, 4)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        for name, value in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"Embedding: {name} must be a non-negative integer, got {value!r}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(default_generator().standard_normal((num_embeddings, embedding_dim))
                                .astype(np.float32))

    def forward(self, indices: Any) -> Tensor:
        index = to_host(indices.data) if isinstance(indices, Tensor) else np.asarray(indices)
        if index.dtype.kind not in "iu":
            raise TypeError(f"Embedding: indices must be integers, got dtype {index.dtype}")
        if index.size and (index.min() < 0 or index.max() >= self.num_embeddings):
            bad = index[(index < 0) | (index >= self.num_embeddings)].flat[0]
            raise IndexError(f"Embedding: index {int(bad)} is out of range for {self.num_embeddings} embeddings")
        if index.size == 0:  # no lookups (an empty batch): no rows, still connected to the weight
            return self.weight[0:0].reshape(index.shape + (self.embedding_dim,))
        return self.weight[index]

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class Dropout(Module):
    """Randomly zero elements with probability p during training; identity in eval mode.

    >>> import chainrule as cr
    >>> Dropout(0.5).eval()(cr.ones(3)).tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Sequential(Module):
    """Modules applied in order; parameters named by position ('0.weight', ...).

    >>> import chainrule as cr
    >>> Sequential(Linear(3, 4), Tanh(), Linear(4, 1))(cr.ones(2, 3)).shape
    (2, 1)
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: item {index} is a {type(module).__name__}, not a Module")
            setattr(self, str(index), module)

    def forward(self, x: Any) -> Any:
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)


class Tanh(Module):
    """tanh as a module.

    >>> import chainrule as cr
    >>> Tanh()(cr.zeros(1)).tolist()
    [0.0]
    """

    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class ReLU(Module):
    """max(x, 0) as a module.

    >>> import chainrule as cr
    >>> ReLU()(cr.tensor([-1.0, 1.0])).tolist()
    [0.0, 1.0]
    """

    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class Sigmoid(Module):
    """The logistic function as a module.

    >>> import chainrule as cr
    >>> Sigmoid()(cr.zeros(1)).tolist()
    [0.5]
    """

    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid()


class CrossEntropyLoss(Module):
    """Module form of `functional.cross_entropy` (classes on the last axis).

    >>> import chainrule as cr
    >>> round(CrossEntropyLoss()(cr.zeros(1, 2), [0]).item(), 4)
    0.6931
    """

    def __init__(self, reduction: str = "mean", ignore_index: int = -100) -> None:
        super().__init__()
        F._check_reduction(reduction)
        self.reduction, self.ignore_index = reduction, ignore_index

    def forward(self, logits: Tensor, target: Any) -> Tensor:
        return F.cross_entropy(logits, target, self.reduction, self.ignore_index)


class NLLLoss(CrossEntropyLoss):
    """Module form of `functional.nll_loss`.

    >>> import chainrule as cr
    >>> NLLLoss()(cr.tensor([[-1.0, -2.0]]), [1]).item()
    2.0
    """

    def forward(self, log_probs: Tensor, target: Any) -> Tensor:
        return F.nll_loss(log_probs, target, self.reduction, self.ignore_index)


class MSELoss(Module):
    """Module form of `functional.mse_loss`.

    >>> import chainrule as cr
    >>> MSELoss()(cr.ones(2), cr.zeros(2)).item()
    1.0
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        F._check_reduction(reduction)
        self.reduction = reduction

    def forward(self, prediction: Tensor, target: Any) -> Tensor:
        return F.mse_loss(prediction, target, self.reduction)
