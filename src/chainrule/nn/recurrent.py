"""Recurrent cells and sequence layers: RNN, LSTM, GRU, with PyTorch's parameter names, shapes and gates.

Sequence layers have two implementations that tests keep equal: "fused" (default: one graph node per
layer and direction, hand-written BPTT, see `fused.py`) and "reference" (the cell equations of
`functional.py`, one time step at a time, differentiated by the generic engine).
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, NamedTuple

import numpy as np

from .._kernels.device import device_of, to_device, to_host
from ..autograd.functional import concatenate, stack, where
from ..autograd.function import scope
from ..autograd.tensor import Tensor
from . import functional as F
from .fused import FusedGRU, FusedLSTM, FusedRNN
from .layers import uniform_parameter
from .module import Module, Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}
_IMPLEMENTATIONS = ("fused", "reference")


def _check_size(name: str, value: Any) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_dtype(name: str, what: str, dtype: Any, expected: Any) -> None:
    """Refuse a dtype other than the parameters' (ValueError, as PyTorch; NumPy would silently promote)."""
    if np.dtype(dtype) != np.dtype(expected):
        raise ValueError(f"{name}: {what} dtype ({np.dtype(dtype)}) does not match the parameters' dtype "
                         f"({np.dtype(expected)}): convert the {what} (.astype) or the layer (.to(dtype))")


# -- cells ------------------------------------------------------------------------------------------------

class _CellBase(Module):
    mode = ""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        _check_size("input_size", input_size)
        _check_size("hidden_size", hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size
        gates = _GATES[self.mode] * hidden_size
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = uniform_parameter((gates, input_size), bound)
        self.weight_hh = uniform_parameter((gates, hidden_size), bound)
        self.bias_ih = uniform_parameter((gates,), bound) if bias else None
        self.bias_hh = uniform_parameter((gates,), bound) if bias else None

    def _prepare(self, x: Tensor, state: Any) -> tuple[Tensor, bool]:
        name = type(self).__name__
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: expected input of shape [batch, {self.input_size}] or [{self.input_size}], "
                             f"got {x.shape}")
        _check_dtype(name, "input", x.dtype, self.weight_hh.dtype)
        batched = x.ndim == 2
        return (x if batched else x.unsqueeze(0)), batched

    def _state(self, state: Any, batch: int, dtype: Any, batched: bool, what: str) -> Tensor:
        if state is None:
            return Tensor(np.zeros_like(self.weight_hh.data, shape=(batch, self.hidden_size), dtype=dtype))
        expected = (batch, self.hidden_size) if batched else (self.hidden_size,)
        if state.shape != expected:
            raise ValueError(f"{type(self).__name__}: expected {what} of shape {list(expected)}, "
                             f"got {list(state.shape)}")
        _check_dtype(type(self).__name__, what, state.dtype, dtype)
        return state if batched else state.unsqueeze(0)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}"


class RNNCell(_CellBase):
    """One step of an Elman RNN: h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) (or relu).

    >>> import chainrule as cr
    >>> RNNCell(3, 5)(cr.ones(2, 3)).shape
    (2, 5)
    """

    mode = "RNN_TANH"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        x, batched = self._prepare(x, h)
        h = self._state(h, x.shape[0], x.dtype, batched, "h")
        out = F.rnn_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.nonlinearity)
        return out if batched else out.squeeze(0)


