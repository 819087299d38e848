"""The main job's first impression: the progress bar's totals, loss.png's data, info's decimals, the default
prime, the closing sample and the budget's pick (issue 18, section 1). In-process, on small texts."""
import json
import math
import re

import pytest

from chainrule.charlm import budget, progress, training
from chainrule.charlm.cli import main
from chainrule.charlm.plots import loss_curves
from chainrule.charlm.resume import continue_run, restore
from chainrule.charlm.text import default_corpus, split_text
from chainrule.charlm.training import TrainConfig, Trainer

TEXT = ("The quick brown fox jumps over the lazy dog, and the dog sleeps on.\n\n"
        "ROMEO: But soft, what light through yonder window breaks?\n\n") * 30
SMALL = dict(hidden=16, layers=1, batch_size=4, seq_len=16, eval_every=5, sample_every=0)
SMALL_ARGS = ["--hidden", "16", "--layers", "1", "--batch-size", "4", "--seq-len", "16", "--eval-every", "5",
              "--sample-every", "0"]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def bars(monkeypatch):
    """Every TrainingBar the trainer makes, kept for inspection."""
    made = []

    class Kept(progress.TrainingBar):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(training, "TrainingBar", Kept)
    return made


def test_bar_runs_against_steps(tmp_path, bars):
    Trainer(TrainConfig.from_options(dict(SMALL, steps=12)), tmp_path / "run", corpus=(TEXT, "t")).train()
    bar = bars[0].bar
    assert (bar.total, bar.n, bar.unit) == (12, 12, "step")
    postfix = bar.postfix
    for key in ("loss=", "val=", "chars/s=", "lr="):
        assert key in postfix, postfix


def test_bar_runs_against_the_time_budget(tmp_path, bars):
    trainer = Trainer(TrainConfig.from_options(dict(SMALL, minutes=0.01)), tmp_path / "run", corpus=(TEXT, "t"))
    trainer.train()
    bar = bars[0].bar
    assert (bar.total, bar.unit) == (0.6, "s")
    # the bar advances by each step's training time, the clock the budget is counted on (capped at the total)
    assert bar.n == pytest.approx(min(trainer.progress.elapsed, 0.6), abs=1e-6)
    assert "step=" in bar.postfix and "lr=" in bar.postfix


def test_resumed_bar_starts_at_the_run_step(tmp_path, bars):
    run = tmp_path / "run"
    Trainer(TrainConfig.from_options(dict(SMALL, steps=5)), run, corpus=(TEXT, "t")).train()
    trainer = Trainer(TrainConfig.from_options(dict(SMALL, steps=10)), run, corpus=(TEXT, "t"))
    restore(trainer, run / "latest.json")
    trainer.train()
    assert (bars[1].bar.total, bars[1].bar.n) == (10, 10)


