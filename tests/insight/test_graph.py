"""Graph drawings: DOT content (nodes, edges, values, gradients), collapsing, annotation, rendering."""
import re
import shutil

import pytest

import chainrule as cr
from chainrule import nn
from chainrule.insight.graph import GraphvizWarning, draw_graph, render


def edge_labels(dot):
    """(source, target, value, gradient) for every edge with a label."""
    found = []
    for source, target, label in re.findall(r'"(\w+)" -> "(\w+)" \[label=(<.*?>>|"")\];', dot):
        values = re.findall(r'<font color="(\w+)">([^<]*)</font>', label)
        value = next((text for color, text in values if color == "darkgreen"), "")
        grad = next((text for color, text in values if color == "red3"), "")
        found.append((source, target, value, grad))
    return found


def full_labels(dot):
    """node key -> whole label, from the node lines only."""
    return dict(re.findall(r'^\s+"([^"]+)" \[label="([^"]*)"', dot, flags=re.M))


def labels(dot):
    """node key -> label's first line (a leaf's second line is its total gradient), from the node lines only."""
    return {key: label.split("\\n")[0] for key, label in full_labels(dot).items()}


def test_seed_article_graph_values_and_gradients():
    x, y, z = (cr.tensor(v, requires_grad=True) for v in (-2.0, 5.0, -4.0))
    dot = draw_graph((x + y) * z, names={"x": x, "y": y, "z": z})
    names = labels(dot)
    by_label = {v: k for k, v in names.items()}
    edges = {(names[s], names[t]): (v, g) for s, t, v, g in edge_labels(dot) if t in names and s in names}
    assert edges[("x", "+")] == ("-2", "-4") and edges[("y", "+")] == ("5", "-4")   # add distributes
    assert edges[("z", "×")] == ("-4", "3") and edges[("+", "×")] == ("3", "-4")    # multiply swaps
    assert edges[("×", "-12")] == ("-12", "1")
    assert "doublecircle" in dot and by_label["x"].startswith("leaf")


def test_value_used_twice_gets_both_contributions():
    a = cr.Value(3.0, label="a")
    d = (a * 4 + 3) * (a + 2)
    dot = draw_graph(d)
    names = labels(dot)
    from_a = sorted(float(g) for s, t, v, g in edge_labels(dot) if names.get(s) == "a")
    assert from_a == [15.0, 20.0] and sum(from_a) == 35.0
    assert a.grad == 0.0  # drawing does not touch .grad


def test_annotation_shows_upstream_local_downstream():
    a, b = cr.tensor(3.0, requires_grad=True), cr.tensor(4.0, requires_grad=True)
    product = a * b
    dot = draw_graph(product * 2, annotate=product)
    note = re.search(r'"note0" \[[^\]]*label="([^"]*)"', dot).group(1)
    assert "upstream 2" in note and "local 4" in note and "downstream 8" in note and "local 3" in note
    value = cr.Value(2.0)
    out = value * 5
    assert "1 × 5 = 5" in draw_graph(out, annotate=out)


def test_large_tensors_are_summarised_and_parameters_named():
    layer = nn.Linear(10, 3)
    x = cr.randn(4, 10, requires_grad=True)  # only tensors that need gradients are inputs of the graph
    dot = draw_graph(layer(x).sum(), names=dict(layer.named_parameters()))
    assert "weight" in dot and "bias" in dot and "‖·‖=" in dot and "(4, 10)" in dot


def test_collapse_unrolled_rnn_by_time_step_and_module():
    rnn = nn.RNN(2, 3, implementation="reference")
    output, _ = rnn(cr.randn(1, 6, 2))
    loss = output.sum()
    full = draw_graph(loss)
    by_time = draw_graph(loss, collapse="time")
    by_module = draw_graph(loss, collapse="module")
    groups = sorted(v.split("\\n")[0] for v in full_labels(by_time).values() if v.startswith("t="))
    assert groups == sorted(f"t={t}" for t in range(6))
    assert all("ops)" in v for v in full_labels(by_time).values() if v.startswith("t="))
    assert len(by_time) < len(full) and "RNN" in by_module and len(by_module) < len(by_time)


def test_bad_inputs_give_clear_errors():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="no graph"):
        draw_graph(cr.ones(2))
    with pytest.raises(TypeError, match="Tensor or a Value"):
        draw_graph(3.0)
    with pytest.raises(ValueError, match="collapse"):
        draw_graph((x * 2).sum(), collapse="layer")


def test_render_without_graphviz_writes_dot_and_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    x = cr.tensor(1.0, requires_grad=True)
    with pytest.warns(GraphvizWarning, match="apt-get install graphviz"):
        written = render(draw_graph(x * 3), tmp_path / "graph.svg")
    assert written.suffix == ".dot" and written.read_text().startswith("digraph")
    with pytest.raises(ValueError, match="format"):
        render("digraph {}", tmp_path / "g.pdf")


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="Graphviz is not installed (the test command installs it where apt-get is available)")
def test_svg_and_png_rendering(tmp_path):
    x, y = cr.tensor(2.0, requires_grad=True), cr.tensor(3.0, requires_grad=True)
    svg = tmp_path / "g.svg"
    draw_graph(x * y + x, svg, names={"x": x, "y": y})
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") or "<svg" in text
    assert "<svg" in text and ">x<" in text
    png = tmp_path / "g.png"
    draw_graph(x * y, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