class LSTMCell(_CellBase):
    """One LSTM step; returns (h', c').

    >>> import chainrule as cr
    >>> h, c = LSTMCell(3, 5)(cr.ones(2, 3))
    >>> h.shape, c.shape
    ((2, 5), (2, 5))
    """

    mode = "LSTM"

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        x, batched = self._prepare(x, state)
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != 2
                                  or any(s is None for s in state)):
            # as the LSTM layer (and PyTorch's LSTMCell): half a state is refused, never completed with zeros
            raise TypeError("LSTMCell: the state must be a tuple (h, c) of two Tensors (or None for zeros of "
                            f"both), got {state!r}")
        h0, c0 = state if state is not None else (None, None)
        h = self._state(h0, x.shape[0], x.dtype, batched, "h")
        c = self._state(c0, x.shape[0], x.dtype, batched, "c")
        h, c = F.lstm_cell(x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(_CellBase):
    """One GRU step.

    >>> import chainrule as cr
    >>> GRUCell(3, 5)(cr.ones(2, 3)).shape
    (2, 5)
    """

    mode = "GRU"

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        x, batched = self._prepare(x, h)
        h = self._state(h, x.shape[0], x.dtype, batched, "h")
        out = F.gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return out if batched else out.squeeze(0)


# -- sequence layers -----------------------------------------------------------------------------------------

def _lengths_mask(lengths: Any, batch: int, steps: int) -> np.ndarray | None:
    """[T, B, 1] boolean mask of the real (non-padding) steps, or None when every sequence is full.

    Lengths run from 1 to T: a sequence of length 0 is refused, as PyTorch's pack_padded_sequence refuses
    it (it would have no last step for h_n). A length past T, a fractional or boolean one is refused too
    (PyTorch truncates fractions to integers).
    """
    if lengths is None:
        return None
    values = to_host(lengths.data) if isinstance(lengths, Tensor) else np.asarray(lengths)
    if values.ndim != 1 or values.shape[0] != batch:
        raise ValueError(f"lengths must be a vector with one length per sequence ({batch}), got shape {values.shape}")
    if values.size == 0:   # an empty batch: np.asarray([]) is float64, but there is no length to check
        return None
    if values.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {values.dtype}: pass e.g. np.array(lengths, int)")
    if values.min() < 1 or values.max() > steps:
        raise ValueError(f"every length must be between 1 and the sequence length {steps} (a length of 0 is "
                         f"refused, as by PyTorch's packing), got min {values.min()} and max {values.max()}")
    if (values == steps).all():
        return None
    return (np.arange(steps)[:, None] < values[None, :])[:, :, None]


def _rows(table: Tensor, index: np.ndarray) -> Tensor:
    """table[index] for integer ids; with no ids, an empty slice of the table (its gradient a zero array of
    the table's shape) shaped as the lookup would be, since the engine's row scatter needs at least one row."""
    if index.size:
        return table[index]
    return table[0:0].reshape(*index.shape, *table.shape[1:])


class Projection(NamedTuple):
    """A direction's input projections, as the fused node takes them: `source` is [T, B, G] (x W_ihᵀ), or with
    `tokens` ([T, B] ids) a [vocabulary, G] table whose rows the node looks up; `bias` [G] or None is added by
    the node."""

    source: Tensor
    tokens: np.ndarray | None
    bias: Tensor | None


class _RecurrentBase(Module):
    mode = ""
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    implementation: str
    weight_hh_l0: Parameter  # the first layer's recurrent weight (every layer's are set in __init__ by name)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False,
                 implementation: str = "fused") -> None:
        super().__init__()
        _check_size("input_size", input_size)
        _check_size("hidden_size", hidden_size)
        _check_size("num_layers", num_layers)
        if (not isinstance(dropout, numbers.Real) or isinstance(dropout, bool)
                or not 0.0 <= dropout <= 1.0):
            raise ValueError(f"dropout must be a number in [0, 1] (the probability of zeroing an element "
                             f"between layers), got {dropout!r}")
        if dropout > 0 and num_layers == 1:   # PyTorch warns the same way
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                          UserWarning, stacklevel=2)
        if implementation not in _IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {_IMPLEMENTATIONS}, got {implementation!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional, self.implementation = bidirectional, implementation
        gates = _GATES[self.mode] * hidden_size
        bound = 1.0 / math.sqrt(hidden_size)
        directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                setattr(self, f"weight_ih_l{layer}{suffix}", uniform_parameter((gates, layer_input), bound))
                setattr(self, f"weight_hh_l{layer}{suffix}", uniform_parameter((gates, hidden_size), bound))
                if bias:
                    setattr(self, f"bias_ih_l{layer}{suffix}", uniform_parameter((gates,), bound))
                    setattr(self, f"bias_hh_l{layer}{suffix}", uniform_parameter((gates,), bound))

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _weights(self, layer: int, suffix: str) -> tuple:
        get = self.__dict__.get
        return (get(f"weight_ih_l{layer}{suffix}"), get(f"weight_hh_l{layer}{suffix}"),
                get(f"bias_ih_l{layer}{suffix}"), get(f"bias_hh_l{layer}{suffix}"))

    def _check_input(self, x: Tensor) -> tuple[Tensor, bool]:
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(x).__name__}")
        layout = "[batch, seq, features]" if self.batch_first else "[seq, batch, features]"
        if x.ndim not in (2, 3):
            raise ValueError(f"{name}: expected a 3-D input {layout} (or 2-D [seq, features] for one "
                             f"sequence), got shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: expected input_size {self.input_size} in the last axis of {layout}, "
                             f"got shape {x.shape}")
        if x.data.dtype.kind != "f":
            raise TypeError(f"{name}: input must be floating point, got {x.dtype}")
        _check_dtype(name, "input", x.dtype, self.weight_hh_l0.dtype)
        batched = x.ndim == 3
        if not batched:
            return x.unsqueeze(1), False                  # [T, 1, I]
        return (x.swapaxes(0, 1) if self.batch_first else x), True

    def _initial_state(self, state: Any, batch: int, dtype: Any, batched: bool, what: str) -> list[Any]:
        """Per (layer, direction): a [B, H] Tensor slice of the given state, or a zero array."""
        count = self.num_layers * self.num_directions
        expected = (count, batch, self.hidden_size) if batched else (count, self.hidden_size)
        if state is None:
            zeros = np.zeros_like(self.weight_hh_l0.data, shape=(batch, self.hidden_size), dtype=dtype)  # its device
            return [zeros] * count
        if not isinstance(state, Tensor):
            raise TypeError(f"{type(self).__name__}: {what} must be a Tensor, got {type(state).__name__}")
        if state.shape != expected:
            raise ValueError(f"{type(self).__name__}: expected {what} of shape {list(expected)} "
                             f"([num_layers * num_directions, batch, hidden_size]), got {list(state.shape)}")
        _check_dtype(type(self).__name__, what, state.dtype, dtype)
        if not batched:
            state = state.unsqueeze(1)
        if not state.requires_grad:
            return [state.data[k].astype(dtype, copy=False) for k in range(count)]
        return [state[k] for k in range(count)]

    def _run_direction(self, x: Tensor, states: list[Any], weights: tuple, mask: np.ndarray | None,
                       reverse: bool, projected: Projection | None = None) -> tuple:
        """`projected`: None (computed here from x), or layer 0's `Projection` from `_token_projections`. The
        bias is added by the fused node (float16: in float32)."""
        if self.implementation == "reference":
            return self._reference(x, states, weights, mask, reverse)
        if projected is None:
            steps, batch, features = x.shape   # the gate width spelt out: -1 is ambiguous when B = 0
            source = (x.reshape(steps * batch, features) @ weights[0].mT).reshape(steps, batch, weights[0].shape[0])
            projected = Projection(source, None, self._projection_bias(weights))
        return self._fused(projected.source, states, weights, mask, reverse, projected.bias, projected.tokens)

    def _projection_bias(self, weights: tuple) -> Tensor | None:
        """The bias the fused node adds to x W_ihᵀ: b_ih + b_hh (GRU: b_ih; its b_hn sits inside r ⊙ (·))."""
        bias_ih, bias_hh = weights[2], weights[3]
        if bias_ih is None:
            return None
        return bias_ih if self.mode == "GRU" else bias_ih + bias_hh

    def _reference(self, x: Tensor, states: list[Any], weights: tuple, mask: np.ndarray | None,
                   reverse: bool) -> tuple:
        """The cell equations one step at a time, differentiated by the generic engine. Each step's nodes are
        recorded in the scope `t=<t>` (inside the `layer <l>` one `forward` opens) and the step computes its
        new hidden state last: what a drawing's `collapse="time"` and `chainrule.insight.gradient_flow` read."""
        steps = x.shape[0]
        states = [s if isinstance(s, Tensor) else Tensor(s) for s in states]
        outputs: list[Any] = [None] * steps
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            with scope(f"t={t}"):
                new_states = self._cell_step(x[t], states, weights)
            if mask is None:
                states = new_states
                outputs[t] = new_states[0]
            else:
                keep = mask[t]   # selected, not multiplied: a padded step's state may be inf
                outputs[t] = where(keep, new_states[0], x.dtype.type(0))   # a scalar: fits any device
                states = [where(keep, new, old) for new, old in zip(new_states, states)]
        return (stack(outputs), *states)

    def _cell_step(self, x_t: Tensor, states: list[Tensor], weights: tuple) -> list[Tensor]:
        raise NotImplementedError

    def _fused(self, projected: Tensor, states: list[Any], weights: tuple, mask: np.ndarray | None,
               reverse: bool, bias: Tensor | None, tokens: np.ndarray | None) -> tuple:
        """The fused node: `projected` is [T, B, G], or with `tokens` ([T, B] ids) a [vocabulary, G] table."""
        raise NotImplementedError

    def _forward(self, x: Tensor, states: Any, lengths: Any, state_names: tuple[str, ...],
                 first_projections: list[Projection | None] | None = None) -> tuple:
        if first_projections is None:
            x, batched = self._check_input(x)
            (steps, batch), dtype = x.shape[:2], x.dtype
        else:
            first: Any = first_projections[0]  # the first layer's projection is always there
            batched, dtype = True, first.source.dtype
            steps, batch = first.tokens.shape if first.tokens is not None else first.source.shape[:2]
        if steps == 0:   # as PyTorch: there would be no last step for h_n
            raise ValueError(f"{type(self).__name__}: expected a sequence length larger than 0, got an input "
                             f"with no time steps")
        mask = _lengths_mask(lengths, batch, steps)
        if mask is not None and type(self.weight_hh_l0.data) is not np.ndarray:  # on the weights' device
            mask = to_device(mask, device_of(self.weight_hh_l0.data))
        if mask is not None and x is not None:
            # padded inputs are replaced by 0 (a select), so an inf or NaN there reaches no real step's value
            # or gradient (dW_ih = Σ xᵀ δ would take NaN · 0 from it)
            x = where(mask, x, np.dtype(dtype).type(0))
        initial = [self._initial_state(state, batch, dtype, batched, name)
                   for state, name in zip(states, state_names)]
        finals: list[list[Tensor]] = [[] for _ in state_names]
        layer_input = x
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                layer_input = F.dropout(layer_input, self.dropout, True)
            direction_outputs = []
            for direction, suffix in enumerate(("", "_reverse")[:self.num_directions]):
                index = layer * self.num_directions + direction
                projected = None
                if layer == 0 and first_projections:  # handed over, so it is freed once the layer has run
                    projected, first_projections[direction] = first_projections[direction], None
                with scope(f"layer {layer}{' reverse' if direction else ''}"):
                    result = self._run_direction(layer_input, [s[index] for s in initial],
                                                 self._weights(layer, suffix), mask, direction == 1, projected)
                projected = None
                direction_outputs.append(result[0])
                for k, final in enumerate(result[1:]):
                    finals[k].append(final)
            layer_input = (direction_outputs[0] if len(direction_outputs) == 1
                           else concatenate(direction_outputs, axis=-1))
        output = layer_input
        final_states = [stack(f) for f in finals] if len(finals[0]) > 1 else [f[0].unsqueeze(0) for f in finals]
        if batched:
            output = output.swapaxes(0, 1) if self.batch_first else output
        else:
            output = output.squeeze(1)
            final_states = [f.squeeze(1) for f in final_states]
        return output, final_states

    state_names: tuple[str, ...] = ("h0",)

    def _split_state(self, state: Any) -> tuple:
        return (state,)

    def _join_state(self, finals: list[Tensor]) -> Any:
        return finals[0]

    def forward(self, x: Tensor, state: Any = None, lengths: Any = None) -> tuple[Tensor, Any]:
        output, finals = self._forward(x, self._split_state(state), lengths, self.state_names)
        return output, self._join_state(finals)

    def forward_tokens(self, ids: Any, embedding: Tensor | None = None, state: Any = None,
                       lengths: Any = None) -> tuple[Tensor, Any]:
        """`forward(embedding[ids])` (one-hot vectors when `embedding` is None), computed by table lookup.

        ids: [batch, seq] integers (TypeError otherwise; IndexError out of range); embedding: [rows,
        input_size] of the parameters' dtype (ValueError otherwise, as `forward` refuses such an input).
        Only the rows looked up at real (non-padded) steps enter any product, so an inf or NaN in a row that
        is never used, or used only past `lengths`, reaches no value or gradient (as F.embedding then the
        layer on packed sequences in PyTorch).

        >>> import chainrule as cr, numpy as np
        >>> LSTM(5, 3).forward_tokens(np.array([[0, 4, 2]]))[0].shape
        (1, 3, 3)
        """
        time_major, projections = self._token_projections(ids, embedding, lengths)
        if projections is None:
            return self.forward(self._token_inputs(time_major, embedding), state, lengths)
        no_input: Any = None   # with the projections given, _forward does not read x
        output, finals = self._forward(no_input, self._split_state(state), lengths, self.state_names, projections)
        return output, self._join_state(finals)

    def _token_projections(self, ids: np.ndarray, embedding: Tensor | None,
                           lengths: Any = None) -> tuple[np.ndarray, list[Projection | None] | None]:
        """Layer 0's input projections for token ids, as lookups into a [vocabulary, gates] table.

        x W_ihᵀ + b with x = E[ids] equals (E W_ihᵀ + b)[ids] (one-hot input: W_ihᵀ[ids] + b), so the
        T·B-row matrix products of the projection, of dx and of dW_ih shrink to vocabulary-row ones. Per
        direction a `Projection`: (table, ids, b), the fused node looking the rows up (and summing their gradients
        per token, in float32 for float16); or, for fewer ids than rows, ([T, B, G] projections, None, b).
        """
        ids = to_host(ids.data) if isinstance(ids, Tensor) else np.asarray(ids)
        name = type(self).__name__
        if ids.dtype.kind not in "iu" or ids.ndim != 2:
            raise TypeError(f"{name}.forward_tokens: expected a 2-D integer array of token ids, got "
                            f"{ids.dtype} of shape {ids.shape}")
        rows = embedding.shape[0] if embedding is not None else self.input_size
        if embedding is not None and embedding.shape[1:] != (self.input_size,):
            raise ValueError(f"{name}.forward_tokens: the embedding must have {self.input_size} columns, "
                             f"got shape {embedding.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= rows):
            raise IndexError(f"{name}.forward_tokens: token id {int(ids.max() if ids.max() >= rows else ids.min())} "
                             f"is out of range for {rows} rows")
        if embedding is not None:
            if not isinstance(embedding, Tensor):
                raise TypeError(f"{name}.forward_tokens: the embedding must be a Tensor, got "
                                f"{type(embedding).__name__}")
            _check_dtype(f"{name}.forward_tokens", "embedding", embedding.dtype, self.weight_hh_l0.dtype)
        time_major = ids.T if self.batch_first else ids
        if self.implementation == "reference":
            return time_major, None
        looked_up = time_major
        mask = _lengths_mask(lengths, time_major.shape[1], time_major.shape[0]) if time_major.shape[0] else None
        if mask is not None:
            # a padded step looks up its sequence's first id instead, so a row used only there (which may
            # hold inf) enters no product: dW_ih = Eᵀ dTable would take inf · 0 = NaN from it
            looked_up = np.where(mask[:, :, 0], time_major, time_major[:1])
        projections: list[Projection | None] = []
        used: Any
        if embedding is None:
            used, tokens = None, looked_up
            use_table = ids.size > rows  # else projecting the few looked-up rows is cheaper than the table
        else:
            # only the rows looked up enter E W_ihᵀ (selected): an unused row holding inf or NaN would
            # make dW_ih = E_allᵀ dTable take inf · 0 = NaN from its zero gradient row
            used, tokens = np.unique(looked_up, return_inverse=True)
            tokens = tokens.reshape(looked_up.shape)
            use_table = ids.size > used.size
        for suffix in ("", "_reverse")[:self.num_directions]:
            weights = self._weights(0, suffix)
            bias = self._projection_bias(weights)
            if use_table:
                table = weights[0].mT if embedding is None else _rows(embedding, used) @ weights[0].mT
                projections.append(Projection(table, tokens, bias))
            else:
                projected = (_rows(weights[0].mT, looked_up) if embedding is None
                             else _rows(embedding, looked_up) @ weights[0].mT)
                projections.append(Projection(projected, None, bias))
        return time_major, projections

    def _token_inputs(self, time_major: np.ndarray, embedding: Tensor | None) -> Tensor:
        x = _rows(embedding, time_major) if embedding is not None else Tensor(
            np.eye(self.input_size, dtype=self.weight_hh_l0.dtype)[time_major])
        return x.swapaxes(0, 1) if self.batch_first else x

    def extra_repr(self) -> str:
        extras = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            extras += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", True), ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, name) != default:
                extras += f", {name}={getattr(self, name)}"
        return extras + (f", implementation='{self.implementation}'" if self.implementation != "fused" else "")


class RNN(_RecurrentBase):
    """Elman RNN over [batch, seq, features] (batch_first=True by default); returns (output, h_n).

    output: [batch, seq, num_directions * hidden]; h_n: [num_layers * num_directions, batch, hidden].
    `lengths` (one per sequence) makes the steps past each sequence's end padding: they leave the state
    unchanged, give output 0 and receive no gradient; h_n is each sequence's state at its own last step.
    Padding is selected away, so an inf or NaN in a padded input, or in the gradient reaching a padded output,
    touches no real step (as in PyTorch's packed sequences).

    Edges, as PyTorch: a batch of 0 gives empty outputs and zero parameter gradients; a sequence of 0 steps
    raises ValueError; `dropout` (applied between layers, in training) must be a number in [0, 1] (else
    ValueError) and warns (UserWarning) with num_layers = 1, where it does nothing; the input and the initial
    state must have the parameters' dtype (else ValueError; `.to(dtype)` converts the layer). Lengths must be
    integers from 1 to seq (TypeError, ValueError): 0 is refused as PyTorch's packing refuses it; a fraction
    is refused where PyTorch truncates it. float16 layers keep float16 values and gradients, but the fused
    implementation computes the recurrence in float32 and rounds once (PyTorch rounds every step), so no sum
    over steps (dW_hh = Σ_t δ_tᵀ h_{t-1}) is taken in float16.

    >>> import chainrule as cr
    >>> output, h_n = RNN(3, 5, num_layers=2)(cr.ones(4, 7, 3))
    >>> output.shape, h_n.shape
    ((4, 7, 5), (2, 4, 5))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False,
                 implementation: str = "fused") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         implementation)
        self.nonlinearity = nonlinearity

    def _cell_step(self, x_t, states, weights):
        return [F.rnn_cell(x_t, states[0], *weights, self.nonlinearity)]

    def _fused(self, projected, states, weights, mask, reverse, bias, tokens):
        return FusedRNN.apply(projected, states[0], weights[1], bias, mask, reverse, self.nonlinearity,
                              tokens=tokens)


class LSTM(_RecurrentBase):
    """LSTM over [batch, seq, features]; returns (output, (h_n, c_n)). See `RNN` for shapes and lengths.

    >>> import chainrule as cr
    >>> output, (h_n, c_n) = LSTM(3, 5)(cr.ones(4, 7, 3))
    >>> output.shape, h_n.shape, c_n.shape
    ((4, 7, 5), (1, 4, 5), (1, 4, 5))
    """

    mode = "LSTM"

    state_names = ("h0", "c0")

    def _split_state(self, state: Any) -> tuple:
        if state is None:
            return (None, None)
        if not isinstance(state, (tuple, list)) or len(state) != 2 or any(s is None for s in state):
            raise TypeError("LSTM: the initial state must be a tuple (h0, c0) of two Tensors (or None for "
                            f"zeros of both), got {state!r}")
        return tuple(state)

    def _join_state(self, finals: list[Tensor]) -> Any:
        return tuple(finals)

    def _cell_step(self, x_t, states, weights):
        return list(F.lstm_cell(x_t, states[0], states[1], *weights))

    def _fused(self, projected, states, weights, mask, reverse, bias, tokens):
        return FusedLSTM.apply(projected, states[0], states[1], weights[1], bias, mask, reverse, tokens=tokens)


class GRU(_RecurrentBase):
    """GRU over [batch, seq, features]; returns (output, h_n). See `RNN` for shapes and lengths.

    >>> import chainrule as cr
    >>> output, h_n = GRU(3, 5, bidirectional=True)(cr.ones(4, 7, 3))
    >>> output.shape, h_n.shape
    ((4, 7, 10), (2, 4, 5))
    """

    mode = "GRU"

    def _cell_step(self, x_t, states, weights):
        return [F.gru_cell(x_t, states[0], *weights)]

    def _fused(self, projected, states, weights, mask, reverse, bias, tokens):
        return FusedGRU.apply(projected, states[0], weights[1], weights[3], bias, mask, reverse, tokens=tokens)
