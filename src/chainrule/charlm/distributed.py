"""Data-parallel training over MPI (mpi4py): which process is which, and the few collective operations a step needs.

`chainrule train` started by an MPI launcher (`mpiexec -n 4 chainrule train TEXT --batch-size 64`) trains on
every process ("rank") at once: each rank takes its rows of every global batch (rank r of W takes rows
[r*B/W, (r+1)*B/W) of the B streams; a batch size that W does not divide is refused), computes the gradient of
its rows' mean loss, and one in-place Allreduce over a preallocated flat buffer averages the gradients; each
rank then clips with the global norm and applies the same optimizer step, so the weights stay identical.

The launcher is recognised from the variables it sets (`LAUNCHERS`) without importing mpi4py, so a run without
a launcher (or with one process) neither needs nor imports it: `current_world()` is then `World.alone()`, whose
operations are no-ops.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

# (rank variable, size variable, who sets them), in the order they are trusted
LAUNCHERS = (
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "Open MPI's mpirun"),
    ("PMI_RANK", "PMI_SIZE", "MPICH's mpiexec (Hydra) or srun --mpi=pmi2"),
    ("PMIX_RANK", "SLURM_STEP_NUM_TASKS", "srun --mpi=pmix"),
    ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "srun"),
)


class PeerFailedInSetUp(Exception):
    """Another rank failed before the first collective: every rank learnt it at that collective, and this one
    ends with the same `status` (the failing rank reports why)."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__(f"rank(s) {[r for r, s in enumerate(statuses) if s]} failed while setting up")
        self.statuses = statuses


class DistributedError(ValueError):
    """MPI training cannot start or go on: a launcher without mpi4py, a launcher and an MPI library that
    disagree on the number of processes, a batch the ranks cannot share, or ranks whose weights diverged
    (a ValueError, as the command line reports a bad set-up: one line, no traceback)."""


def launched(environ: Mapping[str, str] | None = None) -> tuple[int, int, str] | None:
    """(rank, world size, the variables read) when a launcher started this process as one of several; None
    otherwise (no launcher, or one process). Reads the environment only; never imports mpi4py.

    >>> launched({"PMI_RANK": "1", "PMI_SIZE": "4"})
    (1, 4, 'PMI_RANK=1, PMI_SIZE=4')
    >>> launched({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1"}) is None
    True
    >>> launched({}) is None
    True
    """
    environ = os.environ if environ is None else environ
    for rank_name, size_name, _ in LAUNCHERS:
        if rank_name in environ and size_name in environ:
            try:
                rank, size = int(environ[rank_name]), int(environ[size_name])
            except ValueError:
                continue
            if size > 1 and 0 <= rank < size:
                return rank, size, f"{rank_name}={rank}, {size_name}={size}"
    return None


