"""Computational-graph drawings: forward value above each edge, gradient below, as the pictures of the RNN
backpropagation article (README, Sources) show them.

`draw_graph(output)` returns Graphviz DOT text and, given a path, writes it or renders it to SVG/PNG with
Graphviz's `dot` program. Works for a `Tensor` (the op nodes of its graph) and for a scalar `Value`.
The gradient under an edge is what flows along that edge: the add node hands its upstream gradient to
both inputs, the multiply node swaps its inputs, and a value used twice receives two contributions.
"""
from __future__ import annotations

import html
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..autograd import (KEPT_GRADIENT_SIZE, Function, Tensor, Value, parent_nodes, reverse_topological_order,
                        run_backward)

INSTALL_HINT = ("Graphviz's `dot` program is needed to render SVG or PNG. Install it with "
                "`apt-get install graphviz` (Debian, Ubuntu), `dnf install graphviz` (Fedora), "
                "`brew install graphviz` (macOS) or `conda install graphviz`.")
_SYMBOLS = {"Add": "+", "Sub": "−", "Mul": "×", "Div": "÷", "Pow": "^", "MatMul": "@", "Neg": "neg",
            "Exp": "exp", "Log": "log", "Tanh": "tanh", "Sigmoid": "σ", "Relu": "relu", "Softmax": "softmax",
            "LogSoftmax": "log_softmax", "LogSumExp": "logsumexp", "GetItem": "[ ]", "Sum": "Σ", "Max": "max",
            "Reshape": "reshape", "Permute": "transpose", "CrossEntropy": "cross-entropy", "+": "+", "*": "×",
            "-": "−", "/": "÷", "**": "^"}


class GraphvizWarning(UserWarning):
    """Graphviz is not installed: the DOT text was written instead of the picture."""


def _format(value: Any) -> str:
    """Small values in full, larger ones as shape and norm."""
    if value is None:
        return ""
    array = np.asarray(value, dtype=np.float64)
    if array.size == 1:
        return f"{array.item():.4g}"
    if array.size <= 6:
        return "[" + ", ".join(f"{v:.3g}" for v in array.ravel()) + "]"
    return f"{tuple(array.shape)} ‖·‖={np.linalg.norm(array):.3g}"


def _edge_label(value: str, grad: str, show_grads: bool) -> str:
    rows = f'<tr><td><font color="darkgreen">{html.escape(value)}</font></td></tr>' if value else ""
    if show_grads and grad:
        rows += f'<tr><td><font color="red3">{html.escape(grad)}</font></td></tr>'
    return f'<<table border="0" cellpadding="0" cellspacing="0">{rows}</table>>' if rows else '""'


