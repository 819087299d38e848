"""chainrule: automatic differentiation and recurrent networks on NumPy, readable end to end.

The packages, each importing only those listed before it: `_kernels` (private memory and compiled helpers),
`autograd` (the engine: `Tensor`, ops, backward), `nn` and `optim` (layers and optimizers), `insight`
(graph drawings, gradient flow; loaded on first use as `chainrule.insight`) and `charlm` (the character-level
language model and the `chainrule` command; never imported by the library).

>>> import chainrule as cr
>>> x = cr.tensor([1.0, 2.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([2., 4.], dtype=float32)
"""
import os as _os
import signal as _signal
import sys as _sys
from typing import Any

if _sys.argv[:1] == ["-m"] or _os.path.basename(_sys.argv[0] if _sys.argv else "") == "chainrule":
    # the command line (python -m chainrule, or the chainrule script) is starting: Ctrl-C while this package
    # imports (before cli.main can catch it) ends in one line; chainrule.__main__.main puts Python's handler back
    def _interrupted_while_starting(signum, frame):
        _os.write(2, b"\ninterrupted\n")
        _os._exit(130)

    _signal.signal(_signal.SIGINT, _interrupted_while_starting)

from .autograd import (Function, GradcheckError, Tensor, Value, abs, add, arange, astype, bool_, broadcast_to,
                       cat, clamp, clip, concatenate, default_generator, detect_anomaly, div, enable_grad, exp,
                       float16, float32, float64, from_numpy, full, grad, gradcheck, gradgradcheck, int8, int16,
                       int32, int64, is_grad_enabled, log, log_softmax, logsumexp, manual_seed, matmul, max,
                       maximum, mean, min, minimum, mul, neg, no_grad, ones, ones_like, permute, pow, rand, randn,
                       relu, reshape, reverse_topological_order, scope, sigmoid, softmax, split, sqrt, squeeze,
                       stack, sub, sum, swapaxes, tanh, tensor, transpose, uint8, unsqueeze, where, zeros,
                       zeros_like)
from . import autograd, nn, optim

__version__ = "0.1.0"

# Loaded on first use (PEP 562), so that `import chainrule` stays as fast as the engine alone: the drawings and
# diagnostics (`chainrule.insight`, and the older names `chainrule.viz`, `chainrule.diagnostics`).
_ON_FIRST_USE = {"insight": "chainrule.insight", "viz": "chainrule.viz", "diagnostics": "chainrule.diagnostics"}


def __getattr__(name: str) -> Any:
    if name in _ON_FIRST_USE:
        from importlib import import_module

        module = import_module(_ON_FIRST_USE[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'chainrule' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ON_FIRST_USE))


__all__ = [
    "Function", "GradcheckError", "Tensor", "Value", "abs", "add", "arange", "astype", "bool_",
    "broadcast_to", "cat", "clamp", "clip", "concatenate", "default_generator", "detect_anomaly", "div",
    "enable_grad", "exp", "float16", "float32", "float64", "from_numpy", "full", "grad", "gradcheck",
    "gradgradcheck", "int8", "int16", "int32", "int64", "is_grad_enabled", "log", "log_softmax",
    "logsumexp", "manual_seed", "matmul", "max", "maximum", "mean", "min", "minimum", "mul", "neg",
    "no_grad", "ones", "ones_like", "permute", "pow", "rand", "randn", "relu", "reshape",
    "reverse_topological_order", "scope", "sigmoid", "softmax", "split", "sqrt", "squeeze", "stack", "sub", "sum",
    "swapaxes", "tanh", "tensor", "transpose", "uint8", "unsqueeze", "where", "zeros", "zeros_like",
    "autograd", "nn", "optim",
]
