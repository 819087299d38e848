"""Reverse-mode differentiation: walk the graph once, in reverse topological order, without recursion.

Each node's backward runs exactly once, after every consumer of its outputs has sent its share of the
gradient; shares arriving from several consumers are summed (a value used twice gets both gradients,
which the recursive `NumberWithGrad.backward` of Weidman's *Deep Learning from Scratch*, ch. 6,
over-counts). Gradients of broadcast inputs are reduced back to the input's shape here, once, so no op has
to do it itself.
"""
from __future__ import annotations

import itertools
import sys
import traceback
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from .._kernels.device import NUMPY, backend_of, empty_like_device
from .._kernels.memory import REFERENCES_COUNTED, c_ordered_copy
from . import function as _function
from .function import Function, _Modes

_Node = TypeVar("_Node", bound=Hashable)


def reverse_topological_order(roots: Iterable[_Node],
                              parents: Callable[[_Node], Iterable[_Node]]) -> Iterator[_Node]:
    """Yield every node reachable from `roots`, each once, consumers before the nodes they consume.

    Kahn's algorithm (A. B. Kahn, "Topological sorting of large networks", CACM 1962): count each node's
    consumers, then release a node when its count reaches zero. A parent listed twice by one node
    (c = b * b) is counted twice and released after both uses.

    >>> graph = {"d": ["c", "a"], "c": ["b"], "b": ["a"], "a": []}
    >>> list(reverse_topological_order(["d"], graph.__getitem__))
    ['d', 'c', 'b', 'a']
    """
    roots = list(dict.fromkeys(roots))
    pending: dict[_Node, int] = {}
    parents_of: dict[_Node, Iterable[_Node]] = dict.fromkeys(roots, ())  # claimed nodes are pushed once
    stack = list(roots)
    while stack:
        node = stack.pop()
        node_parents = parents_of[node] = parents(node)
        for parent in node_parents:
            pending[parent] = pending.get(parent, 0) + 1
            if parent not in parents_of:
                parents_of[parent] = ()
                stack.append(parent)
    ready = [root for root in roots if root not in pending]
    while ready:
        node = ready.pop()
        yield node
        for parent in parents_of.pop(node):
            remaining = pending[parent] - 1
            pending[parent] = remaining
            if remaining == 0:
                ready.append(parent)


def parent_nodes(node: Function) -> list[Function]:
    """The nodes that produced the inputs of `node` which need a gradient (the graph's edges, backwards)."""
    return [tensor._node for tensor in node.inputs if tensor is not None and tensor._node is not None]