class _Graph:
    """Nodes and edges of a drawing, before they become DOT text."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: list[dict[str, Any]] = []

    def node(self, key: str, label: str, kind: str, group: str | None = None) -> None:
        self.nodes.setdefault(key, {"label": label, "kind": kind, "group": group})

    def edge(self, source: str, target: str, value: str, grad: str) -> None:
        self.edges.append({"source": source, "target": target, "value": value, "grad": grad})

    def collapsed(self) -> _Graph:
        """Merge every group of op nodes into one box; keep the edges that cross groups, once each."""
        merged = _Graph()
        members: dict[str, int] = {}
        rename = {}
        for key, node in self.nodes.items():
            group = node["group"]
            if group is None:
                merged.nodes[key] = node
                rename[key] = key
            else:
                rename[key] = f"group:{group}"
                members[group] = members.get(group, 0) + 1
        for group, count in members.items():
            merged.node(f"group:{group}", f"{group}\n({count} ops)", "group")
        seen = set()
        for edge in self.edges:
            source, target = rename[edge["source"]], rename[edge["target"]]
            if source == target or (source, target) in seen:
                continue
            seen.add((source, target))
            crosses = source.startswith("group:") or target.startswith("group:")
            merged.edge(source, target, "" if crosses else edge["value"], "" if crosses else edge["grad"])
        return merged

    def dot(self, title: str, show_grads: bool, notes: list[tuple[str, str]]) -> str:
        styles = {
            "op": 'shape=circle, style=filled, fillcolor="#f2f2f2", fontsize=12',
            "leaf": 'shape=box, style="rounded,filled", fillcolor="#fff4c2"',
            "parameter": 'shape=box, style="rounded,filled", fillcolor="#cfe2ff"',
            "output": 'shape=doublecircle, style=filled, fillcolor="#d9f2d9", fontsize=11',
            "group": 'shape=box3d, style=filled, fillcolor="#eeeeee"',
        }
        lines = ["digraph chainrule {", "  rankdir=LR;", '  node [fontname="Helvetica"];',
                 '  edge [fontname="Helvetica", fontsize=10];']
        if title:
            lines.append(f'  label="{html.escape(title)}"; labelloc=t;')
        for key, node in self.nodes.items():
            label = html.escape(node["label"]).replace("\n", "\\n")
            lines.append(f'  "{key}" [label="{label}", {styles[node["kind"]]}];')
        for edge in self.edges:
            label = _edge_label(edge["value"], edge["grad"], show_grads)
            lines.append(f'  "{edge["source"]}" -> "{edge["target"]}" [label={label}];')
        for index, (target, text) in enumerate(notes):
            key = f"note{index}"
            label = html.escape(text).replace("\n", "\\l") + "\\l"  # \l: left-justified lines
            lines.append(f'  "{key}" [shape=note, style=filled, fillcolor="#fffbe6", fontsize=10, label="{label}"];')
            lines.append(f'  "{key}" -> "{target}" [style=dashed, arrowhead=none];')
        if show_grads:
            lines.append('  legend [shape=plaintext, fontsize=10, label=<<font color="darkgreen">forward value</font>'
                         '<br/><font color="red3">gradient flowing back</font>>];')
        lines.append("}")
        return "\n".join(lines) + "\n"


def _group_of(node: Function, collapse: Any) -> str | None:
    scope = getattr(node, "scope", ())
    if collapse is None or not scope:
        return None
    if callable(collapse):
        return collapse(scope)
    if collapse == "module":
        return scope[0]
    steps = [part for part in scope if part.startswith("t=")]  # collapse == "time"
    return steps[-1] if steps else None


_NOT_KEPT = "not kept: draw inside keep_gradients()"
_FREED = "unknown: graph freed"
_ELSEWHERE = "unknown: backward started elsewhere"


def _tensor_graph(output: Tensor, show_grads: bool, names: Mapping[int, str], collapse: Any,
                  annotate: Any) -> tuple[_Graph, list[tuple[str, str]]]:
    if output.grad_fn is None:
        raise ValueError("draw_graph: this tensor was not computed from anything (no graph to draw); "
                         "create its inputs with requires_grad=True")
    nodes = list(reverse_topological_order([output.grad_fn], parent_nodes))
    edge_grads: dict[tuple[int, int], Any] = {}
    missing: dict[tuple[int, int], str] = {}  # edges whose gradient cannot be shown, and why
    output_grad = None
    output_missing = ""
    leaf_unknown = ""  # why no leaf total can be shown, where none may be
    if show_grads:
        if _kept_answer_for(output, nodes):
            # the last backward() through this graph started at this output: show what it computed (small
            # gradients are kept on the nodes)
            seeds = output.grad_fn.upstream_grads
            output_grad = seeds[output.output_nr] if seeds is not None else None
            if output_grad is None:
                output_missing = _NOT_KEPT
            for node in nodes:
                sent = node.downstream_grads
                for index, source in enumerate(node.inputs):
                    if source is None:
                        continue
                    grad = sent[index] if sent is not None and index < len(sent) else None
                    if grad is not None:
                        edge_grads[(id(node), index)] = grad
                    elif sent is None:
                        missing[(id(node), index)] = "unknown: not on the last backward's path"
                    elif int(np.prod(source.shape)) > KEPT_GRADIENT_SIZE:
                        missing[(id(node), index)] = _NOT_KEPT
        elif any(node.saved is None for node in nodes):
            # freed, and what was kept (if anything) belongs to another root: nothing left to compute from
            reason = _ELSEWHERE if any(node.backward_id is not None for node in nodes) else _FREED
            missing = {(id(node), index): reason for node in nodes
                       for index, source in enumerate(node.inputs) if source is not None}
            output_missing = reason
            if reason == _ELSEWHERE:  # a leaf's .grad holds another output's gradient: not this one's
                leaf_unknown = reason
        else:
            # never backpropagated, or kept gradients of another root: compute d(output)/d(·) afresh (seed 1)
            seed = np.ones_like(output.data)
            output_grad = seed
            leaves = [t for n in nodes for t in n.inputs if t is not None and t.grad_fn is None]
            run_backward([output], [seed], retain_graph=True, create_graph=False, capture=leaves,
                         on_edge=lambda node, index, grad: edge_grads.__setitem__((id(node), index), grad))
    shares: dict[int, list[Any]] = {}   # per leaf, the gradient along each of its edges (None where unknown)
    for node in nodes:
        for index, source in enumerate(node.inputs):
            if source is not None and source.grad_fn is None:
                shares.setdefault(id(source), []).append(edge_grads.get((id(node), index)))
    output_name = names.get(id(output), "out")
    graph = _Graph()
    key_of = {id(node): f"op{index}" for index, node in enumerate(nodes)}
    leaf_keys: dict[int, str] = {}
    for node in nodes:
        graph.node(key_of[id(node)], _SYMBOLS.get(node.name, node.name), "op", _group_of(node, collapse))
    for node in nodes:
        for index, source in enumerate(node.inputs):
            if source is None:
                continue
            if source.grad_fn is None:
                if id(source) not in leaf_keys:
                    leaf_keys[id(source)] = f"leaf{len(leaf_keys)}"
                    name = names.get(id(source)) or ("parameter" if type(source).__name__ == "Parameter" else "input")
                    shape = "" if source.data.size <= 6 else f"\n{tuple(source.shape)}"
                    kind = "parameter" if type(source).__name__ == "Parameter" or id(source) in names else "leaf"
                    total = (_leaf_total(output_name, name, shares[id(source)], source.grad, leaf_unknown)
                             if show_grads else "")
                    graph.node(leaf_keys[id(source)], f"{name}{shape}{total}", kind)
                start = leaf_keys[id(source)]
            else:
                start = key_of[id(source.grad_fn)]
            value = _format(source.data) if isinstance(source, Tensor) else f"{tuple(source.shape)}"
            grad = edge_grads.get((id(node), index))
            graph.edge(start, key_of[id(node)], value,
                       _format(grad) if grad is not None else missing.get((id(node), index), ""))
    graph.node("output", f"{_format(output.data)}", "output")
    graph.edge(key_of[id(output.grad_fn)], "output", _format(output.data),
               _format(output_grad) if output_grad is not None else output_missing)
    notes = []
    if annotate is not None:
        target = annotate.grad_fn if isinstance(annotate, Tensor) else annotate
        if not isinstance(target, Function) or id(target) not in key_of:
            raise ValueError("draw_graph: `annotate` must be a tensor (or node) of the drawn graph")
        upstream = _upstream_of(target, nodes, edge_grads, output, output_grad)
        notes.append((key_of[id(target)], _chain_rule_note(target, upstream, edge_grads)))
    return (graph.collapsed() if collapse is not None else graph), notes


def _kept_answer_for(output: Tensor, nodes: list) -> bool:
    """Whether the gradients kept on the graph are d(output)/d(·): the last backward() through every drawn node
    is one and the same, it had one root, and that root is `output` itself (not a later output, say)."""
    stamp = output.grad_fn.backward_id
    return (stamp is not None and output.grad_fn.seeded_by == (stamp, output.output_nr)
            and all(node.backward_id == stamp for node in nodes))


def _leaf_total(output_name: str, leaf_name: str, shares: list[Any], grad: Any, unknown: str = "") -> str:
    """The leaf's line: its total gradient, the sum of its shares (∂d/∂a = 35 = 15 + 20 for a leaf used
    twice); where a share is unknown, the `.grad` a backward left, if any, unless `unknown` says why that
    `.grad` is not this output's (then the line says so and shows no number)."""
    if shares and all(share is not None for share in shares):
        total = shares[0]
        for share in shares[1:]:
            total = total + share
        line = f"\n∂{output_name}/∂{leaf_name} = {_format(total)}" if leaf_name else f"\ngrad = {_format(total)}"
        if len(shares) > 1 and all(np.size(share) <= 6 for share in shares):
            line += " = " + " + ".join(_format(share) for share in shares)
        return line
    if unknown:
        return f"\n∂{output_name}/∂{leaf_name or 'leaf'} {unknown}"
    if grad is not None:
        return f"\n.grad = {_format(grad)}"
    return ""


