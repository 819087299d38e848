"""Stateless layers: losses, dropout, linear, and the recurrent cells' equations (composed of primitives).

The cell functions are the reference implementation of the recurrent layers: the generic engine
differentiates them step by step, which is BPTT done by autograd. Gate order and formulas are PyTorch's.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import ops
from ..autograd.function import Function
from ..autograd.tensor import Tensor, default_generator
from .kernels import backend

_REDUCTIONS = ("mean", "sum", "none")


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weightᵀ + bias, as `torch.nn.functional.linear`.

    >>> import chainrule as cr
    >>> linear(cr.ones(2, 3), cr.ones(4, 3)).shape
    (2, 4)
    """
    out = x @ weight.mT
    return out + bias if bias is not None else out


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (only when training).

    >>> import chainrule as cr
    >>> dropout(cr.ones(4), 0.5, training=False).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    if not 0.0 <= p < 1.0:
        if p == 1.0 and training:
            return x * 0.0
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    # keep each element when a random 16-bit integer reaches p·65536 (p is used to within 1/65536)
    draws = np.frombuffer(default_generator().bytes(2 * x.size), dtype=np.uint16).reshape(x.shape)
    return Dropout.apply(x, draws, round(p * 65536), 1.0 / (1.0 - p))


class Dropout(Function):
    """x ⊙ [draws ≥ threshold] / (1 - p): the mask is kept as the 16-bit draws it came from, and applied
    in one pass (numba) instead of being built as a float array first. Linear in x, so its backward is
    itself with the same draws (and differentiable again under create_graph)."""

    @staticmethod
    def forward(ctx, x, draws, threshold, scale):
        ctx.draws, ctx.threshold, ctx.scale = draws, threshold, scale
        return backend().apply_dropout(x, draws, threshold, scale)

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, Tensor):  # create_graph=True: record the backward as a Dropout of g
            return Dropout.apply(g, ctx.draws, ctx.threshold, ctx.scale), None, None, None
        return backend().apply_dropout(g, ctx.draws, ctx.threshold, ctx.scale), None, None, None


# -- recurrent cells (reference) ------------------------------------------------------------------------

def rnn_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None,
             bias_hh: Tensor | None, nonlinearity: str = "tanh", record: dict | None = None) -> Tensor:
    """h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh).

    >>> import chainrule as cr
    >>> rnn_cell(cr.ones(2, 3), cr.zeros(2, 4), cr.ones(4, 3), cr.ones(4, 4), None, None).shape
    (2, 4)
    """
    pre = linear(x, weight_ih, bias_ih) + linear(h, weight_hh, bias_hh)
    out = pre.tanh() if nonlinearity == "tanh" else pre.relu()
    if record is not None and nonlinearity == "tanh":
        record["tanh"] = [out]
    return out


def lstm_cell(x: Tensor, h: Tensor, c: Tensor, weight_ih: Tensor, weight_hh: Tensor,
              bias_ih: Tensor | None, bias_hh: Tensor | None, record: dict | None = None) -> tuple[Tensor, Tensor]:
    """One LSTM step, gates i, f, g, o: c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c').

    >>> import chainrule as cr
    >>> h, c = lstm_cell(cr.ones(2, 3), cr.zeros(2, 4), cr.zeros(2, 4), cr.ones(16, 3), cr.ones(16, 4), None, None)
    >>> h.shape, c.shape
    ((2, 4), (2, 4))
    """
    gates = linear(x, weight_ih, bias_ih) + linear(h, weight_hh, bias_hh)
    i, f, g, o = ops.split(gates, weight_hh.shape[1], axis=-1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c_new = f * c + i * g
    tanh_c = c_new.tanh()
    if record is not None:
        record["sigmoid"], record["tanh"] = [i, f, o], [g, tanh_c]
    return o * tanh_c, c_new


def gru_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None,
             bias_hh: Tensor | None, record: dict | None = None) -> Tensor:
    """One GRU step, gates r, z, n: n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn)), h' = (1 - z) ⊙ n + z ⊙ h.

    >>> import chainrule as cr
    >>> gru_cell(cr.ones(2, 3), cr.zeros(2, 4), cr.ones(12, 3), cr.ones(12, 4), None, None).shape
    (2, 4)
    """
    hidden = weight_hh.shape[1]
    x_r, x_z, x_n = ops.split(linear(x, weight_ih, bias_ih), hidden, axis=-1)
    h_r, h_z, h_n = ops.split(linear(h, weight_hh, bias_hh), hidden, axis=-1)
    r = (x_r + h_r).sigmoid()
    z = (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    if record is not None:
        record["sigmoid"], record["tanh"] = [r, z], [n]
    return n + z * (h - n)


# -- losses -----------------------------------------------------------------------------------------------

def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _target_array(logits_shape: tuple[int, ...], target: Any, ignore_index: int, what: str) -> np.ndarray:
    target = np.asarray(target.data if isinstance(target, Tensor) else target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"{what}: targets must be integer class indices, got dtype {target.dtype}")
    if len(logits_shape) < 1 or target.shape != logits_shape[:-1]:
        raise ValueError(f"{what}: for input of shape {logits_shape} (classes last) the target must have "
                         f"shape {logits_shape[:-1]}, got {target.shape}")
    classes = logits_shape[-1]
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= classes))
    if bad.any():
        raise IndexError(f"{what}: target index {int(target[bad].flat[0])} is out of range for "
                         f"{classes} classes (expected 0..{classes - 1} or ignore_index={ignore_index})")
    return target


