"""Gradient flow through time: how much of a loss's gradient reaches each earlier hidden state.

For a vanilla RNN, dL/dh_{t-1} = W_hhᵀ (δ_t ⊙ tanh'(·)): every step back multiplies by W_hh and by tanh'
(at most 1, near 0 when units saturate), so the norm of dL/dh_t shrinks geometrically when the largest
singular value of W_hh is below 1 (vanishing) and can grow when it is well above 1 (exploding). An LSTM's
cell state is carried by the forget gate instead, so its gradient can travel further. These functions
measure exactly that on a real layer: the norm of dL/dh_t for every step t and layer, the singular values
of each recurrent weight matrix, and the fraction of saturated tanh / sigmoid units.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..autograd import Tensor, grad, observe_nodes

SATURATED_TANH = 0.99        # |tanh(x)| above this: tanh'(x) < 0.02
SATURATED_SIGMOID = 0.01     # σ(x) below this or above 1 - this: σ'(x) < 0.01


@dataclass
class GradientFlow:
    """What `gradient_flow` measured on one recurrent layer."""

    cell: str
    gradient_norms: np.ndarray                  # [layers, T]: mean over the batch of ‖dL/dh_t‖ (forward direction)
    singular_values: dict[str, np.ndarray]      # "W_hh_l0" (whole matrix) and, for gated cells, per gate
    saturation: dict[str, float] = field(default_factory=dict)  # "tanh", "sigmoid": fraction saturated

    @property
    def largest_singular_value(self) -> float:
        """σ_max of layer 0's whole recurrent matrix."""
        return float(self.singular_values["W_hh_l0"][0])

    def decay_per_step(self, layer: int = 0) -> float:
        """Geometric mean ratio ‖dL/dh_{t-1}‖ / ‖dL/dh_t‖ over the sequence (below 1: vanishing)."""
        norms = self.gradient_norms[layer]
        norms = norms[norms > 0]
        if norms.size < 2:
            return float("nan")
        return float(np.exp(np.log(norms[0] / norms[-1]) / (norms.size - 1)))


def singular_values(layer: Any) -> dict[str, np.ndarray]:
    """Singular values of every recurrent weight matrix of an RNN/LSTM/GRU layer (and of each gate's block).

    >>> from chainrule import nn
    >>> values = singular_values(nn.LSTM(3, 4))
    >>> sorted(values)
    ['W_hh_l0', 'W_hh_l0 f', 'W_hh_l0 g', 'W_hh_l0 i', 'W_hh_l0 o']
    """
    gates = {"LSTM": "ifgo", "GRU": "rzn"}.get(layer.mode, "")
    result = {}
    for index in range(layer.num_layers):
        weight = getattr(layer, f"weight_hh_l{index}").data.astype(np.float64)
        result[f"W_hh_l{index}"] = np.linalg.svd(weight, compute_uv=False)
        for position, gate in enumerate(gates):
            block = weight[position * layer.hidden_size:(position + 1) * layer.hidden_size]
            result[f"W_hh_l{index} {gate}"] = np.linalg.svd(block, compute_uv=False)
    return result


def gradient_flow(layer: Any, loss_of_run: Callable[[], Tensor]) -> GradientFlow:
    """Run `loss_of_run()` (a forward pass through `layer` ending in a scalar loss) and measure its gradient flow.

    The layer runs its reference path (the cell equations, one graph node per operation), and every node it
    records is seen through the engine's general forward hook, `observe_nodes`: the layer needs no measuring
    code of its own. Its nodes are recognised by the scopes the reference path opens, `layer <l>` and `t=<t>`:
    the last node of a step's scope computes the state the step hands on, h_t. The function must run the
    layer once, and no other recurrent layer through its reference path.
    dL/dh_t is then the gradient of the loss with respect to each h_t (through both the outputs and the
    recurrence), and the Tanh and Sigmoid nodes give the saturation.

    >>> import chainrule as cr
    >>> from chainrule import nn
    >>> rnn = nn.RNN(3, 8)
    >>> x = cr.randn(2, 10, 3)
    >>> flow = gradient_flow(rnn, lambda: rnn(x)[0][:, -1].sum())
    >>> flow.gradient_norms.shape
    (1, 10)
    """
    states: dict[tuple[int, int], Tensor] = {}   # (layer, t) -> h_t of the forward direction
    activations: dict[str, list[np.ndarray]] = {"Tanh": [], "Sigmoid": []}
    current: list[Any] = [None]                   # the step whose nodes are arriving
    finished: set[tuple[int, int]] = set()

    def observe(node: Any, outputs: tuple) -> None:
        scope = node.scope
        if len(scope) < 2 or not scope[-2].startswith("layer ") or not scope[-1].startswith("t="):
            return
        if node.name in activations:
            activations[node.name].append(outputs[0].data)
        level = scope[-2].split(" ")[1:]
        if len(level) != 1:   # "layer 1 reverse": only the forward direction's states are measured
            return
        key = int(level[0]), int(scope[-1][2:])
        if key != current[0]:
            if key in finished:
                raise ValueError(f"gradient_flow: step {key[1]} of layer {key[0]} ran twice; the function "
                                 "must run the layer once, and no other recurrent layer through its "
                                 "reference path")
            if current[0] is not None:
                finished.add(current[0])
            current[0] = key
        states[key] = outputs[0]

    implementation = layer.implementation
    layer.implementation = "reference"
    try:
        with observe_nodes(observe):
            loss = loss_of_run()
    finally:
        layer.implementation = implementation
    if not isinstance(loss, Tensor) or loss.size != 1:
        raise ValueError("gradient_flow: the function must return a scalar loss Tensor")
    if not states:
        raise ValueError("gradient_flow: the function did not run the layer")
    steps = 1 + max(t for _, t in states)
    keys = sorted(states)
    grads = grad(loss, [states[key] for key in keys], allow_unused=True)
    norms = np.zeros((layer.num_layers, steps))
    for (level, t), g in zip(keys, grads):
        if g is not None:
            norms[level, t] = float(np.linalg.norm(g.data.reshape(-1, g.shape[-1]), axis=-1).mean())
    saturation = {}
    if activations["Tanh"]:
        values = np.concatenate([np.abs(a).ravel() for a in activations["Tanh"]])
        saturation["tanh"] = float(np.mean(values > SATURATED_TANH))
    if activations["Sigmoid"]:
        values = np.concatenate([a.ravel() for a in activations["Sigmoid"]])
        saturation["sigmoid"] = float(np.mean((values < SATURATED_SIGMOID) | (values > 1 - SATURATED_SIGMOID)))
    return GradientFlow(layer.mode.split("_")[0].lower(), norms, singular_values(layer), saturation)


