"""The Adam update as one compiled pass per parameter (numba backend; see `chainrule._kernels.backend`).

NumPy needs about a dozen calls per parameter for an Adam step, each a pass over memory with a temporary;
for the many small tensors of a recurrent model that overhead is most of the step. This kernel does the
same arithmetic per element in one pass: the formula of `optimizer.adam`, which calls it.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")  # IEEE division (no Python zero-check per element), so loops vectorise
def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
              decoupled, amsgrad, step_size, bias_correction2_sqrt):
    """All arrays 1-D, contiguous, one dtype; max_exp_avg_sq is used only with amsgrad."""
    dtype = param.dtype.type
    one_minus_beta1, one_minus_beta2 = dtype(1.0 - beta1), dtype(1.0 - beta2)
    beta2_, eps_, step_size_ = dtype(beta2), dtype(eps), dtype(step_size)
    inverse_correction = dtype(1.0 / bias_correction2_sqrt)
    if weight_decay != 0.0:  # the branches sit outside the element loops, so those vectorise
        if decoupled:
            param *= dtype(1.0 - lr * weight_decay)
            g = grad
        else:
            g = grad + dtype(weight_decay) * param
    else:
        g = grad
    for k in range(param.shape[0]):
        exp_avg[k] += (g[k] - exp_avg[k]) * one_minus_beta1
        exp_avg_sq[k] = exp_avg_sq[k] * beta2_ + one_minus_beta2 * g[k] * g[k]
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, max_exp_avg_sq)
        second = max_exp_avg_sq
    else:
        second = exp_avg_sq
    for k in range(param.shape[0]):
        param[k] -= step_size_ * (exp_avg[k] / (np.sqrt(second[k]) * inverse_correction + eps_))
