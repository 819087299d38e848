"""Graph nodes: `Function`, the grad-mode switches and anomaly detection.

A `Function` subclass holds one operation: a static `forward` that computes on NumPy arrays and a static
`backward` that turns the gradient of each output (upstream) into the gradient of each input
(downstream = upstream × local). Calling `.apply(...)` on Tensors runs `forward` and, when any input
requires a gradient and grad mode is on, records the call as a node of the graph: the instance itself is
the node and the `ctx` that both methods receive.

`backward` is written once and runs in two modes. Normally it receives NumPy arrays and
`ctx.saved_tensors` gives back the arrays saved in `forward`. Under `chainrule.grad(...,
create_graph=True)` it receives Tensors, and saved inputs and outputs come back as the graph's own
Tensors, so the same code builds a differentiable graph of the gradient (second derivatives for free).
"""
from __future__ import annotations

import functools
import os
import sys
import traceback
from typing import Any, Callable, TypeVar

import numpy as np

from .._kernels.device import NUMPY, backend_of, check_same_device

_F = TypeVar("_F", bound=Callable[..., Any])
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the chainrule package


class _Modes:
    grad_enabled = True      # are operations recorded?
    tensor_backward = False  # is a backward running with create_graph=True?
    anomaly = False          # record creation sites and check gradients for NaN/inf?
    retain_graph = False     # will the running backward keep the graph (so saved arrays must stay intact)?
    scope: tuple[str, ...] = ()  # names of the enclosing `scope` blocks, recorded on new nodes
    observers: tuple[Callable[[Function, tuple], None], ...] = ()  # see `observe_nodes`
    kept_gradient_size = 6   # backward() keeps, on each node, the gradients of at most this many elements


class _ModeSwitch:
    """Context manager and decorator that sets one mode flag and restores it afterwards."""

    _flag = ""
    _value: Any = False

    def __enter__(self) -> None:
        self._previous = getattr(_Modes, self._flag)
        setattr(_Modes, self._flag, self._value)

    def __exit__(self, *exc: object) -> None:
        setattr(_Modes, self._flag, self._previous)

    def __call__(self, function: _F) -> _F:
        switch = type(self)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with switch():
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class no_grad(_ModeSwitch):
    """Stop recording operations, as `torch.no_grad`.

    >>> import chainrule as cr
    >>> x = cr.tensor([1.0], requires_grad=True)
    >>> with cr.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """

    _flag, _value = "grad_enabled", False


class enable_grad(_ModeSwitch):
    """Record operations again inside a `no_grad` block (also a decorator).

    >>> import chainrule as cr
    >>> x = cr.tensor([1.0], requires_grad=True)
    >>> with cr.no_grad(), cr.enable_grad():
    ...     (x * 2).requires_grad
    True
    """

    _flag, _value = "grad_enabled", True


class detect_anomaly(_ModeSwitch):
    """Check every gradient for NaN/inf and name the op (and where it was created) that produced it.

    >>> import chainrule as cr
    >>> x = cr.tensor([0.0], requires_grad=True)
    >>> with cr.detect_anomaly():
    ...     y = x.sqrt()
    ...     y.backward(cr.ones(1))   # doctest: +SKIP
    Traceback (most recent call last):
    FloatingPointError: ... Pow ... created at ... y = x.sqrt()
    """

    _flag, _value = "anomaly", True