def test_every_step_loss_is_recorded_and_exact_across_resume(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    Trainer(TrainConfig.from_options(dict(SMALL, steps=20)), straight, corpus=(TEXT, "t")).train()
    Trainer(TrainConfig.from_options(dict(SMALL, steps=10)), split, corpus=(TEXT, "t")).train()
    resumed = Trainer(TrainConfig.from_options(dict(SMALL, steps=20)), split, corpus=(TEXT, "t"))
    restore(resumed, split / "latest.json")
    continue_run(resumed, split / "latest.json", {"steps": [10, 20]})
    resumed.train()

    def curve(run):
        records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        return loss_curves([r for r in records if "step" in r])

    a, b = curve(straight), curve(split)
    assert a.steps.tolist() == list(range(1, 21)) == b.steps.tolist()
    assert a.losses.tolist() == b.losses.tolist()
    assert a.val_steps.tolist() == [5, 10, 15, 20] and a.best == b.best
    # the mean of each record's step losses is the record's training loss (rounding aside)
    for record in (json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()):
        assert sum(record["losses"]) / len(record["losses"]) == pytest.approx(record["train_loss"], abs=1e-5)


def test_log_reconciled_after_a_crash_keeps_the_step_losses(tmp_path):
    """A crash between the checkpoint and the log write: the resume writes the record, step losses included,
    from the checkpoint's history."""
    run = tmp_path / "run"
    Trainer(TrainConfig.from_options(dict(SMALL, steps=10)), run, corpus=(TEXT, "t")).train()
    log = run / "log.jsonl"
    log.write_text(log.read_text().splitlines()[0] + "\n")   # the record of step 10 never reached the log
    trainer = Trainer(TrainConfig.from_options(dict(SMALL, steps=15)), run, corpus=(TEXT, "t"))
    restore(trainer, run / "latest.json")
    continue_run(trainer, run / "latest.json", {"steps": [10, 15]})
    trainer.train()
    records = [json.loads(line) for line in log.read_text().splitlines() if '"step"' in line]
    assert loss_curves(records).steps.tolist() == list(range(1, 16))


def test_loss_curves_best_is_the_lowest_validation_and_old_records_give_one_point():
    history = [{"step": 5, "train_loss": 3.0, "val_loss": 2.9, "elapsed": 6.0},        # written before `losses`
               {"step": 7, "train_loss": 2.5, "val_loss": 2.7, "elapsed": 9.0, "losses": [2.6, 2.4]},
               {"step": 8, "train_loss": 2.2, "val_loss": 2.8, "elapsed": 12.0, "losses": [2.2]}]
    curves = loss_curves(history)
    assert curves.steps.tolist() == [5, 6, 7, 8] and curves.losses.tolist() == [3.0, 2.6, 2.4, 2.2]
    assert curves.best == (7, 2.7)
    assert curves.minutes[0].tolist() == [0, 5, 7, 8] and curves.minutes[1].tolist() == [0.0, 0.1, 0.15, 0.2]
    assert curves.smoothed.tolist() == curves.losses.tolist()   # an interval's mean is not smoothed again
    recent = loss_curves(history[1:])
    assert recent.smoothed[0] == 2.6 and recent.losses[-1] < recent.smoothed[-1] < recent.smoothed[0]


def test_info_prints_losses_to_4_decimals(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(TrainConfig.from_options(dict(SMALL, steps=5)), run, corpus=(TEXT, "t")).train()
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    out = capsys.readouterr().out
    numbers = re.findall(r"(?:train|validation|loss) (\d+\.\d+)", out)
    assert numbers and all(len(n.split(".")[1]) == 4 for n in numbers), out


def test_fixed_prime_is_the_first_the_vocabulary_spells():
    assert progress.fixed_prime("The abc") == "The "
    assert progress.fixed_prime("the ") == "the "
    assert progress.fixed_prime("A b") == "A "
    assert progress.fixed_prime("xyz\n") == "\n"
    assert progress.fixed_prime("xyz") == ""


def test_prose_opening_of_the_default_corpus_is_words():
    text = default_corpus()
    _, validation = split_text(text, TrainConfig().val_frac)
    opening = progress.prose_opening(validation, sorted(set(text)))
    assert re.fullmatch(r"[A-Z][a-z]+( [a-z,]+){5} ", opening), opening
    assert opening.strip() in validation


def test_prose_opening_falls_back_to_the_fixed_prime():
    assert progress.prose_opening("-----\n\n>>> x = 1\n", "The -x=1>\n") == "The "


def test_sample_without_prime_starts_with_prose(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(TrainConfig.from_options(dict(SMALL, steps=5)), run, corpus=(TEXT, "t")).train()
    capsys.readouterr()
    assert main(["sample", str(run), "--length", "20", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The ") and len(out) == len("The ") + 20 + 1


def test_train_ends_with_a_primed_sample(text_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(text_file), *SMALL_ARGS, "--steps", "5", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    # the evaluation lines the bar writes, then the sample, primed with the validation text's first prose paragraph
    before, prime, sample = out.partition("The quick brown fox jumps over ")
    assert prime and all(line.startswith("step ") for line in before.splitlines())
    assert len(sample) == progress.CLOSING_SAMPLE_LENGTH + 1 and sample.endswith("\n")


def test_quiet_train_prints_no_sample(text_file, tmp_path, capsys):
    assert main(["train", str(text_file), *SMALL_ARGS, "--steps", "5", "--quiet", "--out", str(tmp_path / "r")]) == 0
    assert all(line.startswith("step ") for line in capsys.readouterr().out.splitlines())   # no sample


def test_budget_pick_without_a_size():
    plan = budget.plan_for_budget({"minutes": 3.0})
    assert {k: plan.options[k] for k in budget.PLAN} == budget.PLAN
    assert plan.options["steps"] == budget.planned_steps(180, budget.PLAN_SECONDS_PER_STEP)
    assert "picked" in plan.message and f"--hidden {budget.PLAN['hidden']}" in plan.message


@pytest.mark.parametrize("given", [{"minutes": 3.0, "hidden": 64}, {"minutes": 3.0, "layers": 3},
                                   {"minutes": 3.0, "model": "gru"}, {"minutes": 3.0, "embedding": 8},
                                   {"minutes": 3.0, "steps": 50}, {"minutes": 3.0, "epochs": 1.0},
                                   {"steps": 50}, {}, {"minutes": budget.MAX_PLANNED_MINUTES + 1}])
def test_no_pick_when_the_user_chose_or_the_budget_is_unmeasured(given):
    assert budget.plan_for_budget(given) is None


def test_explicit_options_win_over_the_pick():
    plan = budget.plan_for_budget({"minutes": 3.0, "lr": 1e-3, "dropout": 0.0})
    assert "lr" not in plan.options and "dropout" not in plan.options
    assert plan.options["hidden"] == budget.PLAN["hidden"]
    constant = budget.plan_for_budget({"minutes": 3.0, "schedule": "constant"})
    assert "schedule" not in constant.options and "steps" not in constant.options   # no schedule to fit


def test_train_minutes_picks_and_says_so(text_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(budget, "PLAN", {**budget.PLAN, "hidden": 16})   # a small pick, same logic
    run = tmp_path / "run"
    assert main(["train", str(text_file), "--minutes", "0.005", "--batch-size", "4", "--seq-len", "16",
                 "--quiet", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "picked --model lstm --hidden 16 --layers 1" in err
    stored = json.loads((run / "latest.json").read_text())["train"]
    assert (stored["hidden"], stored["layers"], stored["schedule"], stored["lr"]) == (16, 1, "cosine", 5e-3)
    assert stored["steps"] >= 1


def test_a_budget_beyond_the_pick_says_which_model_it_trains(text_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(budget, "MAX_PLANNED_MINUTES", 0.001)   # --minutes 0.002 is then "above" it, as 11 is
    run = tmp_path / "run"
    assert main(["train", str(text_file), "--minutes", "0.002", "--batch-size", "2", "--seq-len", "8", "--quiet",
                 "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert ("--minutes 0.002: the size pick covers budgets up to 0.001 minutes; training the default lstm 2x512"
            in err) and "picked" not in err


def test_train_minutes_with_a_size_picks_nothing(text_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(text_file), *SMALL_ARGS, "--minutes", "0.002", "--quiet", "--out", str(run)]) == 0
    assert "picked" not in capsys.readouterr().err
    stored = json.loads((run / "latest.json").read_text())["train"]
    assert (stored["hidden"], stored["schedule"], stored["steps"]) == (16, "constant", None)


def test_planner_replans_steps_and_the_schedule_continues():
    planner = budget.StepPlanner(minutes=1.0, eval_every=100)
    answers, steps = [], 500
    for step in range(1, budget.CALIBRATION_STEPS + 1):
        answers.append(planner.observe(step, 0.25, steps))
        steps = answers[-1] or steps
    early = budget.EARLY_STEPS
    assert answers[early - 1] == early + budget.planned_steps(60 - 0.25 * early, 0.25)
    assert answers[:early - 1] + answers[early:-1] == [None] * (budget.CALIBRATION_STEPS - 2)
    # the same step time: the calibration plans the same length, so nothing changes
    assert budget.CALIBRATION_STEPS + budget.planned_steps(60 - 0.25 * budget.CALIBRATION_STEPS, 0.25) == steps
    assert answers[-1] is None and f"planned --steps 500 -> {steps}" in planner.last_notice


def test_a_budget_that_ends_before_the_calibration_is_replanned_early_so_the_cosine_anneals():
    # a slow machine: 1 s a step, a 6 s budget planned at 175 steps; without the early plan the cosine would
    # end the run near its peak at step 6 of 175
    planner = budget.StepPlanner(minutes=0.1, eval_every=100)
    plans = [planner.observe(step, 1.0, 175) for step in range(1, budget.EARLY_STEPS + 1)]
    assert plans[:-1] == [None] * (budget.EARLY_STEPS - 1)
    assert plans[-1] == budget.EARLY_STEPS + budget.planned_steps(6 - budget.EARLY_STEPS, 1.0) == 5
    assert "planned --steps 175 -> 5" in planner.last_notice


def test_the_planner_counts_this_invocations_steps_and_says_no_limit_for_an_unplanned_length():
    # a resume starts past step 20: its early plan still comes after its own third step
    planner = budget.StepPlanner(minutes=1.0, eval_every=1000)
    plans = [planner.observe(step, 0.5, None) for step in range(401, 401 + budget.EARLY_STEPS)]
    assert plans[-1] is not None and "planned --steps no limit ->" in planner.last_notice


def test_planned_run_resumes_exactly(tmp_path):
    """The planner's step count is the run's `steps`, stored in its checkpoints: the cosine schedule of a resume
    is the one the run was writing, and the learning rate at each step is cosine over that count."""
    run = tmp_path / "run"
    config = TrainConfig.from_options(dict(SMALL, minutes=0.02, schedule="cosine", steps=1000))
    trainer = Trainer(config, run, corpus=(TEXT, "t"))
    trainer.step_planner = budget.StepPlanner(0.02, trainer.config.eval_every)
    trainer.train()
    stored = json.loads((run / "latest.json").read_text())
    planned = stored["train"]["steps"]
    assert planned == trainer.config.steps
    if trainer.progress.step >= budget.CALIBRATION_STEPS:   # a loaded machine may not reach the calibration
        assert planned != 1000
    step = stored["step"]
    expected = 0.5 * trainer.config.lr * (1 + math.cos(math.pi * step / planned))
    assert stored["history"][-1]["lr"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    resumed = Trainer(TrainConfig.from_options(stored["train"]), run, corpus=(TEXT, "t"))
    restore(resumed, run / "latest.json")
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_samples_during_training_continue_the_prose_prime(tmp_path, capsys):
    config = TrainConfig.from_options({**SMALL, "sample_every": 5, "sample_length": 10, "steps": 5})
    Trainer(config, tmp_path / "run", corpus=(TEXT, "t")).train()
    out = capsys.readouterr().out
    assert "--- sample at step 5 ---\nThe quick brown fox jumps over " in out


def test_a_cosine_run_resumed_with_minutes_alone_plans_its_steps(text_file, tmp_path, capsys):
    """`--resume RUN --minutes M` (no --steps) of a cosine run: the schedule gets a length planned from the run's
    own step time, instead of a refusal for want of one; training continues past the old end."""
    run = tmp_path / "run"
    assert main(["train", str(text_file), *SMALL_ARGS, "--schedule", "cosine", "--steps", "5", "--quiet",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", str(text_file), "--resume", str(run), "--minutes", "0.005", "--quiet"]) == 0
    said = capsys.readouterr()
    assert "planned for the cosine schedule to end with --minutes 0.005" in said.out + said.err
    stored = json.loads((run / "latest.json").read_text())
    assert stored["train"]["minutes"] == 0.005 and stored["train"]["steps"] > 5 and stored["step"] > 5
