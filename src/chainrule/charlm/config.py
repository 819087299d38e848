"""The recurrent cells a character model can be built from: one table that the model, the command line, the
checkpoint schema, export to PyTorch and `chainrule diagnose` all read.

>>> list(CELLS), GATES["lstm"], CELLS["gru"].__name__
(['lstm', 'gru', 'rnn'], 4, 'GRU')
"""
from __future__ import annotations

from .. import nn

# name (as the command line and checkpoints spell it) -> the layer; PyTorch's class has the layer's name
CELLS: dict[str, type] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
# rows of W_ih and W_hh per hidden unit: the gates stacked in them (i, f, g, o; r, z, n; h)
GATES: dict[str, int] = {"lstm": 4, "gru": 3, "rnn": 1}