def _reduce_to_shape(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum a broadcast gradient back to the input's shape (works on arrays and on Tensors)."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0:
        raise RuntimeError(f"internal error: gradient of shape {grad.shape} for an input of shape {shape}")
    axes = tuple(range(extra)) + tuple(extra + i for i, size in enumerate(shape)
                                       if size == 1 and grad.shape[extra + i] != 1)
    if axes:
        if type(grad) is np.ndarray and grad.dtype == np.float16:  # summed in float32: no overflow on the way
            grad = grad.sum(axis=axes, keepdims=True, dtype=np.float32).astype(np.float16)
        else:
            grad = grad.sum(axis=axes, keepdims=True)
    if grad.shape[extra:] != shape:
        raise RuntimeError(f"internal error: gradient of shape {grad.shape} for an input of shape {shape}")
    return grad.reshape(shape)


# A fresh gradient array is referred to by run_backward's `grad` and the `grad` parameters of send,
# deliver_to_leaf and _only_engine_holds; with no other reference nothing else can see it (where
# REFERENCES_COUNTED says the counts are exact; elsewhere every gradient is copied).
_ENGINE_REFERENCES = 4


def _only_engine_holds(grad: Any, dtype: np.dtype) -> bool:
    """Whether `grad` can become a leaf's .grad without a copy (PyTorch's AccumulateGrad does the same):
    a C-ordered array that owns its memory, of the leaf's dtype, that no one else refers to. Anything
    still held elsewhere (an upstream gradient passed on unchanged, an array a backward kept, a view's
    base) has more references and is copied."""
    return (REFERENCES_COUNTED and type(grad) is np.ndarray and grad.dtype == dtype and grad.flags.owndata
            and grad.flags.c_contiguous and grad.flags.writeable
            and sys.getrefcount(grad) <= _ENGINE_REFERENCES + 1)  # + getrefcount's own argument


def _check_finite(node: Function, input_index: int, grad: Any) -> None:
    data = grad.data if not isinstance(grad, np.ndarray) else grad
    if np.isfinite(data).all():
        return
    kind = "nan" if np.isnan(data).any() else "inf"
    site = "".join(traceback.format_list(node._creation)) if node._creation else "  (unknown)\n"
    raise FloatingPointError(
        f"detect_anomaly: the backward of '{node.name}' produced {kind} in the gradient of its "
        f"input {input_index}. That '{node.name}' was created at:\n{site}")


_backward_ids = itertools.count(1)  # numbers each backward(), so a drawing can tell whose gradients a node kept


def run_backward(roots: Sequence[Any], root_grads: Sequence[Any], *, retain_graph: bool,
                 create_graph: bool, capture: Sequence[Any] | None = None,
                 on_edge: Callable[[Function, int, Any], None] | None = None) -> list[Any] | None:
    """Backpropagate `root_grads` from the tensors `roots`.

    Without `capture`, gradients of leaves accumulate into their `.grad`. With `capture` (a list of
    tensors) nothing is accumulated and the gradient reaching each captured tensor is returned instead.
    `on_edge(node, input_index, grad)` sees every gradient a node sends to one of its inputs.

    Without `capture` (a `backward()`), each node keeps the gradients it sent that have at most
    `_Modes.kept_gradient_size` elements as `downstream_grads`, and each root node its seed as
    `upstream_grads`, so that a drawing made after the backward can show them (`chainrule.insight.draw_graph`,
    `keep_gradients`).
    """
    Tensor = _function._tensor_class  # noqa: N806  (the class, registered by tensor.py, which imports this module)

    keep = _Modes.kept_gradient_size if capture is None else -1  # grad() leaves no trace on the graph
    grads: dict[Function, list[Any]] = {}
    captured: list[Any] = [None] * len(capture) if capture is not None else []
    leaf_slot = {id(t): i for i, t in enumerate(capture) if t._node is None} if capture is not None else {}
    node_slot: dict[tuple[int, int], list[int]] = {}
    if capture is not None:
        for i, tensor in enumerate(capture):
            if tensor._node is not None:
                node_slot.setdefault((id(tensor._node), tensor._index), []).append(i)

    def deliver_to_leaf(leaf: Any, grad: Any) -> None:
        if capture is not None:
            slot = leaf_slot.get(id(leaf))
            if slot is not None:
                captured[slot] = grad if captured[slot] is None else captured[slot] + grad
            return
        if leaf.grad is None and _only_engine_holds(grad, leaf.data.dtype):
            leaf.grad = grad
            return
        data = grad.data if isinstance(grad, Tensor) else grad
        if leaf.grad is None:  # a C-ordered copy, like the parameter (a transposed product arrives F-ordered)
            leaf.grad = c_ordered_copy(data, leaf.data.dtype)
        else:
            np.add(leaf.grad, data, out=leaf.grad, casting="unsafe")

    def send(tensor: Any, grad: Any) -> None:
        node = tensor._node
        if node is None:
            deliver_to_leaf(tensor, grad)
            return
        entry = grads.get(node)
        if entry is None:
            entry = grads[node] = [None] * len(node.output_meta)
        previous = entry[tensor._index]
        entry[tensor._index] = grad if previous is None else previous + grad

    stamp = next(_backward_ids) if keep >= 0 else None
    root_nodes = []
    for tensor, grad in zip(roots, root_grads):
        send(tensor, grad)
        if tensor._node is not None:
            root_nodes.append(tensor._node)
            if keep >= 0:
                node = tensor._node
                # seeds from an earlier backward are not this one's: start afresh at the first root on the node
                fresh = node.seeded_by is None or node.seeded_by[0] != stamp
                seeds = [None] * len(node.output_meta) if fresh else list(node.upstream_grads or ())
                if grad.size <= keep:
                    seeds[tensor._index] = np.array(grad.data if create_graph else grad, copy=True)
                node.upstream_grads = tuple(seeds)
                # a drawing may trust kept gradients only when its output is the one root of that backward
                node.seeded_by = (stamp, tensor._index if len(roots) == 1 else None)

    previous_modes = (_Modes.grad_enabled, _Modes.tensor_backward, _Modes.retain_graph)
    _Modes.grad_enabled = _Modes.tensor_backward = create_graph
    _Modes.retain_graph = retain_graph
    try:
        for node in reverse_topological_order(root_nodes, parent_nodes):
            output_grads = grads.pop(node, None)
            if stamp is not None:
                node.backward_id = stamp
            if output_grads is None:  # every consumer sent None
                if keep >= 0:
                    node.downstream_grads = [None] * len(node.inputs)
                if not retain_graph:
                    node.release()
                continue
            if node.saved is None:
                raise RuntimeError(
                    f"Trying to backward through the graph a second time: the saved values of "
                    f"'{node.name}' were freed by the first backward. Pass retain_graph=True to the "
                    "first backward (or grad) call if you need to go through the graph twice.")
            if create_graph and not node.differentiable_backward:
                raise RuntimeError(
                    f"'{node.name}' has a hand-written backward that cannot be differentiated again; "
                    "use the reference (composed) implementation for higher-order gradients")
            if create_graph or len(output_grads) > 1:  # one output always has its gradient
                for index, (shape, dtype) in enumerate(node.output_meta):
                    grad = output_grads[index]
                    if grad is None:  # zeros on the device of the output gradients that did arrive
                        reference = next(g for g in output_grads if g is not None)
                        zeros = empty_like_device(getattr(reference, "data", reference), shape, dtype)
                        output_grads[index] = Tensor._from_array(zeros) if create_graph else zeros
                    elif create_graph and not isinstance(grad, Tensor):
                        output_grads[index] = Tensor._from_array(np.asarray(grad))
            if node_slot:
                for index, grad in enumerate(output_grads):
                    for slot in node_slot.get((id(node), index), ()):
                        captured[slot] = grad
            if node._retained:
                for index, tensor in node._retained.items():
                    data = output_grads[index].data if create_graph else output_grads[index]
                    tensor.grad = data.copy() if tensor.grad is None else tensor.grad + data
            input_grads = type(node).backward(node, *output_grads)
            if type(input_grads) is not tuple:
                input_grads = (input_grads,)
            if len(input_grads) < len(node.inputs):
                raise RuntimeError(f"'{node.name}'.backward returned {len(input_grads)} gradients; "
                                   f"its forward took {len(node.inputs)} inputs")
            input_grads = list(input_grads)
            for index, tensor in enumerate(node.inputs):
                grad, input_grads[index] = input_grads[index], None  # only `grad` refers to it now
                if tensor is None or grad is None:
                    continue
                if create_graph:
                    if not isinstance(grad, Tensor):
                        grad = Tensor._from_array(np.asarray(grad))
                elif type(grad) is not np.ndarray:
                    grad = grad.data if isinstance(grad, Tensor) else grad
                    if backend_of(grad) is NUMPY:  # a NumPy scalar; a GPU array stays where it is
                        grad = np.asarray(grad)
                shape, dtype = tensor.shape, tensor.dtype
                if grad.shape != shape:
                    grad = _reduce_to_shape(grad, shape)
                if grad.dtype != dtype:
                    grad = grad.astype(dtype)
                if _Modes.anomaly:
                    _check_finite(node, index, grad)
                if on_edge is not None:
                    on_edge(node, index, grad)
                send(tensor, grad)
                if grad.size <= keep:  # kept for drawings; a leaf's share as a copy (it may now be the leaf's .grad)
                    data = grad.data if create_graph else grad
                    input_grads[index] = data if tensor._node is not None else np.array(data, copy=True)
            if keep >= 0:
                node.downstream_grads = input_grads
            if not retain_graph:
                node.release()
    finally:
        _Modes.grad_enabled, _Modes.tensor_backward, _Modes.retain_graph = previous_modes
    return captured if capture is not None else None


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool = False) -> tuple[Any, ...]:
    """Gradients of `outputs` with respect to `inputs`, as `torch.autograd.grad`.

    With `create_graph=True` the backward pass is itself recorded, so the result can be differentiated
    again (Hessian-vector products, second derivatives). Leaves' `.grad` are left untouched.

    >>> import chainrule as cr
    >>> x = cr.tensor(0.5, dtype="float64", requires_grad=True)
    >>> (dy,) = cr.grad(x.tanh(), x, create_graph=True)
    >>> (d2y,) = cr.grad(dy, x)
    >>> round(float(d2y), 6)   # -2 tanh(x) (1 - tanh(x)^2)
    -0.726862
    """
    Tensor = _function._tensor_class  # noqa: N806  (the class, registered by tensor.py, which imports this module)

    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single_input = isinstance(inputs, Tensor)
    inputs = [inputs] if single_input else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = [grad_outputs]
    else:
        grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"grad: inputs[{i}] should be a Tensor, got {type(tensor).__name__}")
        if not tensor._requires_grad:
            raise RuntimeError(f"grad: inputs[{i}] does not require grad")
    roots, seeds = [], []
    for i, (output, seed) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(output, Tensor):
            raise TypeError(f"grad: outputs[{i}] should be a Tensor, got {type(output).__name__}")
        if not output._requires_grad:
            raise RuntimeError(f"grad: outputs[{i}] does not require grad and has no graph")
        seeds.append(_seed_gradient(output, seed, create_graph, f"grad_outputs[{i}]"))
        roots.append(output)
    retain = create_graph if retain_graph is None else retain_graph
    # a tensor listed twice gets its gradient at both places (as PyTorch); the capture takes each once
    position: dict[int, int] = {}
    distinct: list[Any] = []
    for tensor in inputs:
        if id(tensor) not in position:
            position[id(tensor)] = len(distinct)
            distinct.append(tensor)
    captured = run_backward(roots, seeds, retain_graph=retain, create_graph=create_graph, capture=distinct)
    found = [captured[position[id(t)]] for t in inputs] if captured is not None else []
    results: list[Any] = []
    for i, value in enumerate(found):
        if value is None:
            if not allow_unused:
                raise RuntimeError(f"grad: inputs[{i}] was not used to compute the outputs "
                                   "(pass allow_unused=True to get None for it)")
            results.append(None)
        elif isinstance(value, Tensor):
            results.append(value)
        else:
            results.append(Tensor._from_array(np.asarray(value)))
    return tuple(results)


def _seed_gradient(output: Any, seed: Any, create_graph: bool, what: str) -> Any:
    """The gradient that starts a backward pass at `output`: ones for a scalar, else the given one."""
    Tensor = _function._tensor_class  # noqa: N806  (the class, registered by tensor.py, which imports this module)

    if seed is None:
        if output.data.size != 1:
            raise RuntimeError(
                f"{what}: the output has shape {output.shape}; a gradient can be implied only for a "
                "scalar output, so pass one of the output's shape")
        seed_array = np.ones_like(output.data)
        return Tensor._from_array(seed_array) if create_graph else seed_array
    seed_tensor = seed if isinstance(seed, Tensor) else None
    seed_array = seed.data if isinstance(seed, Tensor) else seed
    if backend_of(seed_array) is NUMPY:
        seed_array = np.asarray(seed_array, dtype=output.data.dtype)
    if seed_array.shape != output.data.shape:
        raise RuntimeError(f"{what}: expected a gradient of shape {output.shape} (the output's), "
                           f"got shape {tuple(seed_array.shape)}")
    if create_graph:
        return seed_tensor if seed_tensor is not None else Tensor._from_array(seed_array)
    return seed_array
