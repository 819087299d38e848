"""The engine: tensors that record the operations applied to them, and reverse-mode differentiation.

- `tensor`: `Tensor` and its constructors; `value`: `Value`, the scalar engine.
- `function`: `Function`, one op's forward and backward side by side (the node is its own `ctx`), the grad
  modes (`no_grad`, `enable_grad`, `detect_anomaly`, `keep_gradients`) and `scope`.
- `ops/`: the primitive ops, forward and backward side by side, by kind: `elementwise`, `matmul`,
  `reductions`, `shape` (reshaping, indexing, joining and splitting).
- `functional`: the public op functions (`add`, `sum`, `softmax`, `stack`, ...) with their input checks.
- `engine`: the backward walk (one iterative reverse-topological pass), `grad`, broadcast reduction.
- `gradcheck`: `gradcheck`, `gradgradcheck` by central differences.

It imports nothing of chainrule but the private helpers in `chainrule._kernels`.
"""
from types import SimpleNamespace

from .engine import grad, parent_nodes, reverse_topological_order, run_backward
from .function import (KEPT_GRADIENT_SIZE, Function, detect_anomaly, enable_grad, is_grad_enabled, is_graph_retained,
                       keep_gradients, no_grad, observe_nodes, scope)
from .tensor import (Tensor, arange, bool_, default_generator, float16, float32, float64, from_numpy, full,
                     int8, int16, int32, int64, manual_seed, ones, ones_like, rand, randn, register_ops, tensor,
                     uint8, zeros, zeros_like)
from . import functional, ops
from .functional import (abs, add, astype, broadcast_to, cat, clamp, clip, concatenate, div, exp, log, log_softmax,
                         logsumexp, matmul, max, maximum, mean, min, minimum, mul, neg, permute, pow, relu, reshape,
                         sigmoid, softmax, split, sqrt, squeeze, stack, sub, sum, swapaxes, tanh, transpose,
                         unsqueeze, where)
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .value import Value

# Tensor's operators and methods call the primitives and the op functions, which are built on Tensor
register_ops(SimpleNamespace(**{name: getattr(ops, name) for name in ops.__all__},
                             **{name: getattr(functional, name) for name in functional.__all__}))

__all__ = [
    "KEPT_GRADIENT_SIZE", "Function", "GradcheckError", "Tensor", "Value", "abs", "add", "arange", "astype", "bool_",
    "broadcast_to",
    "cat", "clamp", "clip", "concatenate", "default_generator", "detect_anomaly", "div", "enable_grad", "exp",
    "float16", "float32", "float64", "from_numpy", "full", "grad", "gradcheck", "gradgradcheck", "int8", "int16",
    "int32", "int64", "is_grad_enabled", "is_graph_retained", "keep_gradients", "log", "log_softmax", "logsumexp",
    "manual_seed",
    "matmul", "max", "maximum", "mean", "min", "minimum", "mul", "neg", "no_grad", "ones", "ones_like",
    "observe_nodes", "parent_nodes", "permute", "pow", "rand", "randn", "relu", "reshape", "reverse_topological_order",
    "run_backward", "scope", "sigmoid", "softmax", "split", "sqrt", "squeeze", "stack", "sub", "sum", "swapaxes",
    "tanh", "tensor", "transpose", "uint8", "unsqueeze", "where", "zeros", "zeros_like",
]
