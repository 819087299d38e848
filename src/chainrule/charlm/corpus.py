"""Corpora of any size: a text file encoded once to a cached token file, read back as a NumPy memory map.

A regular file is decoded as UTF-8 in chunks of `CHUNK_BYTES` (an incremental decoder carries a character
split across two chunks) in two passes: the first collects the set of characters (the vocabulary, sorted by
code point as `Vocabulary.from_text` sorts it) and the SHA-256 of the bytes, the second maps each chunk's
code points through a lookup table into the smallest unsigned dtype that holds the vocabulary and appends
them to a `.npy` file. Memory stays bounded by the chunk size, whatever the file's size.

The cache lives in ``$CHAINRULE_CACHE``, else ``$XDG_CACHE_HOME/chainrule``, else ``~/.cache/chainrule``
(folder ``corpora``). An entry is a folder named by the SHA-256 of the text (``ids.npy`` and
``vocabulary.json``), written under a temporary name, fsynced and renamed: an interrupted encode leaves only
a ``.tmp-*`` folder that nothing reads (a later encode removes it after a day), and of two concurrent
encoders of one text the second rename fails and that encoder uses the first one's entry. A small index
maps a file (device, inode, path, size, mtime, ctime) to its SHA-256, so a later run on the unchanged file
neither hashes nor decodes it; an edited file (another size, mtime or ctime: any write moves the ctime, which
touch cannot set back) is hashed again and, when its bytes differ, encoded again. Deleting the folder clears
the cache.

The cache is untrusted input, like a checkpoint. The index is only a hint: an entry records its source's size
and fingerprint (`_fingerprint`: the SHA-256 of its first and last MiB), checked on every use. An entry is
validated when opened (vocabulary in strictly increasing code-point order, a 1-D unsigned ids.npy of the
recorded length, every id below the vocabulary's size, checked a chunk at a time); symbolic links inside the
cache are refused, never read through. A damaged entry is set aside (removed) with a one-line notice and the
text encoded again; failing to write the index after a good encode is a warning, not an error.

Pipes, standard input and character devices (/dev/zero) have no size nor mtime to key a cache by: they are
read into memory as before, up to `MAX_TEXT_BYTES` (2 GiB), and encoded without a cache.
"""
from __future__ import annotations

import codecs
import errno
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import new_file_mode
from .text import DEFAULT_CORPUS_NAME, Vocabulary, default_corpus, read_text

CACHE_ENV = "CHAINRULE_CACHE"
CHUNK_BYTES = 4 << 20
# One-hot input gives layer 0 a [gates, vocabulary] input matrix and a vocabulary-wide row per token: past
# this many characters an embedding (--embedding) is the sane input.
ONE_HOT_MAX_VOCABULARY = 4096
# A temporary folder untouched for this long is a killed encoder's (its ids.npy is written continuously).
ABANDONED_AFTER = 24 * 3600
_FORMAT = 2   # 2: the entry records its source's size and fingerprint
# bytes hashed at each end of a file to tie a cache entry to it (`_fingerprint`)
FINGERPRINT_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
_UNICODE_SIZE = 0x110000


def cache_folder() -> Path:
    """Where encoded corpora are kept: ``$CHAINRULE_CACHE``, else ``$XDG_CACHE_HOME/chainrule``, else
    ``~/.cache/chainrule``; then its ``corpora`` folder.

    >>> cache_folder().name
    'corpora'
    """
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given) / "corpora"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) / "chainrule" if xdg else Path.home() / ".cache" / "chainrule") / "corpora"


