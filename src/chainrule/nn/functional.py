"""Stateless layers: losses, dropout, linear, and the recurrent cells' equations (composed of primitives).

The cell functions are the reference implementation of the recurrent layers: the generic engine
differentiates them step by step, which is BPTT done by autograd. Gate order and formulas are PyTorch's.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .._kernels.device import NUMPY, backend_of, device_of, to_device, to_host
from ..autograd.functional import split
from ..autograd.ops import Scatter
from ..autograd.function import Function
from ..autograd.tensor import Tensor, default_generator
from .kernels import kernel_module

_REDUCTIONS = ("mean", "sum", "none")


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weightᵀ + bias, as `torch.nn.functional.linear`.

    >>> import chainrule as cr
    >>> linear(cr.ones(2, 3), cr.ones(4, 3)).shape
    (2, 4)

    Raises ValueError when x, weight or bias differ in dtype (PyTorch refuses them; NumPy would promote).
    """
    for what, tensor in (("input", x), ("bias", bias)):
        if tensor is not None and getattr(tensor, "dtype", weight.dtype) != weight.dtype:
            raise ValueError(f"linear: {what} dtype ({tensor.dtype}) does not match the weight's dtype "
                             f"({weight.dtype}): convert one of them (.astype)")
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
    if type(x.data) is not np.ndarray:  # drawn on the host from the one generator (the same mask on every device)
        draws = to_device(draws, device_of(x.data))
    return Dropout.apply(x, draws, round(p * 65536), 1.0 / (1.0 - p))


class Dropout(Function):
    """x ⊙ [draws ≥ threshold] / (1 - p): the mask is kept as the 16-bit draws it came from, and applied
    in one pass (numba) instead of being built as a float array first. Linear in x, so its backward is
    itself with the same draws (and differentiable again under create_graph)."""

    @staticmethod
    def forward(ctx, x, draws, threshold, scale):
        ctx.draws, ctx.threshold, ctx.scale = draws, threshold, scale
        return kernel_module(x).apply_dropout(x, draws, threshold, scale)

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, Tensor):  # create_graph=True: record the backward as a Dropout of g
            return Dropout.apply(g, ctx.draws, ctx.threshold, ctx.scale), None, None, None
        return kernel_module(g).apply_dropout(g, ctx.draws, ctx.threshold, ctx.scale), None, None, None


# -- recurrent cells (reference) ------------------------------------------------------------------------

def rnn_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None,
             bias_hh: Tensor | None, nonlinearity: str = "tanh") -> Tensor:
    """h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh).

    >>> import chainrule as cr
    >>> rnn_cell(cr.ones(2, 3), cr.zeros(2, 4), cr.ones(4, 3), cr.ones(4, 4), None, None).shape
    (2, 4)
    """
    pre = linear(x, weight_ih, bias_ih) + linear(h, weight_hh, bias_hh)
    out = pre.tanh() if nonlinearity == "tanh" else pre.relu()
    return out


