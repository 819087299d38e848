"""A model and schedule for a training-time budget: what `chainrule train --minutes M` picks when no size is given.

A short budget is won by a smaller model that takes more steps with a learning rate annealed to zero at the
budget's end (benchmarks/sweep_3min.py measured it; the table is in BENCHMARKS.md). `plan_for_budget` fills
in the options of `PLAN` that the user did not give; any option given explicitly wins, and any size option
given (--model, --hidden, --layers, --embedding) or a step limit (--steps, --epochs) turns the pick off.

A cosine schedule needs the run's length in steps, and a budget is in minutes. `StepPlanner` turns one into
the other by measuring: after `EARLY_STEPS` steps of this invocation (a rough plan, so that a budget too short
for more steps still anneals), after `CALIBRATION_STEPS`, and again at each evaluation, it sets the run's
`steps` to the steps done plus the budget left divided by the mean step time since the last plan, and
continues the schedule at the current step with that length. The length is the run's configuration
(`TrainConfig.steps`), stored in every checkpoint, so a resume continues exactly the schedule the
checkpoint was written with (`chainrule train --resume RUN` runs on to that step count; the planner only
runs in the invocation that started the run).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# options that fix the model's size: any one given means the user chose the model, and nothing is picked
SIZE_OPTIONS = ("model", "hidden", "layers", "embedding")
# a step limit given: the user chose the run's length, and nothing is picked
LENGTH_OPTIONS = ("steps", "epochs")
# the budget's pick for budgets up to MAX_PLANNED_MINUTES (measured for 3 minutes; see BENCHMARKS.md)
PLAN: dict[str, Any] = {"model": "lstm", "hidden": 384, "layers": 1, "dropout": 0.1, "lr": 5e-3,
                        "schedule": "cosine"}
# seconds of one step of PLAN's model (batch 32, sequence 64) on a quiet 2-core machine: the first plan,
# before the run's own steps are measured
PLAN_SECONDS_PER_STEP = 0.067
# beyond this budget the sweep measured nothing, and the default (larger) model is kept
MAX_PLANNED_MINUTES = 10.0
EARLY_STEPS = 3          # the first, rough re-plan: the median of these steps' times
CALIBRATION_STEPS = 20   # the second: the median of the steps so far
MARGIN = 0.98   # plan to end just inside the budget: its last steps run at a learning rate near 0 anyway


@dataclass
class BudgetPlan:
    options: dict[str, Any]   # the options picked (those the user gave are not among them)
    message: str              # what was picked, in a sentence


def plan_for_budget(given: dict[str, Any]) -> BudgetPlan | None:
    """The options to add to `given` (the options the user gave, by TrainConfig field name) for its
    `minutes` budget, or None when nothing is picked: no --minutes, a budget above MAX_PLANNED_MINUTES, a
    size option or a step limit given, or a resume.

    >>> plan_for_budget({"minutes": 3.0}).options["hidden"], plan_for_budget({"minutes": 3.0}).options["steps"]
    (384, 2632)
    >>> plan_for_budget({"minutes": 3.0, "lr": 1e-3}).options.get("lr") is None
    True
    >>> plan_for_budget({"minutes": 3.0, "hidden": 256}) is None, plan_for_budget({"steps": 100}) is None
    (True, True)
    """
    minutes = given.get("minutes")
    if (minutes is None or minutes > MAX_PLANNED_MINUTES or "resume" in given
            or any(name in given for name in SIZE_OPTIONS + LENGTH_OPTIONS)):
        return None
    options = {name: value for name, value in PLAN.items() if name not in given}
    schedule = given.get("schedule", PLAN["schedule"])
    if schedule == "cosine":
        options["steps"] = planned_steps(minutes * 60, PLAN_SECONDS_PER_STEP)
    picked = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in options.items())
    message = (f"--minutes {minutes:g} without a model size: picked {picked} (the best measured for a short budget; "
               "give --hidden/--layers/--model to choose yourself)")
    if "steps" in options:
        message += (f"; --steps is re-planned from the measured step time after {EARLY_STEPS} and {CALIBRATION_STEPS} "
                    "steps and at each evaluation so that the cosine schedule ends with the budget")
    return BudgetPlan(options, message)


def unplanned_note(given: dict[str, Any], default_model: str) -> str | None:
    """The line to show when `given` has a --minutes budget above MAX_PLANNED_MINUTES and nothing else that
    would turn the pick off (a size option, a step limit, a resume): the pick covers shorter budgets only, and
    `default_model` (e.g. "lstm 2x512") is trained. None otherwise.

    >>> unplanned_note({"minutes": 11.0}, "lstm 2x512")  # doctest: +ELLIPSIS
    '--minutes 11: the size pick covers budgets up to 10 minutes; training the default lstm 2x512 (give ...)'
    >>> unplanned_note({"minutes": 3.0}, "lstm 2x512") is None, unplanned_note({"minutes": 11.0, "hidden": 64}, "x")
    (True, None)
    """
    minutes = given.get("minutes")
    if (minutes is None or minutes <= MAX_PLANNED_MINUTES or "resume" in given
            or any(name in given for name in SIZE_OPTIONS + LENGTH_OPTIONS)):
        return None
    return (f"--minutes {minutes:g}: the size pick covers budgets up to {MAX_PLANNED_MINUTES:g} minutes; training "
            f"the default {default_model} (give --hidden/--layers/--model to choose)")


def planned_steps(seconds: float, seconds_per_step: float) -> int:
    """Steps that fit `seconds` at `seconds_per_step`, less the margin; at least 1.

    >>> planned_steps(180, 0.105)
    1680
    """
    return max(1, int(MARGIN * seconds / seconds_per_step))


class StepPlanner:
    """Re-plans a run's `steps` so that its schedule ends with its time budget (see the module's text).

    >>> planner = StepPlanner(minutes=1.0, eval_every=100)
    >>> plans = [planner.observe(step, 0.5, 1000) for step in range(1, CALIBRATION_STEPS + 1)]
    >>> plans[EARLY_STEPS - 1], plans[-1]
    (117, 118)
    """

    def __init__(self, minutes: float, eval_every: int) -> None:
        self.seconds = minutes * 60
        self.eval_every = eval_every
        self.used = 0.0           # training seconds of this invocation so far
        self.window: list[float] = []
        self.observed = 0         # steps of this invocation so far (a resume's steps start past its checkpoint's)
        self.last_notice = ""

    def observe(self, step: int, seconds: float, steps: int | None) -> int | None:
        """After step `step`, which took `seconds` of training time, of a run planned to `steps`: the new
        step count when it is time to re-plan and the plan changes, else None."""
        self.used += seconds
        self.observed += 1
        self.window.append(seconds)
        calibrating = self.observed in (EARLY_STEPS, CALIBRATION_STEPS)
        if not calibrating and step % self.eval_every != 0:
            return None
        # the first steps include one-time costs (compiled kernels, first allocations): the median, not the mean
        per_step = sorted(self.window)[len(self.window) // 2] if calibrating else sum(self.window) / len(self.window)
        if self.observed != EARLY_STEPS:   # the calibration's median is over all the steps so far
            self.window = []
        left = self.seconds - self.used
        if not (per_step > 0 and math.isfinite(per_step)) or left <= 0:
            return None
        total = step + planned_steps(left, per_step) if left > per_step else step + 1
        if total == steps:
            return None
        before = "no limit" if steps is None else steps
        self.last_notice = (f"planned --steps {before} -> {total} ({per_step * 1e3:.0f} ms per step, "
                            f"{left:.0f} s of the budget left)")
        return total