def _upstream_of(target: Function, nodes: list, edge_grads: dict, output: Tensor, output_grad: Any) -> Any:
    """The total gradient arriving at the target's output: the sum of what its consumers sent."""
    if target is output.grad_fn:
        return output_grad
    total = None
    for node in nodes:
        for index, source in enumerate(node.inputs):
            if source is not None and source.grad_fn is target:
                grad = edge_grads.get((id(node), index))
                if grad is not None:
                    total = grad if total is None else total + grad
    return total


def _chain_rule_note(node: Function, upstream: Any, edge_grads: dict) -> str:
    lines = [f"{node.name}: downstream = upstream × local", f"upstream {_format(upstream)}"]
    for index, source in enumerate(node.inputs):
        if source is None:
            continue
        downstream = edge_grads.get((id(node), index))
        if downstream is None:
            continue
        if np.size(upstream) == 1 and np.size(downstream) == 1 and float(np.asarray(upstream).ravel()[0]) != 0:
            local = float(np.asarray(downstream).ravel()[0]) / float(np.asarray(upstream).ravel()[0])
            lines.append(f"input {index}: local {local:.4g} → downstream {_format(downstream)}")
        else:
            lines.append(f"input {index}: local = Jacobian → downstream {_format(downstream)}")
    return "\n".join(lines)