class World:
    """This process's place among the ranks of a data-parallel run: `rank` of `size`, and the collectives.

    `World.alone()` (size 1, no communicator) makes every operation the identity, so the training loop calls
    them unconditionally.
    """

    def __init__(self, rank: int, size: int, comm: Any = None) -> None:
        self.rank, self.size, self.comm = rank, size, comm
        self._buffer: np.ndarray | None = None
        # the first collective gathers every rank's set-up status, so that an error all ranks (or one) met
        # before it ends the job with each rank's own status, not MPI_Abort
        self.met = False
        # set when a collective's result raised the same error on every rank (each knows; nothing to abort)
        self.failed_together = False

    @classmethod
    def alone(cls) -> World:
        return cls(0, 1, None)

    @property
    def is_root(self) -> bool:
        """Rank 0: the one that takes the run folder's lock, writes checkpoints, the log and the plot, and shows
        progress."""
        return self.rank == 0

    # -- sharing the batch -------------------------------------------------------------------------------
    def check_batch(self, batch_size: int) -> None:
        """Raise `DistributedError` unless the `size` ranks can take equal shares of `batch_size` streams."""
        if batch_size % self.size:
            lower, upper = batch_size // self.size * self.size, (batch_size // self.size + 1) * self.size
            raise DistributedError(
                f"--batch-size {batch_size} is the global batch, shared by the {self.size} MPI processes in equal "
                f"parts so that the averaged gradient is the whole batch's; {self.size} does not divide "
                f"{batch_size}. Give a multiple of {self.size} (e.g. {upper}"
                + (f" or {lower}" if lower else "") + ") or another number of processes")

    def rows(self, count: int) -> slice:
        """This rank's rows of `count` equal-shared rows: [rank*count/size, (rank+1)*count/size)."""
        share = count // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

    def shard(self, batch: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """This rank's rows of a global (inputs, targets) batch, each (B, T) -> (B/size, T)."""
        if self.size == 1:
            return batch
        rows = self.rows(batch[0].shape[0])
        return batch[0][rows], batch[1][rows]

    # -- set-up ------------------------------------------------------------------------------------------
    def meet(self, status: int = 0) -> list[int]:
        """The first collective of a run: gather every rank's set-up `status` (0: ready). A ready rank raises
        `PeerFailedInSetUp` when another one failed; called by every collective before its own work (and by
        `run_on_every_rank` for a rank that failed before any)."""
        if self.size == 1 or self.met:
            return [status]
        self.met = True
        statuses = [int(s) for s in self.comm.allgather(int(status))]
        if any(statuses) and not status:
            raise PeerFailedInSetUp(statuses)
        return statuses

    def check_same(self, description: Mapping[str, Any]) -> None:
        """Raise `DistributedError` on every rank when the ranks' `description` (the text's SHA-256, its
        vocabulary, the options that fix the model and the data) differ from rank 0's: one allgather of the
        SHA-256 of its JSON; on a difference, the differing keys are gathered to name them."""
        if self.size == 1:
            return
        self.meet()
        encoded = json.dumps(description, sort_keys=True, default=str).encode("utf-8", "surrogatepass")
        digests = self.comm.allgather(hashlib.sha256(encoded).hexdigest())
        others = [rank for rank, digest in enumerate(digests) if digest != digests[0]]
        if not others:
            return
        descriptions = self.comm.allgather(json.loads(json.dumps(description, sort_keys=True, default=str)))
        rank = others[0]
        keys = sorted(key for key in set(descriptions[0]) | set(descriptions[rank])
                      if descriptions[0].get(key) != descriptions[rank].get(key))
        self.failed_together = True
        raise DistributedError(
            f"MPI process {rank} (of {self.size}) would train on other data or another model than process 0: "
            f"its {', '.join(keys)} differ{'s' if len(keys) == 1 else ''}"
            + (f" (and {len(others) - 1} more process(es) differ)" if len(others) > 1 else "")
            + ". Give every process the same text file (the same bytes) and the same options")

    # -- the step ----------------------------------------------------------------------------------------
    def mean(self, value: float) -> float:
        """The mean over ranks of a float (each rank's loss on its equal share: the global batch's loss)."""
        if self.size == 1:
            return value
        self.meet()
        total = np.array([value], dtype=np.float64)
        self.comm.Allreduce(self._mpi().IN_PLACE, total, op=self._mpi().SUM)
        return float(total[0] / self.size)

    def average_gradients(self, parameters: Sequence[Any]) -> None:
        """Replace each parameter's gradient by its mean over the ranks: all gradients are copied into one
        preallocated flat buffer, reduced by one in-place Allreduce (SUM), divided by the world size and copied
        back. A parameter without a gradient counts as a zero gradient (it gets the mean of the others')."""
        if self.size == 1:
            return
        self.meet()
        total = sum(int(p.data.size) for p in parameters)
        dtype = np.result_type(*[p.data.dtype for p in parameters])
        if self._buffer is None or self._buffer.size != total or self._buffer.dtype != dtype:
            self._buffer = np.empty(total, dtype=dtype)
        buffer, start = self._buffer, 0
        for p in parameters:
            end = start + p.data.size
            if p.grad is None:
                buffer[start:end] = 0
            else:
                buffer[start:end] = np.ravel(p.grad)
            start = end
        mpi = self._mpi()
        self.comm.Allreduce(mpi.IN_PLACE, buffer, op=mpi.SUM)
        buffer /= self.size   # the sum of the ranks' mean gradients, over W: the global batch's mean gradient
        start = 0
        for p in parameters:
            end = start + p.data.size
            mean = buffer[start:end].reshape(p.data.shape)
            if isinstance(p.grad, np.ndarray) and p.grad.shape == mean.shape and p.grad.flags.writeable:
                p.grad[...] = mean
            else:
                p.grad = mean.astype(p.data.dtype, copy=True)
            start = end

    def check_identical(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Raise `DistributedError` on every rank when the ranks' `arrays` (the weights) differ: a float64 sum
        and sum of squares of all of them, reduced MIN and MAX."""
        if self.size == 1:
            return
        self.meet()
        checksum = np.zeros(2, dtype=np.float64)
        for value in arrays.values():
            flat = np.asarray(value, dtype=np.float64).ravel()
            checksum += (flat.sum(), flat @ flat)
        low, high = checksum.copy(), checksum.copy()
        mpi = self._mpi()
        self.comm.Allreduce(mpi.IN_PLACE, low, op=mpi.MIN)
        self.comm.Allreduce(mpi.IN_PLACE, high, op=mpi.MAX)
        if not np.array_equal(low, high, equal_nan=True):
            self.failed_together = True
            raise DistributedError(
                f"the weights of the {self.size} MPI processes differ (checksums from {low[0]!r} to {high[0]!r}); "
                "they must stay identical. A process used other code, another NumPy/BLAS build, or a different "
                "checkpoint; run every process from the same installation and the same run folder")

    # -- evaluation and checkpoints ----------------------------------------------------------------------
    def evaluate(self, evaluate: Callable[[np.ndarray, int], tuple[float, int]], ids: np.ndarray,
                 batch_size: int) -> float:
        """The mean loss of `ids` read as `batch_size` streams, each rank evaluating its share of the streams.

        `evaluate(ids, batch_size)` -> (mean loss, characters) is the one-process evaluation; this rank passes
        it the contiguous stretch of `ids` that holds its rows (so the streams are exactly the one-process
        ones), and the ranks' summed losses are reduced: sum of loss x characters over the sum of characters.
        Unequal shares (a short text with fewer streams) are weighted exactly by their characters."""
        if self.size == 1:
            return evaluate(ids, batch_size)[0]
        self.meet()
        streams = max(1, min(batch_size, (len(ids) - 1) // 2))   # as the one-process evaluation clamps it
        length = (len(ids) - 1) // streams
        bounds = np.linspace(0, streams, self.size + 1).round().astype(int)
        first, last = int(bounds[self.rank]), int(bounds[self.rank + 1])
        totals = np.zeros(2, dtype=np.float64)
        if last > first:
            loss, characters = evaluate(ids[first * length:last * length + 1], last - first)
            totals[:] = loss * characters, characters
        mpi = self._mpi()
        self.comm.Allreduce(mpi.IN_PLACE, totals, op=mpi.SUM)
        return float(totals[0] / totals[1])

    def gather_rows(self, arrays: list[np.ndarray], axis: int) -> list[np.ndarray]:
        """Each array's global form: the ranks' equal row shares along `axis`, concatenated in rank order."""
        if self.size == 1:
            return arrays
        self.meet()
        gathered = []
        for array in arrays:
            parts = self.comm.allgather(np.ascontiguousarray(array))
            gathered.append(np.concatenate(parts, axis=axis))
        return gathered

    def own_rows(self, arrays: list[np.ndarray], axis: int) -> list[np.ndarray]:
        """This rank's rows along `axis` of global arrays (a checkpoint's carried state)."""
        if self.size == 1:
            return arrays
        return [np.ascontiguousarray(np.take(a, range(a.shape[axis])[self.rows(a.shape[axis])], axis=axis))
                for a in arrays]

    def decorrelate(self, generator: np.random.Generator) -> None:
        """Give each rank its own random stream (dropout masks), derived from rank 0's: rank r's PCG64 state is
        rank 0's jumped r times (each jump advances 2^127 draws, so the streams never overlap). Deterministic
        in rank 0's state, so a resume that derives it again continues exactly."""
        if self.size == 1:
            return
        self.meet()
        state = self.comm.bcast(generator.bit_generator.state, root=0)
        bit_generator = type(generator.bit_generator)()
        bit_generator.state = state
        # the default generator's PCG64 has jumped(); BitGenerator's stub does not declare it
        generator.bit_generator.state = (bit_generator.jumped(self.rank).state  # type: ignore[attr-defined]
                                         if self.rank else state)

    def abort(self, status: int) -> None:
        """End every rank of the job now with `status` (MPI_Abort): a failure on one rank must not leave the
        others waiting in a collective forever."""
        if self.comm is None:
            raise SystemExit(status)
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(status)

    @staticmethod
    def _mpi() -> Any:
        from mpi4py import MPI

        return MPI


_world: World | None = None


def current_world() -> World:
    """The world of this process: `World.alone()` unless a launcher started it as one of several, then the
    MPI world (mpi4py imported here, on first use). Raises `DistributedError` when mpi4py is missing or the
    MPI library sees another number of processes than the launcher announced."""
    global _world
    if _world is not None:
        return _world
    found = launched()
    if found is None:
        _world = World.alone()
        return _world
    rank, size, variables = found
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise DistributedError(f"started by an MPI launcher as one of {size} processes ({variables}), but mpi4py "
                               f"cannot be imported ({error}); install it with pip install 'chainrule[mpi]', or "
                               "run without the launcher to train in one process") from None
    comm = MPI.COMM_WORLD
    if comm.Get_size() != size or comm.Get_rank() != rank:
        raise DistributedError(
            f"the launcher announced process {rank} of {size} ({variables}), but MPI sees process "
            f"{comm.Get_rank()} of {comm.Get_size()}: mpi4py's MPI library is not the launcher's (e.g. the "
            "mpich wheel started by Open MPI's mpirun, or srun without --mpi=pmix). Launch with the mpiexec of "
            "the MPI that mpi4py uses (python -c 'import mpi4py; print(mpi4py.get_config())')")
    _world = World(rank, size, comm)
    return _world


def run_on_every_rank(main: Callable[[], int]) -> int:
    """Run `main` on this rank; when it fails (an exception, or a non-zero status after printing its message),
    end the whole job with MPI_Abort so that no rank waits forever for this one. Two failures every rank knows
    of end without MPI_Abort, each rank returning the same status: one before the first collective (the ranks
    learn it at that collective, `World.meet`; rank 0's line, or the failing rank's when rank 0 was ready), and
    the same error raised on every rank from one collective's result (`check_same`, `check_identical`).
    Rank 0 speaks for the run; the others keep standard output quiet and hold back standard error, which they
    print (each line prefixed with the rank) only when they fail. Without a launcher this is `main()`."""
    try:
        world = current_world()
    except DistributedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if world.size == 1:
        return main()
    held = None
    if not world.is_root:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")   # noqa: SIM115 (for the rest of the process)
        sys.stderr = held = _HeldBack(sys.stderr)
    try:
        status = main()
    except SystemExit as ended:
        status = ended.code if isinstance(ended.code, int) else (0 if ended.code is None else 1)
    except PeerFailedInSetUp as peer:
        return max(peer.statuses)   # the failing rank says why; every rank ends with the same status
    except BaseException:
        traceback.print_exc()
        status = 1
    if status and not world.met:
        # failed before any collective: the others learn it at their first one (no MPI_Abort, no lost line)
        statuses = world.meet(status)
        if held is not None and statuses[0] == 0:
            held.release(f"[rank {world.rank}] ")   # rank 0 did not fail: this rank's line is the reason
        return max(statuses)
    if status and world.failed_together:
        return status   # every rank raised the same error from one collective's result; rank 0 printed it
    if status:
        if held is not None:
            held.release(f"[rank {world.rank}] ")
        world.abort(status)
    return status


class _HeldBack:
    """Standard error of a rank other than 0: kept (its last `limit` characters) and printed only on failure."""

    def __init__(self, stream: Any, limit: int = 1 << 20) -> None:
        self.stream, self.limit, self.text = stream, limit, ""

    def write(self, text: str) -> int:
        self.text = (self.text + text)[-self.limit:]
        return len(text)

    def flush(self) -> None:
        pass

    def release(self, prefix: str) -> None:
        self.stream.write("".join(prefix + line for line in self.text.splitlines(keepends=True)))
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