class keep_gradients(_ModeSwitch):
    """Keep every gradient that a `backward()` inside the block sends along the graph's edges, whatever its
    size, so that a drawing made after the backward shows them all (`chainrule.insight.draw_graph`).

    Outside the block a backward keeps, on each node, only the gradients of at most
    `KEPT_GRADIENT_SIZE` elements (the ones a drawing writes out in full); larger ones would hold memory of
    the size of the whole backward pass until the graph is freed.

    >>> import chainrule as cr
    >>> x = cr.ones(10, requires_grad=True)
    >>> with cr.autograd.keep_gradients():
    ...     y = (x * 2).sum()
    ...     y.backward()
    >>> y.grad_fn.inputs[0].grad_fn.downstream_grads[0].shape
    (10,)
    """

    _flag, _value = "kept_gradient_size", sys.maxsize

    def __init__(self, max_size: int = sys.maxsize) -> None:
        """`max_size`: keep the gradients of at most this many elements (-1: none, the backward of before)."""
        if isinstance(max_size, bool) or not isinstance(max_size, int):
            raise TypeError(f"keep_gradients: max_size must be an integer (-1 keeps none), got {max_size!r}")
        self._value = max_size


class scope:
    """Name the graph nodes created inside the block (nested names form a path), so a drawing can group or
    collapse them, by module or by time step. Modules open one named after their class.

    >>> import chainrule as cr
    >>> x = cr.ones(2, requires_grad=True)
    >>> with cr.scope("encoder"), cr.scope("t=0"):
    ...     y = x * 2
    >>> y.grad_fn.scope
    ('encoder', 't=0')
    """

    def __init__(self, name: str) -> None:
        self.name = str(name)

    def __enter__(self) -> None:
        self._previous = _Modes.scope
        _Modes.scope = self._previous + (self.name,)

    def __exit__(self, *exc: object) -> None:
        _Modes.scope = self._previous


class observe_nodes:
    """Call `observer(node, outputs)` for every graph node recorded inside the block: the `Function` node
    (with its `name` and `scope`) and the tuple of Tensors it produced. A general forward hook: it sees any
    model built from chainrule ops, without the model's help (`chainrule.insight` measures gradient flow
    with it). Blocks nest; the innermost observer is called first.

    >>> import chainrule as cr
    >>> seen = []
    >>> x = cr.ones(2, requires_grad=True)
    >>> with cr.autograd.observe_nodes(lambda node, outputs: seen.append((node.name, outputs[0].shape))):
    ...     y = (x * 2).tanh()
    >>> seen
    [('Mul', (2,)), ('Tanh', (2,))]
    """

    def __init__(self, observer: Callable[[Function, tuple], None]) -> None:
        if not callable(observer):
            raise TypeError(f"observe_nodes expects a callable observer(node, outputs), got "
                            f"{type(observer).__name__}")
        self.observer = observer

    def __enter__(self) -> None:
        self._previous = _Modes.observers
        _Modes.observers = (self.observer, *self._previous)

    def __exit__(self, *exc: object) -> None:
        _Modes.observers = self._previous


def is_grad_enabled() -> bool:
    """True when operations are being recorded.

    >>> import chainrule as cr
    >>> cr.is_grad_enabled()
    True
    """
    return _Modes.grad_enabled


def is_graph_retained() -> bool:
    """True while a backward pass runs that keeps the graph for another one (`retain_graph=True`): a node's
    backward must then leave what it saved intact instead of reusing its memory.

    >>> import chainrule as cr
    >>> cr.autograd.is_graph_retained()
    False
    """
    return _Modes.retain_graph


def _creation_site() -> list[traceback.FrameSummary]:
    """The caller's stack without chainrule's own frames (kept only in anomaly mode)."""
    frames = traceback.extract_stack()[:-3]
    user_frames = [frame for frame in frames if not frame.filename.startswith(_PACKAGE_DIR)]
    return user_frames[-6:] or frames[-6:]


_EDGE_MIN_SIZE = 4096
KEPT_GRADIENT_SIZE = _Modes.kept_gradient_size


class Edge:
    """An intermediate input of a node: the node and output index it came from, its shape and dtype.

    The graph keeps edges rather than the input tensors, so an intermediate array that no backward saved
    is freed as soon as the forward pass is done with it (as PyTorch's graph does).
    """

    __slots__ = ("_node", "_index", "shape", "dtype", "data_id")

    def __init__(self, tensor: Any) -> None:
        self._node, self._index = tensor._node, tensor._index
        self.shape, self.dtype, self.data_id = tensor.data.shape, tensor.data.dtype, id(tensor.data)

    @property
    def grad_fn(self) -> Any:
        """The node that produced the tensor this edge stands for (as `Tensor.grad_fn`)."""
        return self._node


