"""The scalar example of Weidman's *Deep Learning from Scratch* (O'Reilly 2019, ch. 6; README, Sources) and its
branching problem: a value used twice gets the sum of both gradients.

a = 3, b = 4a, c = b + 3, d = c·(a + 2): d = 75 and dd/da = 35 = 4·(a + 2) + c, the two uses of a.
The book's `NumberWithGrad.backward` recursion re-sends a node's running total every time it is reached,
so when a value is used twice it over-counts; for b = 2a, c = b·b it gives 36 instead of 24. Both are
shown below, next to chainrule's traversal (each node once, in reverse topological order).

    python examples/02_branching_and_reuse.py [--out examples/output]
"""
import argparse
from pathlib import Path

from chainrule import Value
from chainrule.insight import draw_graph

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", default=str(Path(__file__).parent / "output"))
args = parser.parse_args()

a = Value(3.0, label="a")
b = a * 4
c = b + 3
d = c * (a + 2)
d.backward()
numerical = (((3 + 1e-6) * 4 + 3) * (3 + 1e-6 + 2) - ((3 - 1e-6) * 4 + 3) * (3 - 1e-6 + 2)) / 2e-6
print(f"d = {d.data:g}, dd/da = {a.grad:g} (central difference: {numerical:.6f})")
assert d.data == 75 and a.grad == 35 and abs(numerical - 35) < 1e-6
picture = Path(args.out) / "02_book_example.svg"
draw_graph(d, picture, title="d = (4a + 3)(a + 2): a's two edges carry 20 and 15")


class BookStyle:
    """The book's recursion, reproduced only to show its defect: every visit forwards the running total."""

    def __init__(self, value, parents=(), locals_=()):
        self.value, self.parents, self.locals, self.grad = value, parents, locals_, None

    def __mul__(self, other):
        other = other if isinstance(other, BookStyle) else BookStyle(other)
        return BookStyle(self.value * other.value, (self, other), (other.value, self.value))

    def backward(self, grad=None):
        self.grad = (1.0 if grad is None else grad) if self.grad is None else self.grad + grad
        for parent, local in zip(self.parents, self.locals):
            parent.backward(self.grad * local)   # the running total, again and again


book_a = BookStyle(3.0)
book_b = book_a * 2
(book_b * book_b).backward()
ours_a = Value(3.0)
ours_b = ours_a * 2
(ours_b * ours_b).backward()
print(f"b = 2a, c = b·b at a = 3: dc/da = 8a = 24. Book-style recursion: {book_a.grad:g}; chainrule: {ours_a.grad:g}")
assert ours_a.grad == 24 and book_a.grad == 36
draw_graph(ours_b * ours_b, Path(args.out) / "02_reuse.svg", title="c = b·b: b's two edges each carry 12")
print(f"drawings in {args.out}")
