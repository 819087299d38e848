"""Data-parallel training over MPI: 2 ranks on a global batch against one process, exact resume, a failing rank.

The MPI tests start `mpiexec -n 2` (the one next to this Python, from the `mpich` wheel of the test extra, or
the one on PATH) and skip, saying why, where mpi4py or an mpiexec cannot be had."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from chainrule.charlm.checkpoint import load_checkpoint
from chainrule.charlm.distributed import DistributedError, World, launched

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
HAVE_MPI = importlib.util.find_spec("mpi4py") is not None and MPIEXEC is not None
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="MPI training needs mpi4py and an mpiexec: pip install "
                               "mpi4py mpich (part of the test extra on Linux)")

TEXT = ("KING: What say you, then, to this? Speak, for the hour is late.\n"
        "QUEEN: My lord, the night is young, and so is the quarrel.\n") * 40
# dropout 0: a one-process run and a 2-rank run draw their masks differently (each rank has its own stream)
SMALL = ["--hidden", "24", "--layers", "2", "--embedding", "8", "--batch-size", "8", "--seq-len", "16",
         "--sample-every", "0", "--quiet"]
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK",
                      "SLURM_PROCID", "SLURM_STEP_NUM_TASKS")


def environment():
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    # one BLAS thread per rank; the NumPy kernels, so that no rank spends seconds compiling numba's
    return {**env, "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
            "CHAINRULE_KERNELS": "numpy"}


def run(*args, ranks=None, timeout=240):
    command = [sys.executable, *map(str, args)]
    if ranks is not None:
        command = [MPIEXEC, "-n", str(ranks), *command]
    return subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=timeout)


def train(*args, ranks=None):
    result = run("-m", "chainrule", "train", *args, ranks=ranks)
    assert result.returncode == 0, f"train {args} on {ranks} rank(s) failed ({result.returncode}):\n{result.stderr}"
    return result


def weights(folder):
    arrays, meta = load_checkpoint(Path(folder) / "latest.json")
    return {k: v for k, v in arrays.items() if k.startswith("model.")}, meta


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("texts") / "play.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


# -- without MPI ------------------------------------------------------------------------------------------
def test_launcher_is_read_from_the_environment():
    assert launched({"PMI_RANK": "1", "PMI_SIZE": "2"})[:2] == (1, 2)
    assert launched({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4"})[:2] == (3, 4)
    assert launched({"PMIX_RANK": "0", "SLURM_STEP_NUM_TASKS": "8"})[:2] == (0, 8)
    assert launched({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"}) is None   # srun -n 1: alone
    assert launched({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}) is None   # a batch script itself: one process
    assert launched({"PMI_RANK": "x", "PMI_SIZE": "2"}) is None


def test_training_alone_does_not_import_mpi4py():
    probe = ("import sys; from chainrule.charlm import training; from chainrule.charlm.distributed import "
             "current_world; w = current_world(); print(w.size, 'mpi4py' in sys.modules)")
    result = run("-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "False"]


def test_a_batch_the_ranks_cannot_share_is_refused():
    world = World(0, 3)
    with pytest.raises(DistributedError, match=r"--batch-size 64 .* 3 does not divide 64. Give a multiple of 3 "
                                               r"\(e.g. 66 or 63\)"):
        world.check_batch(64)
    world.check_batch(63)
    assert World(2, 4).rows(64) == slice(32, 48)


def test_alone_every_collective_is_the_identity():
    world = World.alone()
    batch = (np.arange(12).reshape(4, 3), np.arange(12).reshape(4, 3))
    assert world.shard(batch) is batch
    assert world.mean(2.5) == 2.5
    world.check_identical({"w": np.ones(3)})
    assert world.evaluate(lambda ids, streams: (1.25, 10), np.arange(20), 4) == 1.25


# -- with 2 ranks -----------------------------------------------------------------------------------------
@needs_mpi
def test_two_ranks_give_the_weights_of_one_process_on_the_global_batch(text, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    options = [*SMALL, "--dropout", "0", "--steps", "20", "--eval-every", "10"]
    train(text, *options, "--out", one)
    train(text, *options, "--out", two, ranks=2)
    alone, meta_alone = weights(one)
    pair, meta_pair = weights(two)
    assert (meta_alone["world_size"], meta_pair["world_size"]) == (1, 2)
    assert alone.keys() == pair.keys()
    for name in alone:
        # float32: the ranks sum their halves of the batch, then the Allreduce adds the two halves, a
        # different order of the same sums than one process's (measured: ~5e-8 relative, float32's rounding)
        relative = np.linalg.norm(pair[name] - alone[name]) / np.linalg.norm(alone[name])
        assert relative <= 1e-6, (name, relative)
    # the validation loss is the global one (each rank evaluates its streams, reduced), logged once, by rank 0
    log_alone = [json.loads(line) for line in (one / "log.jsonl").read_text().splitlines()]
    log_pair = [json.loads(line) for line in (two / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_pair] == [10, 20]
    for a, b in zip(log_alone, log_pair):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    assert (two / "loss.png").exists()


@needs_mpi
def test_two_ranks_resume_exactly_and_one_process_continues_their_run(text, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    options = [*SMALL, "--dropout", "0.2", "--eval-every", "6"]
    # the three trainings in one job (one start of the 2 ranks): straight to 12, to 6, then resumed to 12
    script = textwrap.dedent(f"""
        from chainrule.charlm.cli import main
        from chainrule.charlm.distributed import current_world, run_on_every_rank

        def trainings():
            for args in ({[str(text), *options, "--steps", "12", "--out", str(straight)]!r},
                         {[str(text), *options, "--steps", "6", "--out", str(split)]!r},
                         ["--resume", {str(split)!r}]):
                if args[0] == "--resume":
                    if current_world().is_root:
                        shutil.copytree({str(split)!r}, {str(tmp_path / "alone")!r})
                    current_world().comm.Barrier()
                    args = [{str(text)!r}, *args, "--steps", "12", "--quiet"]
                status = main(["train", *args])
                if status:
                    return status
            return 0

        import shutil
        raise SystemExit(run_on_every_rank(trainings))
    """)
    result = run("-c", script, ranks=2)
    assert result.returncode == 0, result.stderr
    expected, _ = weights(straight)
    resumed, meta = weights(split)
    assert meta["world_size"] == 2
    for name in expected:   # same world size: the same run, bit for bit (dropout masks included)
        np.testing.assert_array_equal(resumed[name], expected[name], err_msg=name)
    alone = train(text, "--resume", tmp_path / "alone", "--steps", "8", "--quiet")
    assert ("the run was trained on 2 MPI process(es) and continues on 1: it takes all 8 streams of each global "
            "batch") in alone.stdout + alone.stderr
    assert weights(tmp_path / "alone")[1]["world_size"] == 1


@needs_mpi
def test_a_batch_size_the_ranks_cannot_share_ends_the_job_with_the_reason(text, tmp_path):
    """M: an error every rank meets before the first collective is rank 0's one line and status 2 on every
    rank, not MPICH's MPI_Abort line with another rank's prefixed copy."""
    result = run("-m", "chainrule", "train", text, *SMALL, "--batch-size", "7", "--steps", "2", "--out",
                 tmp_path / "run", ranks=2)
    assert result.returncode == 2
    assert "--batch-size 7 is the global batch" in result.stderr and "Give a multiple of 2" in result.stderr
    assert "MPI_Abort" not in result.stderr and "[rank" not in result.stderr
    assert result.stderr.count("error:") == 1


@needs_mpi
def test_ranks_that_read_other_texts_are_stopped_naming_the_rank(text, tmp_path):
    """A5: a rank given another file (other bytes) or other options once trained apart silently."""
    other = tmp_path / "other.txt"
    other.write_text(TEXT.replace("e", "Q"), encoding="utf-8")
    command = [sys.executable, "-m", "chainrule", "train"]
    tail = [*SMALL, "--steps", "2", "--out", str(tmp_path / "run")]
    for second in ([str(other), *tail], [str(text), *tail, "--lr", "0.01"]):
        result = subprocess.run([MPIEXEC, "-n", "1", *command, str(text), *tail, ":", "-n", "1", *command,
                                 *second], capture_output=True, text=True, env=environment(), timeout=240)
        assert result.returncode == 2, result.stderr
        assert "MPI process 1 (of 2) would train on other data or another model than process 0" in result.stderr
        assert ("text_sha256, vocabulary differ" if second[0] == str(other) else "its lr differs") in result.stderr
        assert "MPI_Abort" not in result.stderr


@needs_mpi
@pytest.mark.parametrize("failure", ["raises", "raises in set-up", "diverged"])
def test_a_failing_rank_ends_the_whole_job_promptly_with_its_message(failure):
    script = textwrap.dedent(f"""
        import numpy as np
        from chainrule.charlm.distributed import current_world, run_on_every_rank

        def main():
            world = current_world()
            if {failure!r} in ("raises", "raises in set-up"):
                if {failure!r} == "raises":
                    world.mean(0.0)   # past the first collective: a failure of one rank aborts the job
                if world.rank == 1:
                    raise ValueError("rank one cannot read its shard")
                world.mean(0.0)
                world.comm.Barrier()   # rank 0 waits for rank 1 forever, unless the job is aborted
            else:
                world.check_identical({{"weight": np.array([1.0, 2.0 + world.rank])}})
            return 0

        raise SystemExit(run_on_every_rank(main))
    """)
    start = time.monotonic()
    result = run("-c", script, ranks=2, timeout=60)
    assert time.monotonic() - start < 30
    assert result.returncode != 0
    if failure != "diverged":
        assert "[rank 1]" in result.stderr and "ValueError: rank one cannot read its shard" in result.stderr
        # before the first collective every rank learns of it there: the same status, no MPI_Abort
        assert ("MPI_Abort" in result.stderr) == (failure == "raises")
    else:
        assert "the weights of the 2 MPI processes differ" in result.stderr


@pytest.mark.parametrize("case", ["without mpi4py", "MPI sees one process"])
def test_a_launcher_that_mpi_does_not_match_is_refused_with_the_reason(case, text, tmp_path):
    if case == "MPI sees one process" and not HAVE_MPI:
        pytest.skip("needs mpi4py")
    hide = "import sys; sys.modules['mpi4py'] = None; " if case == "without mpi4py" else ""
    probe = (f"{hide}import sys; from chainrule.__main__ import main; sys.exit(main(['train', {str(text)!r}, "
             f"'--steps', '1', '--out', {str(tmp_path / 'run')!r}]))")
    env = {**environment(), "PMI_RANK": "0", "PMI_SIZE": "2"}   # what mpiexec -n 2 sets, without mpiexec
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    if case == "without mpi4py":
        assert "as one of 2 processes (PMI_RANK=0, PMI_SIZE=2), but mpi4py cannot be imported" in result.stderr
        assert "pip install 'chainrule[mpi]'" in result.stderr
    else:
        assert "but MPI sees process 0 of 1: mpi4py's MPI library is not the launcher's" in result.stderr
    assert not (tmp_path / "run").exists()
