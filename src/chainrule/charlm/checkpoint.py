"""Checkpoints: arrays in safetensors (never pickle) beside a JSON file, written atomically.

A checkpoint named NAME in a folder is `NAME.json` plus the weights file it names,
`NAME-<step>.safetensors`. Writing goes: new weights file (temporary name, fsync, rename), then the JSON
(temporary name, fsync, rename), then the previous weights file is removed. A crash at any point leaves
NAME.json naming a complete weights file whose SHA-256 it records, so a checkpoint is never half written;
loading checks that hash and the file's structure and says plainly what is wrong.

A run folder is untrusted input. A description may name only its own weights file, by the bare name
NAME-<step>.safetensors, a regular file in its own folder (a symbolic link may point only there): nothing
outside the folder is read or removed because a description says so. The description is validated as a whole
(`checkpoint_schema`), and the weights file's header against it, before any array is read.
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint_schema import FORMAT, CheckpointDescriptionError, check_arrays, validate_description

# What a run folder holds, all written by chainrule: the checkpoint descriptions the trainer writes (NAME.json),
# each one's weights file NAME-<step, 8 digits or more>.safetensors, the log, the plot, and write_atomically's
# temporary files .FINAL_NAME.<random>.tmp. Only these names are run files: a user's own
# model-20240101.safetensors beside them is not.
CHECKPOINT_NAMES = ("latest", "best")
LOG_NAME, PLOT_NAME = "log.jsonl", "loss.png"
_NAME = r"[A-Za-z0-9_]+"
_OURS = "|".join(CHECKPOINT_NAMES)
_WEIGHTS = re.compile(rf"(?P<name>{_NAME})-(?P<step>[0-9]{{8,}})\.safetensors")
_RUN_WEIGHTS = re.compile(rf"(?P<name>{_OURS})-(?P<step>[0-9]{{8,}})\.safetensors")
_TEMPORARY = re.compile(rf"\.(?P<final>(?:{_OURS})\.json|(?:{_OURS})-[0-9]{{8,}}\.safetensors|"
                        rf"{re.escape(LOG_NAME)}|{re.escape(PLOT_NAME)})\.[A-Za-z0-9_]+\.tmp")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupted or does not match what it is loaded into."""


def open_regular_file(path: str | Path, flags: int, what: str, follow: bool = False, mode: int = 0o644) -> int:
    """A descriptor of `path` opened with `flags`, after checking it is a regular file: a FIFO, a device or a
    socket planted in a run folder would make a read or a write wait (or read) forever.

    O_NONBLOCK makes the open itself return at once whatever the file is (it changes nothing for a regular
    file); O_NOFOLLOW refuses a symbolic link unless `follow`. Raises `CheckpointError` naming the file and
    `what` it is, FileNotFoundError (with the file name) when it does not exist.
    """
    flags |= getattr(os, "O_NONBLOCK", 0) | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    try:
        descriptor = os.open(path, flags, mode)
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise CheckpointError(f"{path} ({what}) is a symbolic link, which chainrule does not follow inside a "
                                  "run folder") from None
        if error.errno == errno.ENXIO:   # a FIFO without a reader, opened for writing
            raise CheckpointError(f"{path} ({what}) is not a regular file (a FIFO); remove it") from None
        raise CheckpointError(f"{path} ({what}) cannot be opened: {error.strerror or error}") from None
    try:
        kind = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(kind):
            name = ("a FIFO" if stat.S_ISFIFO(kind) else "a device" if stat.S_ISCHR(kind) or stat.S_ISBLK(kind)
                    else "a folder" if stat.S_ISDIR(kind) else "a socket" if stat.S_ISSOCK(kind) else "not a file")
            raise CheckpointError(f"{path} ({what}) is not a regular file ({name}); remove it")
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def read_regular_file(path: str | Path, limit: int, what: str, follow: bool = False) -> bytes:
    """The bytes of the regular file `path` (see `open_regular_file`), at most `limit` of them: a larger file
    raises `CheckpointError` naming it, before it is read. FileNotFoundError when it does not exist."""
    descriptor = open_regular_file(path, os.O_RDONLY, what, follow)
    with os.fdopen(descriptor, "rb") as stream:
        size = os.fstat(descriptor).st_size
        if size > limit:
            raise CheckpointError(f"{path} ({what}) is {size:,} bytes, more than the {limit:,} it may hold")
        try:
            data = stream.read(size + 1)   # not limit + 1: read(n) allocates n bytes before reading
        except OSError as error:
            raise CheckpointError(f"{path} ({what}) cannot be read: {error.strerror or error}") from None
    if len(data) > min(size, limit):
        raise CheckpointError(f"{path} ({what}) grew while being read (is another process writing it?)")
    return data


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


