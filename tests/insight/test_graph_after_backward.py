"""Drawings in the order tutorials use (forward, backward(), then draw), leaf totals (∂d/∂a = 35 = 15 + 20 for
the reused leaf of Weidman's Deep Learning from Scratch, ch. 1-2), the notebook display, and the lazy names."""
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule.insight.graph import GraphDrawing, draw_graph


def leaf_line(dot, name):
    """The second line of the leaf named `name`: its total gradient."""
    (label,) = re.findall(rf'\[label="{re.escape(name)}\\n([^"]*)"', dot)
    return label


def edge_grads(dot):
    """The gradient text (red) of every labelled edge, in order."""
    return [grad for line in dot.splitlines() if " -> " in line
            for grad in re.findall(r'<font color="red3">([^<]*)</font>', line)]


def book_example(make):
    """a = 3, b = 4a, c = b + 3, d = c (a + 2): a is used twice, its shares are 15 (via a + 2) and 20 (via 4a)."""
    a = make(3.0)
    d = (a * 4 + 3) * (a + 2)
    return a, d


def test_tensor_drawn_after_backward_shows_the_backwards_gradients_and_the_leaf_total():
    a, d = book_example(lambda v: cr.tensor(v, dtype="float64", requires_grad=True))
    d.backward()
    dot = draw_graph(d, names={"a": a, "d": d})
    assert leaf_line(dot, "a") == "∂d/∂a = 35 = 15 + 20"
    assert float(a.grad) == 35.0
    assert sorted(edge_grads(dot)) == sorted(["5", "15", "15", "5", "20", "1"])


def test_tensor_drawings_before_and_after_backward_agree():
    x, y, z = (cr.tensor(v, requires_grad=True) for v in (-2.0, 5.0, -4.0))
    f = (x + y) * z
    names = {"x": x, "y": y, "z": z, "f": f}
    before = draw_graph(f, names=names)
    f.backward()
    after = draw_graph(f, names=names)
    assert before == after
    assert leaf_line(after, "x") == "∂f/∂x = -4" and leaf_line(after, "z") == "∂f/∂z = 3"


def test_after_backward_the_drawing_shows_the_seed_that_backward_used():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.backward(cr.tensor([1.0, -1.0]))
    dot = draw_graph(y, names={"x": x})
    assert leaf_line(dot, "x") == "∂out/∂x = [3, -3]"
    assert edge_grads(dot)[-1] == "[1, -1]"  # the output edge: the seed given to backward


def test_value_drawn_before_and_after_backward_shows_35_as_15_plus_20():
    a, d = book_example(lambda v: cr.Value(v, label="a"))
    d.label = "d"
    before = draw_graph(d)
    d.backward()
    after = draw_graph(d)
    assert before == after and a.grad == 35.0
    assert leaf_line(after, "a") == "∂d/∂a = 35 = 15 + 20"
    assert leaf_line(after, "4") == "grad = 15"  # an unlabelled constant: its gradient, without a name


def test_value_drawing_passes_zero_along_a_blocked_edge_as_backward_does():
    x, w = cr.Value(-1.0, label="x"), cr.Value(float("inf"), label="w")
    out = x.relu() * w  # relu below its kink: the edge passes 0 even with an infinite upstream gradient
    out.backward()
    assert x.grad == 0.0
    dot = draw_graph(out)
    assert leaf_line(dot, "x") == "∂out/∂x = 0"
    assert "nan" not in leaf_line(dot, "x")


def test_large_gradients_are_kept_only_inside_keep_gradients():
    w = cr.ones(4, 5, requires_grad=True)
    loss = (w * 2).sum()
    loss.backward()
    dot = draw_graph(loss, names={"w": w})
    assert "not kept: draw inside keep_gradients()" in dot
    assert leaf_line(dot, "w\\n(4, 5)").startswith(".grad = (4, 5) ‖·‖=8.94")  # the leaf's .grad is still known
    with cr.autograd.keep_gradients():
        loss = (w * 2).sum()
        loss.backward()
    kept = draw_graph(loss, names={"w": w})
    assert "not kept" not in kept and "∂out/∂w = (4, 5) ‖·‖=8.94" in kept
    assert cr.autograd.KEPT_GRADIENT_SIZE == 6