def scale_recurrent_weights(layer: Any, largest_singular_value: float) -> None:
    """Rescale each W_hh of the layer so its largest singular value is the given one (in place).

    >>> from chainrule import nn
    >>> rnn = nn.RNN(3, 8)
    >>> scale_recurrent_weights(rnn, 2.0)
    >>> round(float(singular_values(rnn)["W_hh_l0"][0]), 6)
    2.0
    """
    if largest_singular_value <= 0:
        raise ValueError(f"the largest singular value must be positive, got {largest_singular_value}")
    for index in range(layer.num_layers):
        weight = getattr(layer, f"weight_hh_l{index}")
        current = np.linalg.svd(weight.data.astype(np.float64), compute_uv=False)[0]
        weight.data *= weight.data.dtype.type(largest_singular_value / current)


def format_table(flows: dict[str, GradientFlow], steps_back: list[int] | None = None) -> str:
    """A small text table: ‖dL/dh_t‖ (layer 0) at a few distances from the end of the sequence.

    >>> import chainrule as cr
    >>> from chainrule import nn
    >>> rnn = nn.RNN(3, 8); x = cr.randn(2, 5, 3)
    >>> print(format_table({"rnn": gradient_flow(rnn, lambda: rnn(x)[0][:, -1].sum())}, [0, 4]).splitlines()[0])
    steps back           rnn
    """
    length = min(flow.gradient_norms.shape[1] for flow in flows.values())
    if steps_back is None:
        steps_back = sorted({s for s in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500) if s < length} | {length - 1})
    # each column as wide as its name plus two spaces (at least 14), so long names never run together
    widths = [max(14, len(name) + 2) for name in flows]
    lines = [f"{'steps back':<12}" + "".join(f"{name:>{w}}" for name, w in zip(flows, widths))]
    for back in steps_back:
        row = f"{back:<12}"
        for flow, w in zip(flows.values(), widths):
            norms = flow.gradient_norms[0]
            row += f"{norms[norms.size - 1 - back]:>{w}.3e}"
        lines.append(row)
    lines.append(f"{'σ_max(W_hh)':<12}" + "".join(f"{flow.largest_singular_value:>{w}.3f}"
                                                  for flow, w in zip(flows.values(), widths)))
    lines.append(f"{'decay/step':<12}" + "".join(f"{flow.decay_per_step():>{w}.3f}"
                                                 for flow, w in zip(flows.values(), widths)))
    for kind in ("tanh", "sigmoid"):
        if any(kind in flow.saturation for flow in flows.values()):
            lines.append(f"{kind + ' sat.':<12}" + "".join(
                f"{flow.saturation[kind]:>{w}.1%}" if kind in flow.saturation else f"{'-':>{w}}"
                for flow, w in zip(flows.values(), widths)))
    return "\n".join(lines)


def plot(flows: dict[str, GradientFlow], path: str, title: str = "Gradient flow through time") -> str:
    """PNG: ‖dL/dh_t‖ against steps back in time (log scale), one line per entry, σ_max(W_hh) in the legend.

    Returns the path written: `path`, with ".png" added when it has no extension (as matplotlib does)."""
    import os

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.8))
    for name, flow in flows.items():
        for layer in range(flow.gradient_norms.shape[0]):
            norms = flow.gradient_norms[layer][::-1]  # index 0: the last step
            label = f"{name} (σ_max(W_hh) = {float(flow.singular_values[f'W_hh_l{layer}'][0]):.2f})"
            if flow.gradient_norms.shape[0] > 1:
                label = f"{name} layer {layer} (σ_max(W_hh) = {float(flow.singular_values[f'W_hh_l{layer}'][0]):.2f})"
            positive = norms > 0
            axes.semilogy(np.arange(norms.size)[positive], norms[positive], label=label)
    axes.set_xlabel("steps back in time from the loss")
    axes.set_ylabel("‖dL/dh_t‖ (mean over the batch)")
    axes.set_title(title)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8)
    figure.tight_layout()
    if not os.path.splitext(str(path))[1]:
        path = f"{path}.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
