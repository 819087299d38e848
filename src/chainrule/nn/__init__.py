"""Neural-network layers, PyTorch-shaped: `Module`, `Linear`, `Embedding`, `RNN`/`LSTM`/`GRU`, losses.

>>> import chainrule as cr
>>> from chainrule import nn
>>> lstm = nn.LSTM(input_size=8, hidden_size=16, num_layers=2)
>>> output, (h_n, c_n) = lstm(cr.randn(4, 10, 8))
>>> output.shape
(4, 10, 16)
"""
from . import functional, utils
from .layers import (CrossEntropyLoss, Dropout, Embedding, Linear, MSELoss, NLLLoss, ReLU, Sequential,
                     Sigmoid, Tanh)
from .module import Module, Parameter
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__all__ = ["GRU", "LSTM", "RNN", "CrossEntropyLoss", "Dropout", "Embedding", "GRUCell", "LSTMCell",
           "Linear", "MSELoss", "Module", "NLLLoss", "Parameter", "RNNCell", "ReLU", "Sequential", "Sigmoid",
           "Tanh", "functional", "utils"]