def test_kept_gradients_are_copies_and_grad_leaves_no_trace():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    x.grad[:] = 100.0  # changing .grad (as an optimizer step would) does not change what the drawing shows
    assert leaf_line(draw_graph(y, names={"x": x}), "x") == "∂out/∂x = [2, 4] = [1, 2] + [1, 2]"
    z = (x * 5).sum()
    (g,) = cr.grad(z, x)
    assert z.grad_fn.upstream_grads is None and z.grad_fn.downstream_grads is None
    h = x * 2
    (h * h).sum().backward()  # drawn from h, which the backward passed through but did not start at
    dot = draw_graph(h, names={"x": x})  # freed, and what it kept is d(h·h)/d(·): no number for h
    assert leaf_line(dot, "x") == "∂out/∂x unknown: backward started elsewhere" and "[8, 16]" not in dot
    np.testing.assert_array_equal(g.numpy(), [5.0, 5.0])


def test_a_graph_freed_without_a_record_says_so_on_its_edges():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * 2).sum()
    cr.grad(y, x)  # frees the graph and keeps nothing on it
    dot = draw_graph(y)
    assert dot.count("unknown: graph freed") == 4  # x -> exp, exp -> ×, × -> Σ, Σ -> output
    assert "digraph" in draw_graph(y, show_grads=False)


def test_multi_output_node_drawn_after_backward():
    x = cr.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    left, right = cr.split(x, 2)
    out = (left * 2).sum() + (right * 3).sum()
    out.backward()
    assert leaf_line(draw_graph(out, names={"x": x}), "x") == "∂out/∂x = [2, 2, 3, 3]"


def test_jupyter_display_with_graphviz_is_svg():
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed (the test command installs it where apt-get is available)")
    a, d = book_example(lambda v: cr.Value(v, label="a"))
    drawing = draw_graph(d)
    assert isinstance(drawing, GraphDrawing) and isinstance(drawing, str)
    bundle = drawing._repr_mimebundle_()
    assert "<svg" in bundle["image/svg+xml"] and "35 = 15 + 20" in bundle["image/svg+xml"]
    assert "<svg" in drawing._repr_svg_()


def test_jupyter_display_without_graphviz_lists_the_graph_and_says_how_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    a, d = book_example(lambda v: cr.Value(v, label="a"))
    drawing = draw_graph(d)
    assert drawing._repr_svg_() is None
    bundle = drawing._repr_mimebundle_()
    assert "image/svg+xml" not in bundle
    assert "a | ∂out/∂a = 35 = 15 + 20" in bundle["text/plain"] and "a -> ×  (3, 20)" in bundle["text/plain"]
    assert "apt-get install graphviz" in bundle["text/plain"] and bundle["text/html"].startswith("<pre>")


def test_insight_and_old_names_are_attributes_of_chainrule_loaded_on_first_use():
    code = ("import sys, chainrule as cr\n"
            "assert not any(m.startswith(('chainrule.insight', 'chainrule.charlm', 'chainrule.viz',"
            " 'chainrule.diagnostics')) for m in sys.modules), sorted(sys.modules)\n"
            "assert cr.insight.draw_graph is cr.viz.draw_graph\n"
            "assert cr.diagnostics.gradient_flow is cr.insight.gradient_flow\n"
            "assert 'insight' in dir(cr) and 'charlm' not in sys.modules.get('chainrule').__dict__\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_keep_gradients_takes_a_size_and_refuses_anything_else():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with cr.autograd.keep_gradients(-1):   # keeps none: what benchmarks/kept_gradients.py compares against
        y = (x * 3).sum()
        y.backward()
    assert y.grad_fn.downstream_grads is None and y.grad_fn.upstream_grads is None
    dot = draw_graph(y, names={"x": x})
    assert "unknown: graph freed" in dot and leaf_line(dot, "x") == ".grad = [3, 3]"
    with pytest.raises(TypeError, match="max_size must be an integer"):
        cr.autograd.keep_gradients("all")