def _value_graph(output: Value, show_grads: bool, annotate: Any) -> tuple[_Graph, list[tuple[str, str]]]:
    order = list(reverse_topological_order([output], lambda v: v.parents))
    totals: dict[int, float] = {id(output): 1.0}
    flowing: dict[tuple[int, int], float] = {}   # (consumer, input index) -> the gradient along that edge
    shares: dict[int, list[float]] = {}
    for value in order:  # the same walk as Value.backward, without touching .grad
        blocked = value.blocked or (False,) * len(value.parents)
        for index, (parent, local, stop) in enumerate(zip(value.parents, value.local_grads, blocked)):
            # downstream = upstream × local; a blocked edge passes 0, as in Value.backward
            share = 0.0 if stop else totals.get(id(value), 0.0) * local
            flowing[(id(value), index)] = share
            totals[id(parent)] = totals.get(id(parent), 0.0) + share
            shares.setdefault(id(parent), []).append(share)
    output_name = output.label or "out"
    graph = _Graph()
    keys = {id(value): f"v{index}" for index, value in enumerate(order)}
    for value in order:
        if value.parents:
            graph.node(keys[id(value)], _SYMBOLS.get(value.op, value.op), "op")
        else:
            total = _leaf_total(output_name, value.label, shares.get(id(value), []), None) if show_grads else ""
            graph.node(keys[id(value)], (value.label or f"{value.data:.4g}") + total, "leaf")
    for value in order:
        for index, parent in enumerate(value.parents):
            graph.edge(keys[id(parent)], keys[id(value)], f"{parent.data:.4g}", f"{flowing[(id(value), index)]:.4g}")
    graph.node("output", f"{output.data:.4g}", "output")
    graph.edge(keys[id(output)], "output", f"{output.data:.4g}", "1")
    notes = []
    if annotate is not None:
        if not isinstance(annotate, Value) or id(annotate) not in keys or not annotate.parents:
            raise ValueError("draw_graph: `annotate` must be a computed Value of the drawn graph")
        upstream = totals.get(id(annotate), 0.0)
        lines = [f"{_SYMBOLS.get(annotate.op, annotate.op)}: downstream = upstream × local", f"upstream {upstream:.4g}"]
        for index, (parent, local) in enumerate(zip(annotate.parents, annotate.local_grads)):
            lines.append(f"input {index} ({parent.data:.4g}): {upstream:.4g} × {local:.4g} = {upstream * local:.4g}")
        notes.append((keys[id(annotate)], "\n".join(lines)))
    return graph, notes


