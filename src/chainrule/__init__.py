"""chainrule: automatic differentiation and recurrent networks on NumPy, readable end to end.

>>> import chainrule as cr
>>> x = cr.tensor([1.0, 2.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([2., 4.], dtype=float32)
"""
import os as _os
import signal as _signal
import sys as _sys

if _sys.argv[:1] == ["-m"] or _os.path.basename(_sys.argv[0] if _sys.argv else "") == "chainrule":
    # the command line (python -m chainrule, or the chainrule script) is starting: Ctrl-C while this package
    # imports (before cli.main can catch it) ends in one line; chainrule.__main__.main puts Python's handler back
    def _interrupted_while_starting(signum, frame):
        _os.write(2, b"\ninterrupted\n")
        _os._exit(130)

    _signal.signal(_signal.SIGINT, _interrupted_while_starting)

from .backward import grad, reverse_topological_order
from .function import Function, detect_anomaly, enable_grad, is_grad_enabled, no_grad, scope
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .ops import (abs, add, astype, broadcast_to, cat, clamp, clip, concatenate, div, exp, log,
                  log_softmax, logsumexp, matmul, max, maximum, mean, min, minimum, mul, neg, permute,
                  pow, relu, reshape, sigmoid, softmax, split, sqrt, squeeze, stack, sub, sum,
                  swapaxes, tanh, transpose, unsqueeze, where)
from .tensor import (Tensor, arange, bool_, default_generator, float16, float32, float64, from_numpy,
                     full, int8, int16, int32, int64, manual_seed, ones, ones_like, rand, randn, tensor,
                     uint8, zeros, zeros_like)
from .value import Value
from . import nn, optim  # noqa: E402  (layers and optimizers on top of the engine)

__version__ = "0.1.0"

__all__ = [
    "Function", "GradcheckError", "Tensor", "Value", "abs", "add", "arange", "astype", "bool_",
    "broadcast_to", "cat", "clamp", "clip", "concatenate", "default_generator", "detect_anomaly", "div",
    "enable_grad", "exp", "float16", "float32", "float64", "from_numpy", "full", "grad", "gradcheck",
    "gradgradcheck", "int8", "int16", "int32", "int64", "is_grad_enabled", "log", "log_softmax",
    "logsumexp", "manual_seed", "matmul", "max", "maximum", "mean", "min", "minimum", "mul", "neg",
    "no_grad", "ones", "ones_like", "permute", "pow", "rand", "randn", "relu", "reshape",
    "reverse_topological_order", "scope", "sigmoid", "softmax", "split", "sqrt", "squeeze", "stack", "sub", "sum",
    "swapaxes", "tanh", "tensor", "transpose", "uint8", "unsqueeze", "where", "zeros", "zeros_like",
    "nn", "optim",
]