class CrossEntropy(Function):
    """Fused log-softmax + negative log-likelihood over the last axis.

    loss_i = logsumexp(z_i) - z_i[t_i]; its gradient is softmax(z_i) - onehot(t_i) (S - 1 at the target).
    """

    @staticmethod
    def forward(ctx, logits, target, reduction, ignore_index):
        probabilities = logits - logits.max(axis=-1, keepdims=True)
        picked = np.take_along_axis(probabilities, np.where(target != ignore_index, target, 0)[..., None], axis=-1)
        np.exp(probabilities, out=probabilities)
        total = probabilities.sum(axis=-1, keepdims=True)
        probabilities /= total
        valid = target != ignore_index
        safe_target = np.where(valid, target, 0)
        losses = ((np.log(total) - picked)[..., 0] * valid).astype(logits.dtype, copy=False)  # lse - z_t
        count = int(valid.sum())
        ctx.save_for_backward(logits, probabilities)
        ctx.valid, ctx.target, ctx.reduction, ctx.count = valid, safe_target, reduction, count
        if reduction == "none":
            return losses
        total = losses.sum(dtype=logits.dtype)
        if reduction == "sum":
            return total
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / count  # the mean of no targets is nan, as in PyTorch

    @staticmethod
    def backward(ctx, g):
        logits, probabilities = ctx.saved_tensors
        weight = ctx.valid.astype(logits.dtype)
        if ctx.reduction == "mean":
            weight = weight / ctx.count if ctx.count else weight * np.nan
        scale = g[..., None] * weight[..., None] if ctx.reduction == "none" else g * weight[..., None]
        if isinstance(logits, Tensor):
            # under create_graph the saved softmax would be a constant: recompute it from the logits
            onehot = np.zeros(logits.shape, logits.dtype)
            np.put_along_axis(onehot, ctx.target[..., None], 1.0, axis=-1)
            return (logits.softmax(axis=-1) - onehot) * scale, None, None, None
        grad = probabilities.copy(order="K")   # in the logits' memory layout, whatever it is
        np.put_along_axis(grad, ctx.target[..., None], np.take_along_axis(grad, ctx.target[..., None], -1) - 1, -1)
        grad *= scale  # (softmax - onehot) scaled: S - 1 at the target
        return grad, None, None, None


def cross_entropy(logits: Tensor, target: Any, reduction: str = "mean", ignore_index: int = -100) -> Tensor:
    """Cross-entropy of class scores [N, C] or [B, T, C] (classes last) against integer targets.

    Stable for large logits; gradient softmax - onehot. Targets equal to `ignore_index` count for nothing.

    >>> import chainrule as cr
    >>> round(cross_entropy(cr.zeros(2, 4), [1, 3]).item(), 4)   # log 4
    1.3863
    """
    _check_reduction(reduction)
    if not isinstance(logits, Tensor):
        raise TypeError(f"cross_entropy: logits must be a Tensor, got {type(logits).__name__}")
    target = _target_array(logits.shape, target, ignore_index, "cross_entropy")
    return CrossEntropy.apply(logits, target, reduction, ignore_index)


def nll_loss(log_probs: Tensor, target: Any, reduction: str = "mean", ignore_index: int = -100) -> Tensor:
    """Negative log-likelihood of log-probabilities [N, C] or [B, T, C] (classes last).

    >>> import chainrule as cr
    >>> round(nll_loss(cr.log_softmax(cr.zeros(2, 4)), [1, 3]).item(), 4)
    1.3863
    """
    _check_reduction(reduction)
    target = _target_array(log_probs.shape, target, ignore_index, "nll_loss")
    valid = target != ignore_index
    picked = log_probs[tuple(np.indices(target.shape)) + (np.where(valid, target, 0),)]
    losses = -picked * valid.astype(log_probs.dtype)
    if reduction == "none":
        return losses
    total = losses.sum()
    return total / int(valid.sum()) if reduction == "mean" else total


def mse_loss(prediction: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or summed) squared error; shapes must match.

    >>> import chainrule as cr
    >>> mse_loss(cr.ones(3), cr.zeros(3)).item()
    1.0
    """
    _check_reduction(reduction)
    target_shape = tuple(getattr(target, "shape", np.shape(target)))
    if target_shape != prediction.shape:
        raise ValueError(f"mse_loss: prediction has shape {prediction.shape} but target has shape {target_shape}")
    squared = (prediction - target) ** 2
    if reduction == "none":
        return squared
    return squared.mean() if reduction == "mean" else squared.sum()
