"""Learning-rate schedules: step, exponential, cosine (chainable, as PyTorch's; closed forms for resuming)."""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from .optimizer import Optimizer


class LRScheduler:
    """Base class: call `step()` once per epoch (or step) after `optimizer.step()`.

    Chainable, as PyTorch's: each step changes the group's current lr by the schedule's factor for that
    epoch, so schedules on one optimizer compose and an lr set by hand in `param_groups` is carried on from.
    While no one else has touched the lr (it is still the closed form at the previous epoch), the closed
    form at the new epoch is written instead, which is the same rate without the rounding of a product
    over steps, so a run resumed from `load_state_dict` continues bit for bit. The closed form
    `lr_at(base_lr, epoch)` is also what resuming (last_epoch != -1, or `load_state_dict`) sets.

    The first `step()` before the optimizer has ever stepped warns (as PyTorch does): the schedule's first
    learning rate would then be skipped. Raises KeyError when resuming (last_epoch != -1) an optimizer
    whose groups have no 'initial_lr'.

    >>> import chainrule as cr
    >>> from chainrule import optim
    >>> opt = optim.SGD([cr.ones(1, requires_grad=True)], lr=1.0)
    >>> schedule = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    >>> for _ in range(4): opt.step(); schedule.step()
    >>> schedule.get_last_lr()
    [0.25]
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__} needs a chainrule optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for number, group in enumerate(optimizer.param_groups):
            if last_epoch != -1 and "initial_lr" not in group:
                # resuming from the current (already scheduled) lr would restart the schedule from there
                raise KeyError(f"param 'initial_lr' is not specified in param_groups[{number}] when resuming "
                               "an optimizer: restore the optimizer's state_dict first, or pass last_epoch=-1")
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._order_checked = False
        self._resuming = last_epoch != -1
        self.step()
        self._resuming = False
        self._order_checked = False  # the constructor's step sets the first rate; the user's next is checked

    def lr_at(self, base_lr: float, epoch: int) -> float:
        """The closed form: the rate at `epoch` of this schedule alone, from `base_lr`."""
        raise NotImplementedError

    def chained_lr(self, lr: float, base_lr: float, epoch: int) -> float:
        """The chainable form: the rate at `epoch` (> 0) from the group's current rate `lr`."""
        raise NotImplementedError

    def step(self) -> None:
        if not self._order_checked:
            self._order_checked = True
            if self.last_epoch >= 0 and not getattr(self.optimizer, "_step_count", 1):
                warnings.warn("lr_scheduler.step() was called before optimizer.step(): call optimizer.step() "
                              "first, or the schedule's first learning rate is skipped", UserWarning, stacklevel=2)
        self.last_epoch += 1
        epoch = self.last_epoch
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            if getattr(self, "_resuming", False):
                group["lr"] = self.lr_at(base, epoch)
            elif epoch == 0:   # the first rate is the group's own (as PyTorch: another schedule may have set it)
                continue
            elif group["lr"] == self.lr_at(base, epoch - 1):   # untouched since this schedule's last step
                group["lr"] = self.lr_at(base, epoch)
            else:
                group["lr"] = self.chained_lr(group["lr"], base, epoch)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        # the optimizer is not the schedule's state, nor is the once-only check of the call order
        return {key: value for key, value in self.__dict__.items()
                if key not in ("optimizer", "_order_checked", "_resuming")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(base, self.last_epoch)


def _check_gamma(name: str, gamma: float) -> None:
    # a negative factor makes every other learning rate negative (gradient ascent); PyTorch takes it
    if not gamma >= 0:
        raise ValueError(f"{name}: gamma must be >= 0, got {gamma}")


class StepLR(LRScheduler):
    step_size: int
    gamma: float

    """lr = base · gamma^(epoch // step_size).

    >>> import chainrule as cr
    >>> from chainrule import optim
    >>> StepLR(optim.SGD([cr.ones(1, requires_grad=True)], lr=1.0), step_size=10).get_last_lr()
    [1.0]
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        if isinstance(step_size, (bool, np.bool_)) or not isinstance(step_size, numbers.Integral) or step_size <= 0:
            raise ValueError(f"StepLR: step_size must be a positive integer, got {step_size!r}")
        _check_gamma("StepLR", gamma)
        self.step_size, self.gamma = int(step_size), gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)

    def chained_lr(self, lr: float, base_lr: float, epoch: int) -> float:
        return lr * self.gamma if epoch % self.step_size == 0 else lr


class ExponentialLR(LRScheduler):
    """lr = base · gamma^epoch.

    >>> import chainrule as cr
    >>> from chainrule import optim
    >>> opt = optim.SGD([cr.ones(1, requires_grad=True)], lr=1.0)
    >>> s = ExponentialLR(opt, gamma=0.5); opt.step(); s.step()
    >>> s.get_last_lr()
    [0.5]
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        _check_gamma("ExponentialLR", gamma)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma ** epoch

    def chained_lr(self, lr: float, base_lr: float, epoch: int) -> float:
        return lr * self.gamma


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base - eta_min) (1 + cos(π epoch / T_max)) / 2.

    >>> import chainrule as cr
    >>> from chainrule import optim
    >>> opt = optim.SGD([cr.ones(1, requires_grad=True)], lr=1.0)
    >>> s = CosineAnnealingLR(opt, T_max=2)
    >>> opt.step(); s.step(); s.get_last_lr()
    [0.5]
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:  # noqa: N803
        if T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be positive, got {T_max}")
        if not eta_min >= 0:  # a negative floor makes the learning rate negative near the end (ascent)
            raise ValueError(f"CosineAnnealingLR: eta_min must be >= 0, got {eta_min}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2

    def chained_lr(self, lr: float, base_lr: float, epoch: int) -> float:
        # PyTorch's recursive form; at the bottom of a period (cos = -1 at epoch - 1) the ratio is 0 / 0,
        # so the step up is added instead
        if (epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            return lr + (base_lr - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
        return ((1 + math.cos(math.pi * epoch / self.T_max)) / (1 + math.cos(math.pi * (epoch - 1) / self.T_max))
                * (lr - self.eta_min) + self.eta_min)
