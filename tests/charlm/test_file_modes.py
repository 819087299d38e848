"""Files written through a temporary name and renamed into place (checkpoints, the reconciled log, loss.png, the
corpus cache) get the mode a normally created file gets, 0o666 less the umask, not mkstemp's 0o600."""
import os
import stat

import pytest

from chainrule.charlm.checkpoint import new_file_mode, write_atomically
from chainrule.charlm.corpus import _write_json
from chainrule.charlm.plots import draw_loss


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_mode_is_what_open_gives(tmp_path, umask_027):
    with open(tmp_path / "plain", "w"):
        pass
    assert new_file_mode() == mode(tmp_path / "plain") == 0o640
    (tmp_path / "folder").mkdir()
    assert new_file_mode(folder=True) == mode(tmp_path / "folder") == 0o750


def test_atomic_writers_give_a_normal_files_mode(tmp_path, umask_027):
    write_atomically(tmp_path / "latest.json", b"{}")        # checkpoints and the reconciled log go through it
    _write_json(tmp_path / "index.json", {"sha256": "0"})
    pytest.importorskip("matplotlib")
    draw_loss([{"step": 1, "train_loss": 2.0, "val_loss": 2.1, "elapsed": 6.0, "losses": [2.0]}], "t", tmp_path)
    for name in ("latest.json", "index.json", "loss.png"):
        assert mode(tmp_path / name) == 0o640, name


def test_a_training_run_writes_normal_files(tmp_path, umask_027):
    from chainrule.charlm.training import TrainConfig, Trainer
    config = TrainConfig.from_options(dict(model="rnn", hidden=8, layers=1, seq_len=8, batch_size=2, steps=2,
                                           eval_every=2, sample_every=0))
    Trainer(config, tmp_path / "run", quiet=True, corpus=("to be or not to be, that is the question\n" * 20,
                                                         "t")).train()
    written = [path for path in (tmp_path / "run").iterdir() if path.is_file()]
    assert any(path.name == "best.json" for path in written)
    assert {path.name: mode(path) for path in written} == {path.name: 0o640 for path in written}
