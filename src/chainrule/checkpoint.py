"""Checkpoints: arrays in safetensors (never pickle) beside a JSON file, written atomically.

A checkpoint named NAME in a folder is `NAME.json` plus the weights file it names,
`NAME-<step>.safetensors`. Writing goes: new weights file (temporary name, fsync, rename), then the JSON
(temporary name, fsync, rename), then the previous weights file is removed. A crash at any point leaves
NAME.json naming a complete weights file whose SHA-256 it records, so a checkpoint is never half written;
loading checks that hash and the file's structure and says plainly what is wrong.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "chainrule-checkpoint-1"

# What a run folder holds, all written by chainrule: the checkpoint descriptions the trainer writes, each one's
# weights file NAME-<step, 8 digits or more>.safetensors, the log, the plot, and _write_atomically's temporary
# files .FINAL_NAME.<random>.tmp.
CHECKPOINT_NAMES = ("latest", "best")
LOG_NAME, PLOT_NAME = "log.jsonl", "loss.png"
_NAME = r"[A-Za-z0-9_]+"
_WEIGHTS = re.compile(rf"(?P<name>{_NAME})-(?P<step>[0-9]{{8,}})\.safetensors")
_TEMPORARY = re.compile(rf"\.(?P<final>{_NAME}\.json|{_NAME}-[0-9]{{8,}}\.safetensors|{re.escape(LOG_NAME)}"
                        rf"|{re.escape(PLOT_NAME)})\.[A-Za-z0-9_]+\.tmp")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupted or does not match what it is loaded into."""


def weights_name(name: str, step: int) -> str:
    """The weights file's name of checkpoint `name` at `step`: the only form a checkpoint may name.

    >>> weights_name("best", 120)
    'best-00000120.safetensors'
    """
    if not re.fullmatch(_NAME, name):
        raise ValueError(f"a checkpoint name is letters, digits and '_' only, got {name!r}")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"a checkpoint's step is a non-negative integer, got {step!r}")
    return f"{name}-{step:08d}.safetensors"


def all_finite(arrays: dict[str, np.ndarray]) -> bool:
    """Whether every value of every array is finite (no NaN, no ±inf); non-float arrays always are.

    >>> all_finite({"w": np.ones(2, np.float32)}), all_finite({"w": np.array([1.0, np.inf])})
    (True, False)
    """
    return all(not np.issubdtype(np.asarray(a).dtype, np.inexact) or bool(np.isfinite(a).all())
               for a in arrays.values())


def _is_run_file_name(name: str) -> bool:
    return (name in {f"{n}.json" for n in CHECKPOINT_NAMES} or name in (LOG_NAME, PLOT_NAME)
            or _WEIGHTS.fullmatch(name) is not None or _TEMPORARY.fullmatch(name) is not None)