class GraphDrawing(str):
    """The DOT text of a drawing (a `str`, so it prints, compares and writes as before) that Jupyter shows
    as a picture: `_repr_svg_` renders it with Graphviz's `dot`; without `dot`, `_repr_mimebundle_` gives
    the graph as a text listing of its nodes and edges, with how to install Graphviz.

    >>> from chainrule import Value
    >>> a = Value(2.0, label="a")
    >>> drawing = draw_graph(a * a)
    >>> drawing.startswith("digraph") and "a -> ×  (2, 2)" in drawing.as_text()
    True
    """

    def svg(self) -> str | None:
        """The drawing as SVG text, or None when Graphviz's `dot` is not installed."""
        executable = shutil.which("dot")
        if executable is None:
            return None
        result = subprocess.run([executable, "-Tsvg"], input=self.encode("utf-8"), capture_output=True, timeout=120)
        if result.returncode != 0:
            reason = result.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"Graphviz failed to render the drawing: {reason}")
        return result.stdout.decode("utf-8")

    def as_text(self) -> str:
        """The nodes and edges as lines of text (what a notebook shows without Graphviz)."""
        node_labels = {key: _plain(label) for key, label in re.findall(r'^\s+"([^"]+)" \[label="([^"]*)"', self, re.M)}
        lines = [f"{key}: {label}" for key, label in node_labels.items() if not key.startswith("note")]
        for source, target, label in re.findall(r'^\s+"([^"]+)" -> "([^"]+)"(?: \[label=(<.*?>>|"")?)?', self, re.M):
            texts = [html.unescape(text) for text in re.findall(r"<font[^>]*>([^<]*)</font>", label or "")]
            shown = f"  ({', '.join(texts)})" if texts else ""
            names = [node_labels.get(key, key).split(" | ")[0] for key in (source, target)]
            lines.append(f"{names[0]} -> {names[1]}{shown}")
        return "\n".join(lines)

    def _repr_svg_(self) -> str | None:
        return self.svg()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        svg = self.svg()
        if svg is not None:
            return {"image/svg+xml": svg, "text/plain": str(self)}
        text = f"{self.as_text()}\n\n{INSTALL_HINT}"
        return {"text/plain": text, "text/html": f"<pre>{html.escape(text)}</pre>"}


def _plain(label: str) -> str:
    return html.unescape(label).replace("\\n", " | ").replace("\\l", " ")


