"""loss.png on a short run: whole steps on the step axis, minute labels that do not run together, and the
single validation point visible under the best-checkpoint star."""
import numpy as np
import pytest

pytest.importorskip("matplotlib")

from chainrule.charlm.plots import draw_loss, loss_figure, minute_ticks  # noqa: E402

# a start-up's first evaluation: 0.30 minutes for 2 steps, then 0.05 minutes for the next 2
SHORT = [{"step": 2, "train_loss": 3.0, "val_loss": 3.1, "elapsed": 18.0, "losses": [3.2, 3.0]},
         {"step": 4, "train_loss": 2.8, "elapsed": 21.0, "losses": [2.9, 2.8]}]


def visible(values, limits):
    return [v for v in values if limits[0] <= v <= limits[1]]


def test_step_ticks_are_whole_numbers_and_minute_labels_keep_apart(tmp_path):
    import matplotlib.pyplot as plt
    figure = loss_figure(SHORT, "short")
    try:
        axes = figure.axes[0]
        limits = axes.get_xlim()
        ticks = visible(axes.get_xticks(), limits)
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
        (top,) = axes.child_axes
        minutes = top.get_xticks()
        assert len(minutes) >= 2
        at = np.interp(minutes, [0.0, 0.3, 0.35], [0, 2, 4])   # where each label sits, in steps
        assert np.all(np.diff(at) >= (limits[1] - limits[0]) / 8)
    finally:
        plt.close(figure)
    draw_loss(SHORT, "short", tmp_path)
    assert (tmp_path / "loss.png").stat().st_size > 0


def test_minute_ticks_drop_labels_crowded_where_the_clock_runs_fast():
    steps, minutes = np.array([0.0, 2, 4]), np.array([0.0, 0.3, 0.35])
    ticks = minute_ticks(steps, minutes, 0, 4)
    at = np.interp(ticks, minutes, steps)
    assert np.all(np.diff(at) >= 0.5) and ticks[0] == 0.0 and ticks == sorted(ticks)
    assert minute_ticks(np.array([0.0, 100]), np.array([0.0, 10]), 0, 100) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]


def test_the_single_validation_point_shows_inside_a_hollow_star():
    import matplotlib.pyplot as plt
    figure = loss_figure(SHORT, "short")
    try:
        lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
        star = next(line for label, line in lines.items() if label.startswith("best checkpoint"))
        point = lines["validation"]
        assert star.get_markerfacecolor() == "none" and star.get_zorder() > point.get_zorder()
        assert list(point.get_xdata()) == [2] and point.get_marker() == "o"
    finally:
        plt.close(figure)
