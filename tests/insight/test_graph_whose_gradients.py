"""A drawing shows kept gradients only when the drawn output is the root of the backward that kept them; otherwise
it computes d(output)/d(·) afresh from seed 1 (graph retained) or says the gradients are unknown (graph freed)."""
import re

import numpy as np

import chainrule as cr
from chainrule.insight.graph import draw_graph

ELSEWHERE = "unknown: backward started elsewhere"


def leaf_line(dot, name):
    (label,) = re.findall(rf'\[label="{re.escape(name)}\\n([^"]*)"', dot)
    return label


def edge_grads(dot):
    return [grad for line in dot.splitlines() if " -> " in line
            for grad in re.findall(r'<font color="red3">([^<]*)</font>', line)]


def scalars():
    return cr.tensor(2.0, requires_grad=True), cr.tensor(3.0, requires_grad=True)


def test_intermediate_drawn_after_a_later_outputs_freeing_backward_shows_no_numbers():
    a, b = scalars()
    e = a * b
    d = e * e + a
    d.backward()  # ∂d/∂a = 37, ∂d/∂b = 24; ∂e/∂a = 3, ∂e/∂b = 2 (the graph is freed)
    dot = draw_graph(e, names={"a": a, "b": b})
    assert leaf_line(dot, "a") == f"∂out/∂a {ELSEWHERE}" and leaf_line(dot, "b") == f"∂out/∂b {ELSEWHERE}"
    assert edge_grads(dot) == [ELSEWHERE] * 3
    assert "36" not in dot and "24" not in dot


def test_intermediate_drawn_after_a_later_outputs_retaining_backward_is_computed_afresh():
    a, b = scalars()
    e = a * b
    d = e * e + a
    d.backward(retain_graph=True)
    dot = draw_graph(e, names={"a": a, "b": b})
    assert leaf_line(dot, "a") == "∂out/∂a = 3" and leaf_line(dot, "b") == "∂out/∂b = 2"
    assert leaf_line(draw_graph(d, names={"a": a, "b": b}), "a") == "∂out/∂a = 37 = 1 + 36"


def test_a_second_backward_from_another_root_replaces_the_first_ones_record():
    a, b = scalars()
    e = a * b
    e.backward(retain_graph=True)
    assert leaf_line(draw_graph(e, names={"a": a}), "a") == "∂out/∂a = 3"
    d = e * e + a
    d.backward(retain_graph=True)  # went through e's nodes: their kept gradients are now d's
    assert leaf_line(draw_graph(e, names={"a": a}), "a") == "∂out/∂a = 3"
    e2 = a * b
    e2.backward(retain_graph=True)
    (e2 * e2).backward()  # frees e2's graph, keeps d(e2²)/d(·) on it
    assert leaf_line(draw_graph(e2, names={"a": a}), "a") == f"∂out/∂a {ELSEWHERE}"


def test_a_later_backward_through_part_of_the_graph_makes_the_record_mixed():
    a, b = scalars()
    u = a * b
    e = u * 4
    e.backward(retain_graph=True)
    (u * 10).backward(retain_graph=True)  # u's node now keeps d(10u)/d(·); e's node still d(e)/d(·)
    dot = draw_graph(e, names={"a": a, "b": b})
    assert leaf_line(dot, "a") == "∂out/∂a = 12" and leaf_line(dot, "b") == "∂out/∂b = 8"


def test_grad_leaves_the_record_of_a_backward_intact():
    a, b = scalars()
    e = a * b
    e.backward(retain_graph=True)
    d = e * e + a
    (g,) = cr.grad(d, a)
    np.testing.assert_allclose(g.numpy(), 37.0)
    assert leaf_line(draw_graph(e, names={"a": a}), "a") == "∂out/∂a = 3"


def test_an_explicit_seed_is_shown_when_the_drawn_output_was_the_root():
    a, b = scalars()
    e = a * b
    e.backward(cr.tensor(5.0))
    dot = draw_graph(e, names={"a": a, "b": b})
    assert leaf_line(dot, "a") == "∂out/∂a = 15" and edge_grads(dot)[-1] == "5"


def test_the_other_output_of_a_multi_output_node_is_not_the_root():
    x = cr.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    left, right = cr.split(x, 2)
    left.backward(cr.tensor([1.0, 1.0]), retain_graph=True)
    assert leaf_line(draw_graph(left, names={"x": x}), "x") == "∂out/∂x = [1, 1, 0, 0]"
    assert leaf_line(draw_graph(right, names={"x": x}), "x") == "∂out/∂x = [0, 0, 1, 1]"


def test_seeds_of_an_older_backward_are_not_merged_into_a_newer_ones():
    x = cr.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    left, right = cr.split(x, 2)
    right.backward(cr.tensor([7.0, 7.0]), retain_graph=True)
    left.backward(cr.tensor([1.0, 1.0]), retain_graph=True)
    assert left.grad_fn.upstream_grads[1] is None  # right's seed of the older backward is gone


def test_value_graph_of_an_intermediate_after_a_later_backward():
    a, b = cr.Value(2.0, label="a"), cr.Value(3.0, label="b")
    e = a * b
    d = e * e + a
    d.backward()
    dot = draw_graph(e)
    assert leaf_line(dot, "a") == "∂out/∂a = 3" and leaf_line(dot, "b") == "∂out/∂b = 2"