def lstm_cell(x: Tensor, h: Tensor, c: Tensor, weight_ih: Tensor, weight_hh: Tensor,
              bias_ih: Tensor | None, bias_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    """One LSTM step, gates i, f, g, o: c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c').

    >>> import chainrule as cr
    >>> h, c = lstm_cell(cr.ones(2, 3), cr.zeros(2, 4), cr.zeros(2, 4), cr.ones(16, 3), cr.ones(16, 4), None, None)
    >>> h.shape, c.shape
    ((2, 4), (2, 4))
    """
    gates = linear(x, weight_ih, bias_ih) + linear(h, weight_hh, bias_hh)
    i, f, g, o = split(gates, weight_hh.shape[1], axis=-1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c_new = f * c + i * g
    tanh_c = c_new.tanh()
    return o * tanh_c, c_new


def gru_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None,
             bias_hh: Tensor | None) -> Tensor:
    """One GRU step, gates r, z, n: n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn)), h' = (1 - z) ⊙ n + z ⊙ h.

    >>> import chainrule as cr
    >>> gru_cell(cr.ones(2, 3), cr.zeros(2, 4), cr.ones(12, 3), cr.ones(12, 4), None, None).shape
    (2, 4)
    """
    hidden = weight_hh.shape[1]
    x_r, x_z, x_n = split(linear(x, weight_ih, bias_ih), hidden, axis=-1)
    h_r, h_z, h_n = split(linear(h, weight_hh, bias_hh), hidden, axis=-1)
    r = (x_r + h_r).sigmoid()
    z = (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    return n + z * (h - n)


# -- losses -----------------------------------------------------------------------------------------------

def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a loss computes and accumulates in: float16 widens to float32, so a sum over many rows
    cannot overflow the float16 range (65504) that only the result has to fit."""
    return np.result_type(dtype, np.float32)


def _floating_input(x: Any, what: str, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: {name} must be a Tensor, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{what}: {name} must be floating (float16, float32 or float64), got dtype {x.dtype}; "
                        f"convert it with .astype('float32')")


def _target_array(logits_shape: tuple[int, ...], target: Any, ignore_index: int, what: str) -> np.ndarray:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"{what}: ignore_index must be an integer, got {type(ignore_index).__name__} "
                        f"{ignore_index!r}")
    target = to_host(target.data) if isinstance(target, Tensor) else np.asarray(to_host(target))
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


def _target_on_device(target: np.ndarray, input_: Tensor) -> Any:
    """The checked (host) targets on the input's device, where the loss indexes with them."""
    return target if type(input_.data) is np.ndarray else to_device(target, device_of(input_.data))


def _counted(target: np.ndarray, ignore_index: int) -> tuple[Any, int]:
    """The index of the rows whose target counts (Ellipsis when all do) and how many they are.

    Ignored rows are selected out, never multiplied by 0: their values may be inf or NaN (inf · 0 = NaN)."""
    valid = target != ignore_index
    count = int(valid.sum())
    return (Ellipsis if count == valid.size else np.nonzero(valid)), count


def _reduce(losses: np.ndarray, reduction: str, count: int, dtype: np.dtype) -> np.ndarray:
    """Sum or mean of the counted rows' losses (in the work dtype), cast to the input's dtype."""
    total = losses.sum()
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            total = total / count  # the mean of no targets is nan, as in PyTorch
    with np.errstate(over="ignore"):  # a result beyond float16's range is inf, as PyTorch gives it
        return np.asarray(total, dtype=dtype) if backend_of(total) is NUMPY else total.astype(dtype)


def _row_scale(g: Any, rows: Any, reduction: str, count: int) -> Any:
    """The upstream gradient each counted row's loss receives, shaped to broadcast over the classes."""
    if reduction == "none":
        return g[rows][..., None]
    if reduction == "mean":
        # 1 / count in float32 for float16: a count above 65504 is inf in float16 and would zero the gradient
        # (PyTorch gives 0 there; chainrule does not overflow a count the user did not ask to be float16)
        work = _work_dtype(g.dtype)
        return (g if g.dtype == work else g.astype(work)) / count
    return g


def _place_rows(rows_grad: Any, rows: Any, like: Any) -> Any:
    """The gradient of the whole input: the counted rows' gradients at their places, zeros elsewhere
    (an ignored row's gradient is 0 whatever its values, as it is selected out)."""
    if rows is Ellipsis:
        return rows_grad
    if isinstance(rows_grad, Tensor):
        return Scatter.apply(rows_grad, like.shape, rows)
    out = np.zeros_like(like)  # the input's memory layout, whatever it is
    out[rows] = rows_grad
    return out


class CrossEntropy(Function):
    """Fused log-softmax + negative log-likelihood over the last axis.

    loss_i = logsumexp(z_i) - z_i[t_i]; its gradient is softmax(z_i) - onehot(t_i) (S - 1 at the target).
    Only the counted rows (target != ignore_index) enter the arithmetic; float16 computes in float32.
    """

    @staticmethod
    def forward(ctx, logits, target, reduction, ignore_index):
        rows, count = _counted(target, ignore_index)
        work = _work_dtype(logits.dtype)
        z = logits[rows].astype(work, copy=False)  # [K, C] (or the whole input when every row counts)
        picked_target = target[rows][..., None]
        if z.size:
            shifted = z - z.max(axis=-1, keepdims=True)
        else:  # no counted rows (or no classes): max has no identity, and nothing needs shifting
            shifted = z.copy()
        picked = np.take_along_axis(shifted, picked_target, axis=-1)[..., 0]
        probabilities = np.exp(shifted, out=shifted)
        total = probabilities.sum(axis=-1, keepdims=True)
        probabilities /= total
        losses = np.log(total[..., 0]) - picked  # lse - z_t
        ctx.save_for_backward(logits, probabilities)
        ctx.target, ctx.rows, ctx.reduction, ctx.count = picked_target, rows, reduction, count
        if reduction == "none":
            with np.errstate(over="ignore"):  # a float16 loss beyond 65504 is inf, as PyTorch gives it
                if rows is Ellipsis:
                    return losses.astype(logits.dtype, copy=False)
                full = np.zeros_like(logits, shape=target.shape)   # on the logits' device
                full[rows] = losses
                return full
        return _reduce(losses, reduction, count, logits.dtype)

    @staticmethod
    def backward(ctx, g):
        logits, probabilities = ctx.saved_tensors
        rows, target = ctx.rows, ctx.target
        if ctx.count == 0:  # nothing counted: the gradient is zero (not 0 / 0), as in PyTorch
            return np.zeros_like(logits.data if isinstance(logits, Tensor) else logits), None, None, None
        scale = _row_scale(g, rows, ctx.reduction, ctx.count)
        if isinstance(logits, Tensor):
            # under create_graph the saved softmax would be a constant: recompute it from the logits
            z = logits[rows]
            onehot = np.zeros(z.shape, logits.dtype)
            np.put_along_axis(onehot, target, 1.0, axis=-1)
            rows_grad = (z.softmax(axis=-1) - onehot) * scale
            if rows_grad.dtype != logits.dtype:   # float16: the scale was taken in float32
                rows_grad = rows_grad.astype(logits.dtype)
            return _place_rows(rows_grad, rows, logits), None, None, None
        grad = probabilities.copy(order="K")  # the saved softmax stays intact for a retained graph
        np.put_along_axis(grad, target, np.take_along_axis(grad, target, -1) - 1, -1)
        grad *= scale  # (softmax - onehot) scaled: S - 1 at the target
        return _place_rows(grad.astype(logits.dtype, copy=False), rows, logits), None, None, None


def cross_entropy(logits: Tensor, target: Any, reduction: str = "mean", ignore_index: int = -100) -> Tensor:
    """Cross-entropy of class scores [N, C] or [B, T, C] (classes last) against integer targets.

    Stable for large logits; gradient softmax - onehot. Targets equal to `ignore_index` count for nothing:
    their rows are left out (an ignored row's loss is 0 and its gradient 0, even where its logits are inf
    or NaN), and 'mean' divides by the number of counted targets (no counted target: nan, gradient 0, as
    in PyTorch). float16 logits are computed and summed in float32 and the result cast back, so a
    'mean' over many rows does not overflow. Output: shape target.shape for 'none', else a scalar, in
    the logits' dtype.

    Raises TypeError (targets or ignore_index not integers, logits not a floating Tensor), ValueError (shapes,
    reduction) and IndexError (a target out of range).

    >>> import chainrule as cr
    >>> round(cross_entropy(cr.zeros(2, 4), [1, 3]).item(), 4)   # log 4
    1.3863
    """
    _check_reduction(reduction)
    _floating_input(logits, "cross_entropy", "logits")
    target = _target_on_device(_target_array(logits.shape, target, ignore_index, "cross_entropy"), logits)
    if logits.ndim == 1:  # one sample of C classes: computed as a batch of one
        loss = CrossEntropy.apply(logits.reshape(1, -1), target.reshape(1), reduction, ignore_index)
        return loss.reshape(()) if reduction == "none" else loss
    return CrossEntropy.apply(logits, target, reduction, ignore_index)


class NLLLoss(Function):
    """Negative log-likelihood: loss_i = -x_i[t_i]; its gradient is -onehot(t_i), on the counted rows only."""

    @staticmethod
    def forward(ctx, log_probs, target, reduction, ignore_index):
        rows, count = _counted(target, ignore_index)
        picked_target = target[rows][..., None]
        losses = -np.take_along_axis(log_probs[rows], picked_target, axis=-1)[..., 0]
        ctx.shape, ctx.dtype = log_probs.shape, log_probs.dtype
        ctx.target, ctx.rows, ctx.reduction, ctx.count = picked_target, rows, reduction, count
        if reduction == "none":
            if rows is Ellipsis:
                return losses
            full = np.zeros_like(log_probs, shape=target.shape)   # on the input's device
            full[rows] = losses
            return full
        return _reduce(losses.astype(_work_dtype(log_probs.dtype), copy=False), reduction, count,
                       log_probs.dtype)

    @staticmethod
    def backward(ctx, g):
        if ctx.count == 0:  # nothing counted: the gradient is zero (not 0 / 0), as in PyTorch
            return np.zeros_like(ctx.target, shape=ctx.shape, dtype=ctx.dtype), None, None, None
        rows, target = ctx.rows, ctx.target
        scale = _row_scale(g, rows, ctx.reduction, ctx.count)
        rows_shape = target.shape[:-1] + ctx.shape[-1:]
        minus_onehot = np.zeros_like(target, shape=rows_shape, dtype=ctx.dtype)   # on the targets' device
        np.put_along_axis(minus_onehot, target, -1.0, axis=-1)
        if isinstance(scale, Tensor):  # create_graph: the gradient is linear in g, so this records it
            rows_grad = scale * minus_onehot
            if rows_grad.dtype != ctx.dtype:   # float16: the scale was taken in float32
                rows_grad = rows_grad.astype(ctx.dtype)
        else:
            rows_grad = minus_onehot
            rows_grad *= scale
        return _place_rows(rows_grad, rows, np.empty_like(target, shape=ctx.shape, dtype=ctx.dtype)), None, None, None


def nll_loss(log_probs: Tensor, target: Any, reduction: str = "mean", ignore_index: int = -100) -> Tensor:
    """Negative log-likelihood of log-probabilities [N, C] or [B, T, C] (classes last).

    Ignored targets are left out as in `cross_entropy` (loss 0 and gradient 0 on their rows, whatever their
    values); 'mean' divides by the number of counted targets (none: nan, gradient 0). float16 sums in
    float32. Output: shape target.shape for 'none', else a scalar, in the input's dtype.

    Raises TypeError (targets or ignore_index not integers, input not a floating Tensor), ValueError (shapes,
    reduction) and IndexError (a target out of range).

    >>> import chainrule as cr
    >>> round(nll_loss(cr.log_softmax(cr.zeros(2, 4)), [1, 3]).item(), 4)
    1.3863
    """
    _check_reduction(reduction)
    _floating_input(log_probs, "nll_loss", "log_probs")
    target = _target_on_device(_target_array(log_probs.shape, target, ignore_index, "nll_loss"), log_probs)
    if log_probs.ndim == 1:  # one sample of C classes: computed as a batch of one
        loss = NLLLoss.apply(log_probs.reshape(1, -1), target.reshape(1), reduction, ignore_index)
        return loss.reshape(()) if reduction == "none" else loss
    return NLLLoss.apply(log_probs, target, reduction, ignore_index)


def mse_loss(prediction: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or summed) squared error; shapes must match. Output: prediction's shape for 'none', else a
    scalar, in prediction's dtype. float16 squares and sums in float32 for 'mean' and 'sum' (the result is
    cast back), so an accumulation does not overflow; the mean of no elements is nan, their sum 0.

    Raises ValueError when the shapes differ or the reduction is unknown, TypeError when prediction is not
    a floating Tensor.

    >>> import chainrule as cr
    >>> mse_loss(cr.ones(3), cr.zeros(3)).item()
    1.0
    """
    _check_reduction(reduction)
    _floating_input(prediction, "mse_loss", "prediction")
    target_shape = tuple(getattr(target, "shape", np.shape(target)))
    if target_shape != prediction.shape:
        raise ValueError(f"mse_loss: prediction has shape {prediction.shape} but target has shape {target_shape}")
    if reduction == "none":
        return (prediction - target) ** 2
    dtype, work = prediction.dtype, _work_dtype(prediction.dtype)
    wide = prediction if work == dtype else prediction.astype(work)
    if isinstance(target, Tensor) and target.dtype != work and target.dtype.kind == "f":
        target = target.astype(work)
    total = ((wide - target) ** 2).sum()
    if reduction == "mean":
        # the mean of no elements is nan, as in PyTorch (chainrule's mean refuses an empty axis)
        total = total / prediction.size if prediction.size else total * np.nan
    if work == dtype:
        return total
    with np.errstate(over="ignore"):  # a result beyond float16's range is inf, as PyTorch gives it
        return total.astype(dtype)