class Function:
    """Base class of every operation; subclass it to define a custom op, as `torch.autograd.Function`.

    `forward(ctx, *args)` receives NumPy arrays (Tensors are unwrapped) and returns an array or a tuple
    of arrays. `backward(ctx, *grads)` returns one gradient (or None) per positional input of forward.
    Save arrays for backward with `ctx.save_for_backward`: saved inputs and outputs stay differentiable
    under `create_graph=True`; anything else you save is treated as a constant.

    >>> import chainrule as cr
    >>> class Cube(cr.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def backward(ctx, grad):
    ...         (x,) = ctx.saved_tensors
    ...         return grad * 3 * x ** 2
    >>> x = cr.tensor(2.0, requires_grad=True)
    >>> Cube.apply(x).backward()
    >>> float(x.grad)
    12.0
    """

    # Set on recorded nodes: `inputs` holds, per positional argument, None if it needs no gradient, the
    # Tensor itself for a leaf or a small intermediate, and an `Edge` for a large intermediate;
    # `output_meta` the (shape, dtype) of every output.
    inputs: tuple = ()
    saved: tuple | None = ()
    output_meta: tuple = ((None, None),)  # (shape, dtype) per output; only multi-output nodes fill it
    _output_ids: Any = ()
    _retained: dict | None = None
    _creation: list | None = None
    scope: tuple[str, ...] = ()  # names of the `scope` blocks the node was created in
    # Set by the last `backward()` through the node (not by `grad()`), as NumPy arrays: per input, the gradient
    # sent to it (downstream); on the node a backward started from, per output, the seed (upstream). An entry
    # is None where no gradient flowed or where it had more than KEPT_GRADIENT_SIZE elements (see
    # `keep_gradients`); the attribute is None where no backward went.
    upstream_grads: tuple | None = None
    downstream_grads: list | None = None
    # The number of the last backward() through the node, and (number, output index) of the last one started at
    # it (index None when that backward had several roots): kept gradients answer for that root alone.
    backward_id: int | None = None
    seeded_by: tuple[int, int | None] | None = None
    # Hand-written backward that is not composed of differentiable ops (e.g. fused BPTT) sets this False.
    differentiable_backward = True

    @staticmethod
    def forward(ctx: Function, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("a Function subclass must define a static forward(ctx, ...)")

    @staticmethod
    def backward(ctx: Function, *grads: Any) -> Any:
        raise NotImplementedError("a Function subclass must define a static backward(ctx, *grads)")

    # -- what forward and backward use --------------------------------------------------------------
    def save_for_backward(self, *arrays: Any) -> None:
        self.saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        saved = self.saved
        if saved is None:
            raise RuntimeError(
                f"{type(self).__name__}: its saved values were freed by an earlier backward; "
                "pass retain_graph=True to the first backward to go through the graph twice")
        if not _Modes.tensor_backward:
            return saved
        return tuple(self._saved_as_tensor(value) for value in saved)

    @property
    def needs_input_grad(self) -> tuple[bool, ...]:
        """Per positional input of forward, whether a gradient for it is wanted (as in PyTorch): a backward
        may skip computing the others and return None for them."""
        return tuple(tensor is not None for tensor in self.inputs)

    @property
    def name(self) -> str:
        return type(self).__name__

    def _saved_as_tensor(self, value: Any) -> Any:
        """Map a saved array back to the graph Tensor it is the data of (for create_graph)."""
        if not isinstance(value, np.ndarray):
            return value
        for source in self.inputs:
            if type(source) is Edge:
                if source.data_id == id(value):
                    return _tensor_class._from_array(value, source._node, source._index)
            elif source is not None and source.data is value:
                return source
        output_ids = self._output_ids if type(self._output_ids) is tuple else (self._output_ids,)
        for index, output_id in enumerate(output_ids):
            if output_id == id(value):
                return _tensor_class._from_array(value, self, index)
        return value

    # -- recording ----------------------------------------------------------------------------------
    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        """Run forward on the arguments' data and record the node when a gradient is needed."""
        tensor_class = _tensor_class
        record = False
        arrays = []
        inputs = []  # per argument: the Tensor if it needs a gradient, else None
        on_gpu = False
        for arg in args:
            if isinstance(arg, tensor_class):
                arrays.append(arg.data)
                if type(arg.data) is not np.ndarray:
                    on_gpu = True
                if arg._requires_grad:
                    record = True
                    # an intermediate's data is not kept alive by the graph: an Edge stands for it
                    # (small arrays, where an Edge costs more than it frees, stay as they are)
                    inputs.append(arg if arg._node is None or arg.data.size < _EDGE_MIN_SIZE else Edge(arg))
                    continue
            else:
                arrays.append(arg)
            inputs.append(None)
        if on_gpu:  # only then can the tensors live on different devices (plain arrays, e.g. indices, may)
            check_same_device([arg.data for arg in args if isinstance(arg, tensor_class)])
        node = cls.__new__(cls)
        try:
            result = cls.forward(node, *arrays, **kwargs)
        except (ValueError, TypeError, IndexError) as error:
            raise _describe_failure(cls, args, error) from error
        if type(result) is tuple:
            if not all(type(r) is np.ndarray for r in result):
                result = node._arrays_of(result)
        elif type(result) is not np.ndarray:
            (result,) = node._arrays_of((result,))
        if not (record and _Modes.grad_enabled):
            if type(result) is tuple:
                return tuple([tensor_class._from_array(r) for r in result])
            return tensor_class._from_array(result)
        node.inputs = tuple(inputs)
        if _Modes.scope:
            node.scope = _Modes.scope
        if _Modes.anomaly:
            node._creation = _creation_site()
        if type(result) is tuple:
            outputs = tuple([tensor_class._from_array(r, node, i) for i, r in enumerate(result)])
            node.output_meta = tuple([(out.data.shape, out.data.dtype) for out in outputs])
            node._output_ids = tuple([id(out.data) for out in outputs])
            if _Modes.observers:
                _notify(node, outputs)
            return outputs
        output = tensor_class._from_array(result, node, 0)
        node._output_ids = id(output.data)  # a single output keeps the default output_meta (one slot)
        if _Modes.observers:
            _notify(node, (output,))
        return output

    def _arrays_of(self, results: tuple) -> tuple:
        """NumPy returns scalars for 0-d results: make them arrays, and saved references follow."""
        arrays = tuple(np.asarray(r) if backend_of(r) is NUMPY else r for r in results)
        saved = self.saved
        if saved:
            self.saved = tuple(next((a for r, a in zip(results, arrays) if s is r), s) for s in saved)
        return arrays

    def release(self) -> None:
        """Free what forward saved (done after backward unless retain_graph=True)."""
        self.saved = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} node>"


def _notify(node: Function, outputs: tuple) -> None:
    for observer in _Modes.observers:
        observer(node, outputs)


def _describe_failure(cls: type, args: tuple, error: Exception) -> Exception:
    described = []
    for arg in args:
        shape = getattr(arg, "shape", None)
        described.append(f"shape {tuple(shape)}" if shape is not None else repr(arg))
    message = f"{cls.__name__}: {error} (inputs: {', '.join(described)})"
    return type(error)(message) if isinstance(error, (ValueError, TypeError, IndexError)) else error


_tensor_class: Any = None  # set by chainrule.autograd.tensor once Tensor exists (it imports this module)


def _register_tensor_class(cls: type) -> None:
    global _tensor_class
    _tensor_class = cls
