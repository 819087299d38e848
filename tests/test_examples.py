"""The worked examples and `chainrule diagnose` run end to end (small sizes), so none of them rots."""
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(*args, timeout=300):
    result = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result.stdout


def picture(path: Path) -> Path:
    """The rendered picture, or the DOT text written in its place where Graphviz is absent."""
    return path if path.exists() else path.with_suffix(".dot")


def test_01_computational_graph(tmp_path):
    out = run(EXAMPLES / "01_computational_graph.py", "--out", tmp_path)
    assert "f = q·z = -12" in out and "= -4 · 1 = -4" in out
    assert picture(tmp_path / "01_f_equals_z_times_x_plus_y.svg").stat().st_size > 0


def test_02_branching_and_reuse(tmp_path):
    out = run(EXAMPLES / "02_branching_and_reuse.py", "--out", tmp_path)
    assert "d = 75, dd/da = 35 (central difference: 35.000000)" in out
    assert "Book-style recursion: 36; chainrule: 24" in out
    assert picture(tmp_path / "02_book_example.svg").exists() and picture(tmp_path / "02_reuse.svg").exists()


def test_03_softmax_nll(tmp_path):
    out = run(EXAMPLES / "03_softmax_nll.py", "--out", tmp_path)
    lines = dict(line.split("=", 1) for line in out.splitlines() if "=" in line and not line.startswith("the"))
    assert lines["dL/dz       "] == lines["S - onehot  "] == lines["numerical   "]


def test_04_min_char_rnn():
    out = run(EXAMPLES / "04_min_char_rnn.py", "--seconds", 3, "--hidden", 32)
    assert "nats/char" in out and "sample:" in out


def test_05_vanishing_exploding(tmp_path):
    out = run(EXAMPLES / "05_vanishing_exploding.py", "--seq-len", 40, "--hidden", 32, "--out", tmp_path)
    assert "σ_max(W_hh)" in out and "decay/step" in out
    png = tmp_path / "05_vanishing_exploding.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_diagnose_command_compare_and_checkpoint(tmp_path):
    png = tmp_path / "flow.png"
    out = run("-m", "chainrule", "diagnose", "--compare", "rnn,lstm,gru", "--seq-len", 30, "--sigma", 0.5,
              "--out", png)
    assert "steps back" in out and "σ_max(W_hh)" in out and png.stat().st_size > 1000
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question. " * 40)
    run_dir = tmp_path / "run"
    run("-m", "chainrule", "train", text, "--hidden", 16, "--layers", 2, "--steps", 3, "--batch-size", 4,
        "--seq-len", 16, "--quiet", "--sample-every", 0, "--out", run_dir)
    trained_png = tmp_path / "trained.png"
    out = run("-m", "chainrule", "diagnose", run_dir, "--text", text, "--seq-len", 20, "--out", trained_png)
    assert "lstm 2x16 (trained)" in out and trained_png.stat().st_size > 1000
    result = subprocess.run([sys.executable, "-m", "chainrule", "diagnose", "--compare", "rnn,transformer"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "transformer" in result.stderr


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_has_a_docstring_with_its_command(script):
    source = (EXAMPLES / script).read_text()
    assert source.startswith('"""') and f"python examples/{script}" in source