def run_files(folder: str | Path) -> list[Path]:
    """The entries of `folder` (not its subfolders) named as chainrule names a run's files, sorted.

    Checkpoint descriptions (latest.json, best.json), weights files NAME-<8 digits>.safetensors, log.jsonl,
    loss.png, and temporary files .NAME.<random>.tmp left by an interrupted write. A symbolic link with such a
    name counts too (it is listed, never followed). A folder that does not exist holds none: [].
    """
    folder = Path(folder)
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(folder / entry.name for entry in entries
                  if _is_run_file_name(entry.name) and not entry.is_dir(follow_symlinks=False))


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Delete what an interrupted run left in `folder`; returns the paths removed, sorted.

    Removed: temporary files of an interrupted atomic write (.NAME.<random>.tmp), and weights files
    NAME-<8 digits>.safetensors that NAME.json does not name (a crash between writing new weights and
    the description that names them, or before the previous weights were removed). Only regular files directly
    in `folder` with these names: a symbolic link is never followed nor removed, subfolders are not entered,
    and a weights file is kept whenever NAME.json exists but cannot be read (it may still name it).
    """
    folder = Path(folder)
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for entry in entries:
        try:
            if not stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                continue
        except FileNotFoundError:
            continue
        leftover = _TEMPORARY.fullmatch(entry.name) is not None
        weights = _WEIGHTS.fullmatch(entry.name)
        if weights is not None:
            named = _names_in_description(folder / f"{weights['name']}.json")
            leftover = named is not None and entry.name not in named
        if leftover:
            try:
                os.unlink(folder / entry.name)
            except FileNotFoundError:
                continue
            removed.append(folder / entry.name)
    return sorted(removed)


def _names_in_description(json_path: Path) -> set[str] | None:
    """The weights file named by a checkpoint description: empty when there is no such description, None when
    it exists but is not a regular file or cannot be read (so nothing may be assumed unnamed)."""
    try:
        if not stat.S_ISREG(os.lstat(json_path).st_mode):
            return None
    except FileNotFoundError:
        return set()
    try:
        named = json.loads(json_path.read_text(encoding="utf-8")).get("weights_file")
    except (OSError, ValueError, AttributeError):
        return None
    return {named} if isinstance(named, str) else None


def _write_atomically(path: Path, payload: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def save_checkpoint(folder: str | Path, name: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write arrays and JSON-serialisable metadata as checkpoint `name` in `folder`; returns the JSON path.

    Raises `CheckpointError`, writing nothing, when an array holds NaN or ±inf (see `all_finite`).

    >>> import tempfile, numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> path = save_checkpoint(folder, "latest", {"w": np.ones(2, np.float32)}, {"step": 3})
    >>> arrays, meta = load_checkpoint(path)
    >>> arrays["w"].tolist(), meta["step"]
    ([1.0, 1.0], 3)
    """
    from safetensors.numpy import save

    folder = Path(folder)
    bad = sorted(key for key, value in arrays.items() if not all_finite({key: value}))
    if bad:
        raise CheckpointError(f"not writing checkpoint {name!r}: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''} "
                              "hold NaN or infinite values (the previous checkpoint is kept)")
    folder.mkdir(parents=True, exist_ok=True)
    contiguous = {key: np.ascontiguousarray(value) for key, value in arrays.items()}
    payload = save(contiguous, metadata={"format": FORMAT})
    json_path = folder / f"{name}.json"
    previous = _weights_file_named_by(json_path)
    weights_name = f"{name}-{int(meta.get('step', 0)):08d}.safetensors"
    _write_atomically(folder / weights_name, payload)
    record = {"format": FORMAT, "weights_file": weights_name,
              "weights_sha256": hashlib.sha256(payload).hexdigest(), **meta}
    _write_atomically(json_path, json.dumps(record, indent=1, sort_keys=False).encode("utf-8"))
    if previous is not None and previous.name != weights_name and previous.exists():
        previous.unlink()
    return json_path


def _weights_file_named_by(json_path: Path) -> Path | None:
    try:
        return json_path.parent / json.loads(json_path.read_text(encoding="utf-8"))["weights_file"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint's JSON path from a JSON path or a run folder (its best checkpoint, else its latest)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.json", "latest.json"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"no checkpoint in {path} (expected best.json or latest.json)")
    if path.suffix == ".safetensors":
        raise CheckpointError(f"{path}: pass the checkpoint's .json file (or its folder), not the weights file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint (JSON path or run folder): (arrays, metadata). Raises `CheckpointError` on any defect."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    json_path = resolve_checkpoint(path)
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{json_path} is not a readable checkpoint description ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{json_path} is not a chainrule checkpoint (format {meta.get('format') if isinstance(meta, dict) else None!r}, "
                              f"expected {FORMAT!r})")
    weights_path = json_path.parent / str(meta.get("weights_file", ""))
    if not weights_path.is_file():
        raise CheckpointError(f"{json_path} names the weights file {weights_path.name}, which is missing")
    payload = weights_path.read_bytes()
    if hashlib.sha256(payload).hexdigest() != meta.get("weights_sha256"):
        raise CheckpointError(f"{weights_path} does not match the SHA-256 recorded in {json_path.name}: the file "
                              "is truncated or corrupted")
    try:
        arrays = load(payload)
    except (SafetensorError, ValueError, OSError) as error:
        raise CheckpointError(f"{weights_path} is not a valid safetensors file ({error})") from None
    return arrays, meta