def draw_graph(output: Tensor | Value, path: str | Path | None = None, format: str | None = None,  # noqa: A002
               show_grads: bool = True, annotate: Any = None, collapse: str | Callable[[tuple], str] | None = None,
               names: Mapping[str, Tensor] | None = None, title: str = "") -> GraphDrawing:
    """Draw the graph that computed `output`; returns the DOT text (a `GraphDrawing`: a `str` that Jupyter
    displays as the picture), and writes `path` when given.

    Works before and after `output.backward()`. Before, it computes d(output)/d(everything) itself (seed 1).
    After, it shows what that backward computed: the gradients of at most `KEPT_GRADIENT_SIZE` elements,
    which every backward keeps on the graph, and all of them when the backward ran inside
    `chainrule.autograd.keep_gradients()`; an edge whose gradient cannot be known any more says so.
    Kept gradients are shown only when `output` itself was the one root of the last backward through the
    drawn graph; after a backward from a later output (or another one) the drawing computes d(output)/d(·)
    afresh while the graph is retained, and otherwise labels edges and leaves "unknown: backward started
    elsewhere" (a leaf's `.grad` then holds another output's gradient, so no number is shown).
    Each leaf shows its total gradient, for a reused leaf as the sum of its shares (∂d/∂a = 35 = 15 + 20).

    - `format`: "svg", "png" or "dot" (default: from the path's suffix, else "svg"). SVG and PNG need
      Graphviz's `dot`; without it the DOT text is written next to the path and a warning says how to
      install Graphviz.
    - `show_grads`: compute d(output)/d(everything) (seed 1) and write each edge's gradient under its value.
    - `annotate`: a tensor (or Value) of the graph whose node gets a note: upstream × local = downstream.
    - `collapse`: "module" or "time" (or a function of the scope path) merges the op nodes created in
      the same module / time step (see `chainrule.scope`) into one box: unrolled RNNs stay readable.
    - `names`: {"W": tensor, ...} labels leaves (and the output, in ∂out/∂leaf); `model.named_parameters()`
      works as is.

    Raises ValueError for a tensor with no graph, a bad `collapse` or `annotate`; TypeError for anything
    but a Tensor or a Value.

    >>> import chainrule as cr
    >>> x, y, z = (cr.tensor(v, requires_grad=True) for v in (-2.0, 5.0, -4.0))
    >>> dot = draw_graph((x + y) * z, names={"x": x, "y": y, "z": z})
    >>> "digraph" in dot and "-12" in dot
    True
    """
    if not (collapse is None or callable(collapse) or collapse in ("module", "time")):
        raise ValueError(f"collapse must be None, 'module', 'time' or a function of the scope path, got {collapse!r}")
    named = {id(tensor): name for name, tensor in (dict(names).items() if names is not None else ())}
    if isinstance(output, Value):
        graph, notes = _value_graph(output, show_grads, annotate)
    elif isinstance(output, Tensor):
        graph, notes = _tensor_graph(output, show_grads, named, collapse, annotate)
    else:
        raise TypeError(f"draw_graph expects a Tensor or a Value, got {type(output).__name__}")
    text = GraphDrawing(graph.dot(title, show_grads, notes))
    if path is not None:
        render(text, path, format)
    return text


def render(dot_text: str, path: str | Path, format: str | None = None) -> Path:  # noqa: A002
    """Write DOT text as `path` (".dot"), or render it to SVG/PNG with Graphviz; returns the file written.

    >>> import tempfile, os
    >>> render("digraph { a -> b }", os.path.join(tempfile.mkdtemp(), "g.dot")).suffix
    '.dot'
    """
    path = Path(path)
    format = (format or path.suffix.lstrip(".") or "svg").lower()  # noqa: A001  (the parameter, resolved)
    if format not in ("svg", "png", "dot"):
        raise ValueError(f"format must be 'svg', 'png' or 'dot', got {format!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "dot":
        path.write_text(dot_text, encoding="utf-8")
        return path
    executable = shutil.which("dot")
    if executable is None:
        fallback = path.with_suffix(".dot")
        fallback.write_text(dot_text, encoding="utf-8")
        warnings.warn(f"{INSTALL_HINT} The DOT text was written to {fallback}.", GraphvizWarning, stacklevel=3)
        return fallback
    result = subprocess.run([executable, f"-T{format}", "-o", str(path)], input=dot_text.encode("utf-8"),
                            capture_output=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"Graphviz failed to render {path}: {result.stderr.decode(errors='replace').strip()}")
    return path
