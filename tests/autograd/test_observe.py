"""`observe_nodes`: the engine's general forward hook."""
import pytest

import chainrule as cr


def test_sees_each_recorded_node_with_its_outputs_and_scope():
    seen = []
    x = cr.ones(2, 3, requires_grad=True)
    with cr.autograd.observe_nodes(lambda node, outputs: seen.append((node.name, node.scope, outputs))):
        with cr.scope("block"):
            y = x.tanh()
        pieces = cr.split(y, 1, axis=1)
        with cr.no_grad():
            x * 2                      # not recorded, so not seen
        cr.ones(2) * 3                 # needs no gradient: not recorded either
    assert [(name, scope) for name, scope, _ in seen] == [("Tanh", ("block",)), ("Split", ())]
    assert seen[0][2] == (y,) and seen[1][2] == pieces


def test_nests_innermost_first_and_restores_after_an_error():
    calls = []
    x = cr.ones(1, requires_grad=True)
    with cr.autograd.observe_nodes(lambda node, outputs: calls.append("outer")):
        with pytest.raises(RuntimeError, match="stop"):
            with cr.autograd.observe_nodes(lambda node, outputs: calls.append("inner")):
                x * 2
                raise RuntimeError("stop")
        x * 2
    x * 2
    assert calls == ["inner", "outer", "outer"]
    with pytest.raises(TypeError, match="callable observer"):
        cr.autograd.observe_nodes("not a function")