def pack_run(model_state: dict[str, np.ndarray], optimizer_state: dict[str, Any],
             carried: list[np.ndarray] | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A run's state as a checkpoint stores it: the arrays under their names, `model.<parameter>`,
    `optimizer.<parameter index>.<name>` and `carry.<k>` (the hidden state carried to the next batch, h and
    for an LSTM c), and the optimizer's other state for the description, {"param_groups", "scalars"}.

    >>> arrays, optimizer = pack_run({"w": np.ones(2)}, {"state": {0: {"step": 3, "exp_avg": np.zeros(2)}},
    ...                                                  "param_groups": []}, None)
    >>> sorted(arrays), optimizer["scalars"]
    (['model.w', 'optimizer.0.exp_avg'], {'0': {'step': 3}})
    """
    arrays = {f"model.{k}": v for k, v in model_state.items()}
    for index, values in optimizer_state["state"].items():
        for name, value in values.items():
            if isinstance(value, np.ndarray):
                arrays[f"optimizer.{index}.{name}"] = value
    for k, array in enumerate(carried or ()):
        arrays[f"carry.{k}"] = array
    scalars = {str(i): {n: v for n, v in values.items() if not isinstance(v, np.ndarray)}
               for i, values in optimizer_state["state"].items()}
    return arrays, {"param_groups": optimizer_state["param_groups"], "scalars": scalars}


def unpack_run(arrays: dict[str, np.ndarray], optimizer: dict[str, Any]
               ) -> tuple[dict[str, np.ndarray], dict[str, Any], list[np.ndarray]]:
    """The inverse of `pack_run`: (the model's state dict, the optimizer's state dict, the carried arrays).

    >>> model, optimizer, carried = unpack_run(*pack_run({"w": np.ones(2)}, {"state": {}, "param_groups": []},
    ...                                                  [np.zeros(1)]))
    >>> list(model), optimizer["state"], len(carried)
    (['w'], {}, 1)
    """
    state: dict[int, dict[str, Any]] = {}
    for key, value in arrays.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in optimizer["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    model = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
    carried = [arrays[f"carry.{k}"] for k in range(2) if f"carry.{k}" in arrays]
    return model, {"state": state, "param_groups": optimizer["param_groups"]}, carried


def all_finite(arrays: dict[str, np.ndarray]) -> bool:
    """Whether every value of every array is finite (no NaN, no ±inf); non-float arrays always are.

    >>> all_finite({"w": np.ones(2, np.float32)}), all_finite({"w": np.array([1.0, np.inf])})
    (True, False)
    """
    return all(not np.issubdtype(np.asarray(a).dtype, np.inexact) or bool(np.isfinite(a).all())
               for a in arrays.values())


def _is_run_file_name(name: str) -> bool:
    return (name in {f"{n}.json" for n in CHECKPOINT_NAMES} or name in (LOG_NAME, PLOT_NAME)
            or _RUN_WEIGHTS.fullmatch(name) is not None or _TEMPORARY.fullmatch(name) is not None)


def run_files(folder: str | Path) -> list[Path]:
    """The entries of `folder` (not its subfolders) named as chainrule names a run's files, sorted.

    Checkpoint descriptions (latest.json, best.json), their weights files NAME-<8 digits>.safetensors (NAME
    latest or best), log.jsonl, loss.png, and temporary files .FILE.<random>.tmp of these left by an
    interrupted write. A symbolic link with such a name counts too (listed, never followed); a subfolder does
    not. A folder that does not exist holds none: [].
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

    Removed: temporary files of an interrupted atomic write (.FILE.<random>.tmp, FILE a run file), and
    weights files NAME-<8 digits>.safetensors (NAME latest or best) that NAME.json does not name (a crash
    between writing new weights and the description that names them, or before the previous weights were
    removed). Only regular files directly
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
        weights = _RUN_WEIGHTS.fullmatch(entry.name)
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
        raw = read_regular_file(json_path, MAX_DESCRIPTION_BYTES, "checkpoint description")
        named = json.loads(raw.decode("utf-8")).get("weights_file")
    except (OSError, ValueError, AttributeError, RecursionError, CheckpointError):
        return None
    return {named} if isinstance(named, str) else None


def new_file_mode(folder: bool = False) -> int:
    """The permission bits `open(path, "w")` gives a new file (0o666 less the process's umask), or with
    `folder` those `os.mkdir` gives a new folder (0o777 less the umask). A file or folder made under a
    `tempfile.mkstemp`/`mkdtemp` name (created 0o600/0o700) gets these before it is renamed into place."""
    full = 0o777 if folder else 0o666
    try:  # Linux says the umask without changing it (no window in which another thread sees a different one)
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return full & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return full & ~mask


def write_atomically(path: Path, payload: bytes) -> None:
    """Replace `path` by `payload` through a temporary file beside it (.NAME.<random>.tmp), fsynced: all or nothing.
    The file gets the mode a newly created one would (`new_file_mode`), not the temporary file's 0o600."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(handle, new_file_mode())
            with os.fdopen(handle, "wb") as stream:
                stream.write(payload)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except OSError as error:
            if error.filename is None:   # a failed write names no file: say which ("File too large" of which?)
                raise OSError(error.errno, error.strerror, str(path)) from error
            raise
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
    """Write arrays and their description as checkpoint `name` in `folder`; returns the JSON path.

    `meta` is everything of the description but the three fields this adds (format, weights_file,
    weights_sha256); the whole is checked against the schema (`checkpoint_schema`) and the arrays' names and
    shapes before anything is written, so a checkpoint that would not load is never written. Raises
    `CheckpointError`, writing nothing, when that check fails or an array holds NaN or ±inf (`all_finite`).
    Afterwards the previous weights file of `name` is removed: only a regular file in `folder` of the form
    NAME-<8 digits>.safetensors, whatever the old description said.

    >>> import tempfile, numpy as np
    >>> save_checkpoint(tempfile.mkdtemp(), "latest", {"w": np.ones(2, np.float32)}, {"step": 3})
    Traceback (most recent call last):
    ...
    chainrule.charlm.checkpoint.CheckpointError: not writing checkpoint 'latest': model: is required and missing; ...
    """
    from safetensors.numpy import save

    folder = Path(folder)
    try:
        weights_file = weights_name(name, meta.get("step"))  # type: ignore[arg-type]  # weights_name checks it
    except ValueError as error:
        raise CheckpointError(f"not writing checkpoint {name!r}: {error}") from None
    bad = sorted(key for key, value in arrays.items() if not all_finite({key: value}))
    if bad:
        raise CheckpointError(f"not writing checkpoint {name!r}: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''} "
                              "hold NaN or infinite values (the previous checkpoint is kept)")
    contiguous = {key: np.ascontiguousarray(value) for key, value in arrays.items()}
    record = {"format": FORMAT, "weights_file": weights_file, "weights_sha256": "0" * 64, **meta}
    try:
        validate_description(json.loads(json.dumps(record)))
        check_arrays(record, {key: (_DTYPES.get(value.dtype.str[1:], value.dtype.str), value.shape)
                              for key, value in contiguous.items()})
    except CheckpointDescriptionError as error:
        raise CheckpointError(f"not writing checkpoint {name!r}: {error}") from None
    payload = save(contiguous, metadata={"format": FORMAT})
    record["weights_sha256"] = hashlib.sha256(payload).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"{name}.json"
    previous = _weights_file_named_by(json_path, name)
    write_atomically(folder / weights_file, payload)
    write_atomically(json_path, json.dumps(record, indent=1, sort_keys=False).encode("utf-8"))
    if previous is not None and previous != weights_file:
        _remove_regular_file(folder / previous)
    return json_path


_DTYPES = {"f4": "F32", "f8": "F64", "f2": "F16", "i8": "I64", "i4": "I32", "u1": "U8", "b1": "BOOL"}


def _weights_file_named_by(json_path: Path, name: str) -> str | None:
    """The weights file an existing description of `name` names, if it is a bare name of chainrule's form."""
    try:
        raw = read_regular_file(json_path, MAX_DESCRIPTION_BYTES, "checkpoint description")
        named = json.loads(raw.decode("utf-8")).get("weights_file")
    except (OSError, ValueError, AttributeError, RecursionError, CheckpointError):
        return None
    match = _WEIGHTS.fullmatch(named) if isinstance(named, str) else None
    return named if match is not None and match["name"] == name else None


def _remove_regular_file(path: Path) -> None:
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path`, with every symbolic link followed, lies directly in `folder` (links followed too)."""
    return Path(os.path.realpath(path)).parent == Path(os.path.realpath(folder))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint's JSON path from a JSON path or a run folder (its best checkpoint, else its latest)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.json", "latest.json"):
            if os.path.lexists(path / name):
                return path / name
        raise CheckpointError(f"no checkpoint in {path} (expected best.json or latest.json)")
    if path.suffix == ".safetensors":
        raise CheckpointError(f"{path}: pass the checkpoint's .json file (or its folder), not the weights file")
    if not os.path.lexists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


MAX_DESCRIPTION_BYTES = 256 << 20  # a description is configuration and history: far below this
MAX_HEADER_BYTES = 100 << 20       # the safetensors library's own limit on a header


def _regular_file_inside(path: Path, folder: Path, what: str) -> int:
    """The size of `path` after checking it is a regular file inside `folder` (a link may point only there)."""
    if not _inside(path, folder):
        raise CheckpointError(f"{path} is a symbolic link to {os.path.realpath(path)}, outside the run folder "
                              f"{folder}; a checkpoint's {what} must lie in its own run folder")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path} ({what}) is missing") from None
    except OSError as error:
        raise CheckpointError(f"{path} ({what}) cannot be read: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{path} ({what}) is not a regular file")
    return info.st_size


def read_description(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """A checkpoint's JSON path (from a JSON path or a run folder) and its description, validated as a whole.

    Reads only the description, never the weights; raises `CheckpointError` naming each field that breaks the
    schema (`checkpoint_schema.validate_description`) and the rule for the weights file's name.
    """
    json_path = resolve_checkpoint(path)
    size = _regular_file_inside(json_path, json_path.parent, "description")
    if size > MAX_DESCRIPTION_BYTES:
        raise CheckpointError(f"{json_path} is {size:,} bytes, not a checkpoint description (at most "
                              f"{MAX_DESCRIPTION_BYTES:,})")
    try:
        raw = json.loads(read_regular_file(json_path, MAX_DESCRIPTION_BYTES, "checkpoint description",
                                           follow=True).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise CheckpointError(f"{json_path} is not a readable checkpoint description ({reason})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        text = repr(found) if len(repr(found)) <= 60 else repr(found)[:57] + "..."
        raise CheckpointError(f"{json_path} is not a chainrule checkpoint (format {text}, expected {FORMAT!r})")
    try:
        meta = validate_description(raw)
    except CheckpointDescriptionError as error:
        raise CheckpointError(f"{json_path} is not a valid checkpoint description: {error}") from None
    name = json_path.name[:-len(".json")] if json_path.name.endswith(".json") else json_path.name
    expected = weights_name(name, meta["step"]) if re.fullmatch(_NAME, name) else None
    if meta["weights_file"] != expected:
        rule = (f"the form chainrule writes for it, {expected!r}" if expected else
                "a checkpoint named NAME.json, NAME letters, digits and '_'")
        raise CheckpointError(f"{json_path}: weights_file should be a file of its own run folder, named in "
                              f"{rule} (found {meta['weights_file']!r})")
    return json_path, meta


def read_header(path: Path, size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The arrays a safetensors file lists in its header, {name: (dtype, shape)}, reading the header only.

    The header is an 8-byte little-endian length and that many bytes of JSON; each array's byte range must
    match its dtype and shape and lie in the file. Raises `CheckpointError` naming the defect.
    """
    try:
        with os.fdopen(open_regular_file(path, os.O_RDONLY, "weights file", follow=True), "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            prefix = stream.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{path} is not a safetensors file: {size} bytes, shorter than its header")
            length = int.from_bytes(prefix, "little")
            if length > min(size - 8, MAX_HEADER_BYTES):
                raise CheckpointError(f"{path} is not a valid safetensors file: its header claims {length:,} "
                                      f"bytes and the file has {size - 8:,} after the length (truncated or "
                                      "corrupted)")
            text = stream.read(length)
    except OSError as error:
        raise CheckpointError(f"{path} cannot be read: {error.strerror or error}") from None
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{path} is not a valid safetensors file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a valid safetensors file: its header is not a JSON object")
    data = size - 8 - length
    arrays = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
            itemsize = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                        "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}[dtype]
            valid = (all(isinstance(n, int) and n >= 0 for n in (*shape, begin, end))
                     and 0 <= begin <= end <= data and end - begin == itemsize * math.prod(shape))
        except (KeyError, TypeError, ValueError):
            valid = False
        if not valid:
            raise CheckpointError(f"{path} is not a valid safetensors file: the header's entry for {name!r} is "
                                  f"malformed or outside the file (found {str(entry)[:80]})")
        arrays[name] = (dtype, shape, end)
    used = max((end for _, _, end in arrays.values()), default=0)
    if used != data:
        raise CheckpointError(f"{path} is not a valid safetensors file: its arrays take {used:,} bytes and "
                              f"{data:,} follow its header (truncated, corrupted or padded)")
    return {name: (dtype, shape) for name, (dtype, shape, _) in arrays.items()}


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint (JSON path or run folder): (arrays, description). Raises `CheckpointError` on any defect.

    In order, before any array is read: the description is validated as a whole (`read_description`); the
    weights file it names must be a bare name of chainrule's form for this checkpoint, a regular file inside
    the description's own folder (a symbolic link may point only there); the arrays listed in that file's
    header must be those the description configures, with their shapes. Then the file is read and its
    SHA-256 compared with the recorded one.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    # a trainer writing the same run may replace the checkpoint between the description and its weights being
    # read: when the description then names other weights, it is read again (a few times) before reporting
    attempts = 5
    for attempt in range(attempts):
        json_path, meta = read_description(path)
        try:
            weights_path = json_path.parent / meta["weights_file"]
            size = _regular_file_inside(weights_path, json_path.parent, "weights file")
            header = read_header(weights_path, size)
            try:
                check_arrays(meta, header)
            except CheckpointDescriptionError as error:
                raise CheckpointError(f"{json_path}: the weights file {weights_path.name} does not hold the arrays its "
                                      f"description configures (do not fit): {error}") from None
            try:
                # its size is the header's: nothing past the arrays
                payload = read_regular_file(weights_path, size, "weights file", follow=True)
            except OSError as error:
                raise CheckpointError(f"{weights_path} cannot be read: {error.strerror or error}") from None
            if hashlib.sha256(payload).hexdigest() != meta["weights_sha256"]:
                raise CheckpointError(f"{weights_path} does not match the SHA-256 recorded in {json_path.name}: "
                                      "the file is truncated or corrupted")
            try:
                arrays = load(payload)
            except (SafetensorError, ValueError, OSError) as error:
                raise CheckpointError(f"{weights_path} is not a valid safetensors file ({error})") from None
            bad = sorted(key for key, value in arrays.items() if not all_finite({key: value}))
            if bad:   # never written so (save_checkpoint refuses them): the file was altered
                named = f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}"
                raise CheckpointError(f"{weights_path}: {named} hold NaN or "
                                      "infinite values; chainrule never writes such a checkpoint, so this file was "
                                      "altered (use another checkpoint of the run)")
            return arrays, meta
        except CheckpointError:
            if attempt == attempts - 1:
                raise
            try:
                _, now = read_description(path)
            except CheckpointError:
                now = meta
            if (now["weights_file"], now["weights_sha256"]) == (meta["weights_file"], meta["weights_sha256"]):
                raise
    raise AssertionError("unreachable")
