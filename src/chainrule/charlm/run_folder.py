"""A run folder's ownership: one training writes into it at a time (`RunLock`, `claim_run_folder`), and what
the folder holds, said in words a user can act on (the checkpoints on disk, the command that continues the
run, names and errors as one printable line).

A run folder is copied, downloaded and shared: what it holds is read through `checkpoint`'s guarded readers
(regular files only, never through a symbolic link, bounded in size), and a path it records is shown, never
opened.
"""
from __future__ import annotations

import errno
import json
import os
import shlex
import socket
import time
from pathlib import Path

from .checkpoint import (MAX_DESCRIPTION_BYTES, CheckpointError, open_regular_file, read_regular_file,
                         remove_leftovers, run_files)
from .distributed import current_world


class RunInUse(RuntimeError):
    """Another process holds the run folder's lock: it is training into that folder now."""


class RunExists(RuntimeError):
    """A fresh run was asked for in a folder that already holds a run's files."""


LOCK_NAME = ".chainrule.lock"


class RunLock:
    """An exclusive lock on a run folder for as long as one process writes to it (`fcntl.flock`, POSIX), on the
    folder itself and on RUN/.chainrule.lock. The kernel drops it when the process ends, however it ends (kill
    -9 included), so a crash never leaves a stale lock. The lock on the folder's own descriptor holds even when
    someone deletes the lock file; `check` tells whether the path still names the locked folder (after `rm -rf
    RUN` and a new run there, it does not, and the old process must not write into the new run). The holder
    writes its pid and host into the lock file, so that a refused process can say who holds the folder. Raises
    `RunInUse` when another process holds it, NotADirectoryError when `folder` is a file, `CheckpointError`
    when the lock file is not a regular file (a FIFO, a device).

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with RunLock(folder):
    ...     RunLock(folder).acquire()
    Traceback (most recent call last):
    ...
    chainrule.charlm.run_folder.RunInUse: ... is being written by another training (pid ...
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._descriptor: int | None = None
        self._folder_descriptor: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"{self.folder} is a file, not a folder for a run")
        if os.path.islink(self.folder) and not self.folder.exists():
            raise NotADirectoryError(f"{self.folder} is a broken or looping symbolic link (it leads to no folder); "
                                     "remove it, or choose another --out")
        self.folder.mkdir(parents=True, exist_ok=True)
        folder = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        descriptor = None
        try:
            try:
                fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunInUse(self._refusal(None)) from None
            # a lock file planted as a link must not make us truncate the file it points to (O_NOFOLLOW), nor one
            # planted as a FIFO or device make us wait or fail obscurely (open_regular_file)
            descriptor = open_regular_file(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, "the run's lock file")
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunInUse(self._refusal(descriptor)) from None
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                              "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        except BaseException:
            os.close(folder)
            if descriptor is not None:
                os.close(descriptor)
            raise
        self._descriptor, self._folder_descriptor = descriptor, folder
        return self

    def _refusal(self, descriptor: int | None) -> str:
        if descriptor is None:
            try:
                descriptor = open_regular_file(self.folder / LOCK_NAME, os.O_RDONLY, "the run's lock file")
            except (OSError, CheckpointError):
                holder = "a process whose lock file is gone"
            else:
                holder = _lock_holder(descriptor)
                os.close(descriptor)
        else:
            holder = _lock_holder(descriptor)
        return (f"{self.folder} is being written by another training ({holder}); wait for it to end or stop it, "
                "or choose another folder")

    def check(self) -> str | None:
        """None while the folder's path still names the folder this lock holds; otherwise what happened."""
        if self._folder_descriptor is None:
            return None
        try:
            now = os.stat(self.folder)
        except OSError:
            return f"{self.folder} was removed while this training held it"
        held = os.fstat(self._folder_descriptor)
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            return f"{self.folder} was removed and made again (by another process?) while this training held it"
        return None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def release(self) -> None:
        for descriptor in (self._descriptor, self._folder_descriptor):
            if descriptor is not None:
                os.close(descriptor)   # closing the last descriptor drops the flock
        self._descriptor = self._folder_descriptor = None

    def __enter__(self) -> RunLock:
        return self if self.held else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class RankZeroLock(RunLock):
    """What a rank other than 0 of an MPI run holds: rank 0 holds the run folder's lock for every rank."""

    def acquire(self) -> RunLock:
        return self

    @property
    def held(self) -> bool:
        return True


def _lock_holder(descriptor: int) -> str:
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0).decode("utf-8"))
        return f"pid {int(holder['pid'])} on {holder['host']}, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet written its pid"


