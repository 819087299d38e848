"""The primitive ops: each one's forward and backward side by side, by kind. The public op functions
built on them (with their input checks) are in `chainrule.autograd.functional`.
"""
from .elementwise import (Abs, Add, Cast, Clip, Div, Exp, Log, Maximum, Mul, Neg, Pow, Relu, Sigmoid, Sqrt, Sub,
                          Tanh, Where, div_gradients, pow_base_blocked, pow_gradients, relu_blocked, relu_forward,
                          sigmoid_forward)
from .matmul import MatMul
from .reductions import (LogSoftmax, LogSumExp, Max, Mean, Softmax, Sum)
from .shape import (BroadcastTo, Concatenate, GetItem, Permute, Reshape, Scatter, Split, ToDevice)

__all__ = ["Abs", "Add", "BroadcastTo", "Cast", "Clip", "Concatenate", "Div", "Exp", "GetItem", "Log", "LogSoftmax",
           "LogSumExp", "MatMul", "Max", "Maximum", "Mean", "Mul", "Neg", "Permute", "Pow", "Relu", "Reshape",
           "Scatter", "Sigmoid", "Softmax", "Split", "Sqrt", "Sub", "Sum", "Tanh", "ToDevice", "Where", "div_gradients",
           "pow_base_blocked", "pow_gradients", "relu_blocked", "relu_forward", "sigmoid_forward"]