def token_dtype(vocabulary_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds ids 0 .. vocabulary_size - 1.

    >>> [token_dtype(n).name for n in (256, 257, 65536, 65537)]
    ['uint8', 'uint16', 'uint16', 'uint32']
    """
    for dtype in (np.uint8, np.uint16):
        if vocabulary_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint32)


@dataclass(frozen=True)
class Corpus:
    """A text as token ids: `ids` [characters] of an unsigned or int64 dtype (a read-only memory map for a
    cached file), its `vocabulary`, the SHA-256 of its UTF-8 bytes without a leading byte-order mark (the
    digest `text.text_digest` gives of the decoded text) and a `name` to show."""

    ids: np.ndarray
    vocabulary: Vocabulary
    sha256: str
    name: str

    def __len__(self) -> int:
        return len(self.ids)

    def split(self, validation_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """Views of the first (1 - f) of the ids for training and the last f for validation (`split_text`'s cut).

        >>> corpus_from_text("abcdefghij", "t").split(0.2)[1].tolist()
        [8, 9]
        """
        if not 0.0 <= validation_fraction < 1.0:
            raise ValueError(f"the validation fraction must be in [0, 1), got {validation_fraction}")
        cut = len(self.ids) - int(round(len(self.ids) * validation_fraction))
        return self.ids[:cut], self.ids[cut:]


def corpus_from_text(text: str, name: str) -> Corpus:
    """A text already in memory, encoded as `Vocabulary.encode` does (int64 ids); nothing is cached."""
    from .text import text_digest

    vocabulary = Vocabulary.from_text(text)
    return Corpus(vocabulary.encode(text), vocabulary, text_digest(text), name)


def load_corpus(source: Corpus | str | Path | tuple[str, str] | None, progress: bool = True) -> Corpus:
    """The corpus of `source`: a Corpus (returned as it is), None (the Python reference manual), a (text, name)
    pair already read, ``-`` (standard input), or a path. A regular file goes through the cache
    (`encode_file`); anything else is read with `read_text` (2 GiB at most) and encoded in memory.

    Raises what `read_text` and `encode_file` raise: FileNotFoundError, IsADirectoryError, and ValueError for
    text that is not UTF-8 (with the byte offset), empty, or changed while it was being encoded.
    """
    if isinstance(source, Corpus):
        return source
    if source is None:
        return corpus_from_text(default_corpus(), DEFAULT_CORPUS_NAME)
    if isinstance(source, tuple):
        return corpus_from_text(*source)
    if str(source) == "-":
        return corpus_from_text(read_text("-"), "standard input")
    path = Path(source)
    try:
        regular = stat.S_ISREG(path.stat().st_mode)
    except OSError:
        regular = False   # read_text names what is wrong (missing, unreadable)
    if not regular:
        return corpus_from_text(read_text(path), str(source))
    return encode_file(path, progress=progress)


def check_input_mode(vocabulary_size: int, embedding: int) -> None:
    """Refuse a vocabulary too large for one-hot input (`embedding` 0), naming --embedding as the way out.

    >>> check_input_mode(5000, 0)
    Traceback (most recent call last):
    ...
    ValueError: the text has 5,000 distinct characters, too many for one-hot input (at most 4,096): ...
    """
    if not embedding and vocabulary_size > ONE_HOT_MAX_VOCABULARY:
        raise ValueError(f"the text has {vocabulary_size:,} distinct characters, too many for one-hot input (at "
                         f"most {ONE_HOT_MAX_VOCABULARY:,}): give --embedding 64 (or another size) to learn an "
                         "embedding instead")


def ids_in(corpus: Corpus, vocabulary: Vocabulary, what: str = "text") -> np.ndarray:
    """`corpus`'s ids in another `vocabulary` (a model's): the ids themselves when the vocabularies agree, else
    remapped chunk by chunk into a temporary memory-mapped file. Raises ValueError listing the characters the
    vocabulary lacks (in code-point order), as `Vocabulary.encode` does."""
    if corpus.vocabulary.characters == vocabulary.characters:
        return corpus.ids
    missing = [ch for ch in corpus.vocabulary.characters if ch not in vocabulary.index]
    if missing:
        shown = ", ".join(repr(ch) for ch in missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise ValueError(f"the {what} has {len(missing)} character(s) that are not in the model's vocabulary of "
                         f"{len(vocabulary)}: {shown}")
    dtype = token_dtype(len(vocabulary))
    table = np.array([vocabulary.index[ch] for ch in corpus.vocabulary.characters], dtype=dtype)
    with tempfile.TemporaryFile() as spool:   # unlinked at once; the map keeps its pages alive
        mapped = np.memmap(spool, dtype=dtype, mode="w+", shape=(len(corpus.ids),))
    step = CHUNK_BYTES
    for start in range(0, len(corpus.ids), step):
        mapped[start:start + step] = table[corpus.ids[start:start + step]]
    return mapped


# -- the encoder and its cache ---------------------------------------------------------------------------

def encode_file(path: str | Path, cache: str | Path | None = None, progress: bool = True) -> Corpus:
    """Encode the UTF-8 text file `path` into the cache (`cache`, default `cache_folder()`), or find it there,
    and return its ids as a read-only memory map.

    Raises ValueError for text that is not UTF-8 (naming the byte offset), an empty text, or a file that
    changed while it was being read; OSError (with the file's name) when it cannot be read or the cache not
    written.
    """
    path, name = Path(path), str(path)
    cache = Path(cache) if cache is not None else cache_folder()
    with open(path, "rb"):   # a file this user may no longer read is refused, cached or not
        before = os.stat(path)
    # st_ctime_ns changes on every write and cannot be set back (touch sets mtime only)
    index = cache / "index" / (hashlib.sha256("\0".join(map(str, (
        before.st_dev, before.st_ino, os.path.realpath(path), before.st_size, before.st_mtime_ns,
        before.st_ctime_ns))).encode("utf-8", "surrogatepass")).hexdigest() + ".json")
    digest = _read_index(cache, index)
    if digest:
        # the index is a hint: the entry must describe this file's bytes (size and fingerprint)
        found = _open_entry(cache / digest, name, _fingerprint(path))
        if isinstance(found, Corpus):
            return found
        if found is not None:
            _set_aside(cache, digest, found)
    bar = _bar(2 * before.st_size, name, progress)
    try:
        seen = np.zeros(_UNICODE_SIZE, dtype=bool)
        unseen = bytearray(b"\1" * 256)   # ASCII byte -> 1 until that character is seen

        def collect(code_points: bytes | np.ndarray) -> None:
            if isinstance(code_points, bytes):
                # bytes.translate and `in` run at memory speed; a chunk with a new character is counted
                if b"\1" in code_points.translate(unseen):
                    present = np.flatnonzero(np.bincount(np.frombuffer(code_points, dtype=np.uint8), minlength=128))
                    seen[present] = True
                    for byte in present:
                        unseen[byte] = 0
            else:
                seen[code_points] = True

        digest, characters = _scan(path, name, collect, bar)
        _check_unchanged(path, name, before)
        if not characters:
            raise ValueError(f"{name} is empty")
        fingerprint = _fingerprint(path)
        found = _open_entry(cache / digest, name, fingerprint)
        if not isinstance(found, Corpus):
            if found is not None:
                _set_aside(cache, digest, found)
            vocabulary = Vocabulary(map(chr, np.flatnonzero(seen)))
            if not _write_entry(path, name, cache, digest, characters, vocabulary, fingerprint, bar):
                raise ValueError(f"{name} changed while it was being encoded; encode it again once nothing "
                                 "writes to it")
            _check_unchanged(path, name, before)
            found = _open_entry(cache / digest, name, fingerprint)
            if not isinstance(found, Corpus):
                raise OSError(f"the encoded corpus of {name} in the corpus cache {cache / digest} could not be "
                              f"read back ({found or 'missing'}); {_CACHE_ADVICE}")
        corpus = found
    finally:
        bar.close()
    try:
        _refuse_links(cache, index)
        _write_json(index, {"sha256": digest})
    except OSError as error:
        # the encode itself succeeded: a later run only hashes the text again
        _notice(f"warning: could not record {name} in the corpus cache index {index.parent} ({_reason(error)}); "
                f"the next run hashes the text again. {_CACHE_ADVICE}")
    return corpus


_CACHE_ADVICE = (f"the corpus cache is ${CACHE_ENV}/corpora, by default $XDG_CACHE_HOME/chainrule/corpora or "
                 f"~/.cache/chainrule/corpora: point ${CACHE_ENV} at a writable folder, or remove the damaged one")


def _reason(error: OSError) -> str:
    return error.strerror or str(error) if isinstance(error, OSError) else str(error)


def _notice(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _cache_error(cache: Path, what: str, error: OSError) -> OSError:
    """An OSError naming the corpus cache, the variable that moves it and what to do."""
    return OSError(error.errno, f"cannot {what} the corpus cache {cache} ({_reason(error)}); {_CACHE_ADVICE}")


def _refuse_links(cache: Path, path: Path) -> None:
    """Raise OSError when `path` or a folder between `cache` and it is a symbolic link (never written through)."""
    here = path
    while here != cache and cache in here.parents:
        if here.is_symlink():
            raise OSError(errno.ELOOP, f"{here} is a symbolic link")
        here = here.parent


def _fingerprint(path: Path) -> tuple[int, str]:
    """The byte size of `path` without a leading byte-order mark and the SHA-256 of its first and last
    `FINGERPRINT_BYTES` (of those bytes): what ties a cache entry to a file at the cost of two reads."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        start = len(_BOM) if stream.read(len(_BOM)) == _BOM else 0
        stream.seek(start)
        digest.update(stream.read(FINGERPRINT_BYTES))
        tail = max(start, size - FINGERPRINT_BYTES)
        stream.seek(tail)
        digest.update(stream.read(FINGERPRINT_BYTES))
    return size - start, digest.hexdigest()


def _set_aside(cache: Path, digest: str, reason: str) -> None:
    """Remove the damaged entry `digest` (renamed aside first, so that no reader finds it half removed)."""
    _notice(f"note: the corpus cache entry {cache / digest} is damaged ({reason}); encoding the text again")
    aside = cache / f".tmp-damaged-{digest}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.rename(cache / digest, aside)
    except OSError:
        return   # gone already (another run set it aside), or the cache is read-only: the rename below says so
    if aside.is_symlink() or not aside.is_dir():
        aside.unlink(missing_ok=True)
    else:
        shutil.rmtree(aside, ignore_errors=True)


def _bar(total: int, name: str, progress: bool):
    from tqdm import tqdm

    # disable=None: drawn on a terminal only
    return tqdm(total=total, unit="B", unit_scale=True, desc=f"encoding {Path(name).name}", leave=False,
                disable=None if progress else True)


def _check_unchanged(path: Path, name: str, before: os.stat_result) -> None:
    after = os.stat(path)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise ValueError(f"{name} changed while it was being encoded (size {before.st_size:,} -> "
                         f"{after.st_size:,} bytes); encode it again once nothing writes to it")


def _scan(path: Path, name: str, consume, bar) -> tuple[str, int]:
    """Decode `path` chunk by chunk, giving each chunk's code points to `consume` (an ASCII chunk as its bytes,
    any other as a uint32 array); return the SHA-256 of the bytes without a leading byte-order mark, and the
    number of characters."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    digest = hashlib.sha256()
    offset, characters = 0, 0
    with open(path, "rb") as stream:
        # a byte-order mark marks the encoding; it is not a character of the text (as read_text drops it)
        chunk = stream.read(len(_BOM))
        if chunk == _BOM:
            offset, chunk = len(_BOM), b""
            bar.update(len(_BOM))
        chunk += stream.read(CHUNK_BYTES)
        while True:
            final = not chunk
            pending = len(decoder.getstate()[0])
            digest.update(chunk)
            code_points: bytes | np.ndarray
            if not pending and chunk.isascii():
                code_points = chunk   # ASCII: each byte is its code point
            else:
                try:
                    text = decoder.decode(chunk, final)
                except UnicodeDecodeError as error:
                    raise ValueError(f"{name} is not UTF-8 text ({error.reason} at byte "
                                     f"{offset - pending + error.start})") from None
                code_points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
            if len(code_points):
                consume(code_points)
            characters += len(code_points)
            offset += len(chunk)
            bar.update(len(chunk))
            if final:
                return digest.hexdigest(), characters
            chunk = stream.read(CHUNK_BYTES)


def _write_entry(path: Path, name: str, cache: Path, digest: str, characters: int, vocabulary: Vocabulary,
                 fingerprint: tuple[int, str], bar) -> bool:
    """Second pass: the ids into a temporary folder in `cache`, fsynced, renamed to `digest` when this pass
    read the same bytes as the first (its SHA-256 and length); False when it did not (the file was edited)."""
    dtype = token_dtype(len(vocabulary))
    table = np.zeros(_UNICODE_SIZE, dtype=dtype)
    table[[ord(ch) for ch in vocabulary.characters]] = np.arange(len(vocabulary), dtype=dtype)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cache_error(cache, "create", error) from None
    _remove_abandoned(cache)
    try:
        temporary = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))
        # mkdtemp makes a private (0700) folder; an entry gets a folder's usual mode so that a cache is shared
        os.chmod(temporary, new_file_mode(folder=True))
    except OSError as error:
        raise _cache_error(cache, "write into", error) from None
    try:
        written = 0
        with open(temporary / "ids.npy", "wb") as out:
            np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                       "fortran_order": False, "shape": (characters,)})

            ascii_table = bytes(table[:128].astype(np.uint8)) + bytes(128) if dtype == np.uint8 else None

            def append(code_points: bytes | np.ndarray) -> None:
                nonlocal written
                if isinstance(code_points, bytes):
                    # an ASCII chunk: uint8 ids by bytes.translate (a 256-entry table) at memory speed
                    ids = (code_points.translate(ascii_table) if ascii_table is not None
                           else table[np.frombuffer(code_points, dtype=np.uint8)].tobytes())
                else:
                    ids = table[code_points].tobytes()
                written += len(ids) // dtype.itemsize
                if written <= characters:
                    out.write(ids)

            check, count = _scan(path, name, append, bar)
            out.flush()
            os.fsync(out.fileno())
        if (check, count) != (digest, characters):
            return False   # edited between the passes: nothing is renamed; the caller reports the change
        _write_json(temporary / "vocabulary.json",
                    {"format": _FORMAT, "sha256": digest, "characters": characters, "dtype": dtype.name,
                     "source_bytes": fingerprint[0], "fingerprint": fingerprint[1],
                     "vocabulary": vocabulary.characters}, atomic=False)
        _fsync_folder(temporary)
        try:
            os.rename(temporary, cache / digest)
        except OSError as error:
            if not (cache / digest).is_dir() or (cache / digest).is_symlink():
                raise _cache_error(cache, "write into", error) from None
            # another encoder of the same text renamed its folder first: use that one
        else:
            _fsync_folder(cache)
        return True
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _remove_abandoned(cache: Path) -> None:
    """Remove the temporary folders of encoders killed more than `ABANDONED_AFTER` seconds ago."""
    now = time.time()
    for folder in cache.glob(".tmp-*"):
        try:
            if now - folder.lstat().st_mtime > ABANDONED_AFTER and folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def _open_entry(folder: Path, name: str, fingerprint: tuple[int, str]) -> Corpus | str | None:
    """The cache entry in `folder` as a Corpus; None when there is none; else what is wrong with it (a damaged
    or tampered entry, or one made from other bytes than `fingerprint` describes). Symbolic links are refused,
    never read through."""
    try:
        if not os.path.lexists(folder):
            return None
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return "not a folder (a symbolic link or a file)"
        meta = json.loads(_read_no_follow(folder / "vocabulary.json").decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            return "vocabulary.json of another (older?) format"
        characters = meta["vocabulary"]
        if not (isinstance(characters, str) and characters):
            return "its vocabulary is not a string of characters"
        points = [ord(ch) for ch in characters]
        # encoding sorts the vocabulary by code point: any other order (or a repeat) mis-decodes every id
        if any(a >= b for a, b in zip(points, points[1:])):
            return "its vocabulary is not in strictly increasing code-point order"
        vocabulary = Vocabulary(characters)
        if meta["sha256"] != folder.name:
            return "its recorded SHA-256 is not its folder's name"
        if (meta.get("source_bytes"), meta.get("fingerprint")) != fingerprint:
            return "it was made from another text than this file"
        ids = _map_ids(folder / "ids.npy")
        if ids.shape != (meta["characters"],) or ids.dtype != token_dtype(len(vocabulary)):
            return "ids.npy does not match vocabulary.json"
        # an id past the vocabulary would fail (or mis-decode) mid-run: checked once, a chunk at a time
        if _largest_id(folder / "ids.npy", ids) >= len(vocabulary):
            return "ids.npy holds ids past the vocabulary"
    except (OSError, ValueError, KeyError, TypeError, EOFError, IndexError, AttributeError,
            OverflowError, SyntaxError) as error:
        return f"{type(error).__name__}: {error}"
    return Corpus(ids, vocabulary, meta["sha256"], name)


def _largest_id(path: Path, ids: np.memmap) -> int:
    """The largest id in `path` (the file `ids` maps), read a chunk at a time into one buffer: a scan through
    the map would leave every page of a gigabyte file resident in this process."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        largest, size = 0, ids.dtype.itemsize
        for start in range(0, len(ids), CHUNK_BYTES):
            count = min(CHUNK_BYTES, len(ids) - start)
            data = os.pread(descriptor, count * size, ids.offset + start * size)
            if len(data) != count * size:
                raise ValueError("ids.npy is shorter than its header says")
            largest = max(largest, int(np.frombuffer(data, dtype=ids.dtype).max()))
        return largest
    finally:
        os.close(descriptor)


def _read_no_follow(path: Path) -> bytes:
    """The bytes of the regular file `path`; OSError when it is a symbolic link or not a regular file."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        return stream.read()


def _map_ids(path: Path) -> np.memmap:
    """`path`, a .npy file of a 1-D C-order array, as a read-only memory map, opened without following a
    symbolic link (np.load would follow one); ValueError for a damaged header."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        version = np.lib.format.read_magic(stream)
        if version != (1, 0):
            raise ValueError(f"npy format {version}, not 1.0")
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        if fortran_order or len(shape) != 1 or dtype.hasobject or dtype.kind != "u":
            raise ValueError(f"a {dtype} array of shape {shape}, not 1-D unsigned ids")
        offset = stream.tell()
        if os.fstat(stream.fileno()).st_size != offset + shape[0] * dtype.itemsize:
            raise ValueError("its size does not match its header")
        if shape[0] == 0:
            raise ValueError("no ids")
        return np.memmap(stream, dtype=dtype, mode="r", offset=offset, shape=shape)


def _read_index(cache: Path, index: Path) -> str | None:
    try:
        _refuse_links(cache, index)
        digest = json.loads(_read_no_follow(index).decode("utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return digest if isinstance(digest, str) and len(digest) == 64 and all(
        c in "0123456789abcdef" for c in digest) else None


def _write_json(path: Path, value: dict, atomic: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(value, ensure_ascii=True).encode("ascii")
    if not atomic:
        with open(path, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        return
    descriptor, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        os.fchmod(descriptor, new_file_mode())  # a normal file's mode, not mkstemp's 0o600
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