def claim_run_folder(folder: str | Path, fresh: bool) -> tuple[RunLock, list[Path]]:
    """Lock `folder` for this process and clean what a crashed run left in it; returns (lock, removed files).

    `fresh`: a new run, refused (`RunExists`) when the folder holds any file of a run (a checkpoint, weights,
    the log or the plot), so no run is ever overwritten. Raises `RunInUse` when another process holds it.
    """
    if not current_world().is_root:   # in an MPI run, rank 0 claims and cleans the folder for all ranks
        return RankZeroLock(folder), []
    lock = RunLock(folder).acquire()
    try:
        removed = remove_leftovers(folder)
        existing = run_files(folder)
        if fresh and existing:
            names = ", ".join(p.name for p in existing[:6]) + (" ..." if len(existing) > 6 else "")
            advice = (f"continue it with --resume {folder}" if (Path(folder) / "latest.json").exists()
                      else "remove those files")
            raise RunExists(f"{folder} already holds a training run ({names}); {advice}, or choose another --out")
    except BaseException:
        lock.release()
        raise
    return lock, removed


def shell_word(path: str | Path) -> str:
    r"""`path` as one word a POSIX shell reads back as that path, for a command printed to be copied: quoted
    (shlex.quote); a leading "-" made "./-" so it is not read as an option; a control character or a byte that
    is not UTF-8 written in bash's $'...' form, so nothing raw reaches the terminal.

    >>> print(shell_word("out dir ü"), shell_word("-dashout"), shell_word("t\x7f.txt"), shell_word("l\udce9"))
    'out dir ü' ./-dashout $'t\x7f.txt' $'l\xe9'
    """
    word = str(path)
    if word.startswith("-"):
        word = "./" + word
    if word.isprintable():
        return shlex.quote(word)
    escaped = []
    for c in word:
        if c in "\\'":
            escaped.append("\\" + c)
        elif c.isprintable():
            escaped.append(c)
        else:
            escaped.extend(f"\\x{b:02x}" for b in os.fsencode(c))
    return "$'" + "".join(escaped) + "'"


def recordable_name(name: str | Path) -> str:
    r"""`name` (a path, shown only, never opened) in a form a checkpoint description stores: a control character
    escaped as Python writes it (TAB as \t, DEL as \x7f), a byte that is not UTF-8 as \xNN.

    >>> print(recordable_name("lat\udce9\tx\x7f.txt"))
    lat\xe9\tx\x7f.txt
    """
    out = []
    for c in str(name):
        if c.isprintable():
            out.append(c)
        elif "\udc80" <= c <= "\udcff":   # os.fsdecode's surrogate escape of an undecodable byte
            out.append(f"\\x{ord(c) - 0xdc00:02x}")
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def _describe_os_error(error: OSError) -> str:
    """One line: the file and the cause, e.g. "/runs/a/latest.json: No space left on device (the disk is full)"."""
    cause = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        cause += " (the disk is full)"
    return f"{error.filename}: {cause}" if error.filename else cause


MAX_LOG_BYTES = 1 << 30   # log.jsonl: a record of ~200 bytes per evaluation, millions of them


def _read_run_file(path: Path, limit: int = MAX_DESCRIPTION_BYTES, what: str = "checkpoint description") -> bytes:
    """A regular file of the run folder, never through a symbolic link, at most `limit` bytes (`CheckpointError`
    naming it otherwise): a folder that came from elsewhere must not make training read outside it, nor read
    a FIFO or a device forever."""
    return read_regular_file(path, limit, what)


def checkpoints_on_disk(folder: str | Path, lock: RunLock | None = None) -> str:
    """What the run folder holds now, in a sentence: each checkpoint and its step, or that there is none;
    when the folder was removed or replaced since `lock` was taken, that (its checkpoints are not this run's)."""
    folder = Path(folder)
    replaced = lock.check() if lock is not None else None
    if replaced is not None:
        return f"{replaced}: the checkpoints there are not this run's."
    found = []
    for name in ("latest", "best"):
        path = folder / f"{name}.json"
        try:
            step = json.loads(_read_run_file(path).decode("utf-8"))["step"]
        except (OSError, ValueError, KeyError, TypeError, CheckpointError):
            continue
        found.append(f"{path} (step {step})")
    if not found:
        return f"No checkpoint has been written to {folder}."
    return f"The checkpoints in {folder} are intact: {', '.join(found)}."


def resume_command(folder: str | Path, text: str | None, target: str | Path | None = None) -> str:
    """The command that continues the run in `folder` from `target` (default: the folder, its latest
    checkpoint); a run on a text file (`text`, "-" for standard input) is resumed with that text given again.

    >>> resume_command("runs/a b", "-", "runs/a b/best.json")
    "chainrule train TEXT_FILE --resume 'runs/a b/best.json'"
    """
    given = "" if text is None else " TEXT_FILE" if str(text) == "-" else f" {shell_word(text)}"
    return f"chainrule train{given} --resume {shell_word(folder if target is None else target)}"
