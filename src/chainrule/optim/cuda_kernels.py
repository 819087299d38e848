"""The Adam update as one CUDA kernel per parameter (numba.cuda, on CuPy arrays), for parameters on a GPU.

NumPy's formula run on CuPy arrays is about ten launches per parameter, each a pass over memory; this kernel
does the same arithmetic per element in one (the formula of `optimizer.adam`, which calls it, and of the
compiled CPU step in `kernels.adam_step`). Imported only when a parameter on a GPU takes an Adam step.
"""
from __future__ import annotations

import math

from numba import config, cuda

THREADS = 8 if config.ENABLE_CUDASIM else 256  # type: ignore[attr-defined]  # numba.config sets it at import   # the simulator runs a Python thread per GPU thread
config.CUDA_ARRAY_INTERFACE_SYNC = False  # type: ignore[attr-defined]  # one stream (CuPy's default) orders the work already


@cuda.jit
def _adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay, decoupled,
          amsgrad, step_size, bias_correction2_sqrt):
    k = cuda.grid(1)
    if k >= param.shape[0]:
        return
    g = grad[k]
    if weight_decay != 0.0:
        if decoupled:
            param[k] = param[k] * (1.0 - lr * weight_decay)
        else:
            g = g + weight_decay * param[k]
    exp_avg[k] = exp_avg[k] + (g - exp_avg[k]) * (1.0 - beta1)
    exp_avg_sq[k] = exp_avg_sq[k] * beta2 + (1.0 - beta2) * g * g
    second = exp_avg_sq[k]
    if amsgrad:
        if second > max_exp_avg_sq[k] or math.isnan(second):
            max_exp_avg_sq[k] = second
        second = max_exp_avg_sq[k]
    param[k] = param[k] - step_size * (exp_avg[k] / (math.sqrt(second) / bias_correction2_sqrt + eps))


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay, decoupled,
              amsgrad, step_size, bias_correction2_sqrt) -> None:
    """All arrays 1-D, contiguous, one dtype, on one GPU; max_exp_avg_sq is used only with amsgrad."""
    blocks = max(1, (param.shape[0] + THREADS - 1) // THREADS)
    _adam[blocks, THREADS](param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                           decoupled, amsgrad, step_size, bias_correction2_sqrt)
