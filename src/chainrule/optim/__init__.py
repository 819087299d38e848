"""Optimizers and learning-rate schedules with PyTorch's update rules.

>>> import chainrule as cr
>>> from chainrule import optim
>>> w = cr.ones(3, requires_grad=True)
>>> opt = optim.Adam([w], lr=0.1)
>>> (w * w).sum().backward(); opt.step(); opt.zero_grad()
>>> [round(v, 4) for v in w.tolist()]
[0.9, 0.9, 0.9]
"""
from . import lr_scheduler
from .lr_scheduler import CosineAnnealingLR, ExponentialLR, LRScheduler, StepLR
from .optimizer import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "CosineAnnealingLR", "ExponentialLR", "LRScheduler", "Optimizer",
           "RMSprop", "StepLR", "lr_scheduler"]
