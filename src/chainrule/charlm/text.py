"""Text data for character-level language models: vocabulary, splits, and stateful BPTT batches."""
from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_CORPUS_NAME = "python-reference-manual"
# The largest text read into memory, in bytes: it stops a pseudo-file (/dev/zero, an endless pipe) before it
# fills memory. A regular file is not read here but encoded in chunks to a cached memory map (corpus.py).
MAX_TEXT_BYTES = 2 << 30
_CHUNK = 16 << 20


def default_corpus() -> str:
    """The Python reference manual's topics, shipped with every CPython (`pydoc_data.topics`): no download.

    >>> len(default_corpus()) > 100_000
    True
    """
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def read_text(path: str | Path, limit: int | None = None) -> str:
    """Read a UTF-8 text: a file, a pipe (`<(cat f)`, /dev/stdin) or `-` (standard input), of at most `limit`
    bytes (default `MAX_TEXT_BYTES`, 2 GiB).

    A byte-order mark at the start is dropped (it marks the encoding; it is not a character of the text).
    Raises FileNotFoundError when nothing is at `path`, IsADirectoryError for a folder, ValueError when the
    text is not UTF-8, is empty or is longer than `limit` (read in chunks, so an endless source such as
    /dev/zero is stopped at the limit), and OSError (with the file's name) when it cannot be read.

    >>> read_text("/dev/zero", limit=1000)
    Traceback (most recent call last):
    ...
    ValueError: /dev/zero holds more than 1,000 bytes, the most a text may have (MAX_TEXT_BYTES); give a shorter text
    """
    limit = MAX_TEXT_BYTES if limit is None else limit
    if str(path) == "-":
        name, data = "standard input", _read_limited(sys.stdin.buffer, "standard input", limit)
    else:
        path = Path(path)
        name = str(path)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder; give a text file")
        if not path.exists():
            raise FileNotFoundError(f"text file not found: {path}")
        # open() rather than is_file(): pipes and character devices are texts too
        with open(path, "rb") as stream:
            data = _read_limited(stream, name, limit)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{name} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    text = text.removeprefix("\ufeff")
    if not text:
        raise ValueError(f"{name} is empty")
    return text


def _read_limited(stream, name: str, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ValueError(f"{name} holds more than {limit:,} bytes, the most a text may have (MAX_TEXT_BYTES); "
                             "give a shorter text")


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Vocabulary:
    """The sorted set of characters of a text, with encoding to and from integer ids.

    >>> vocab = Vocabulary.from_text("hello")
    >>> vocab.characters, vocab.encode("hell").tolist(), vocab.decode([3, 2])
    ('ehlo', [1, 0, 2, 2], 'ol')
    """

    def __init__(self, characters: Iterable[str]) -> None:
        self.characters = "".join(characters)
        if len(set(self.characters)) != len(self.characters):
            raise ValueError("a vocabulary lists each character once")
        self.index = {ch: i for i, ch in enumerate(self.characters)}

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.characters)

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` that are not in the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.index))

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        missing = self.unknown(text)
        if missing:
            shown = ", ".join(repr(ch) for ch in missing[:20]) + (" ..." if len(missing) > 20 else "")
            raise ValueError(f"the {what} has {len(missing)} character(s) that are not in the model's "
                             f"vocabulary of {len(self)}: {shown}")
        return np.fromiter((self.index[ch] for ch in text), dtype=np.int64, count=len(text))

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return "".join(self.characters[int(i)] for i in ids)


def split_text(text: str, validation_fraction: float) -> tuple[str, str]:
    """The first (1 - f) of the text for training, the last f for validation (the corpus convention).

    >>> split_text("abcdefghij", 0.2)
    ('abcdefgh', 'ij')
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"the validation fraction must be in [0, 1), got {validation_fraction}")
    cut = len(text) - int(round(len(text) * validation_fraction))
    return text[:cut], text[cut:]


@dataclass
class TextStreams:
    """A text cut into `batch_size` contiguous streams, read `seq_len` characters at a time.

    `ids`: [characters] integers, e.g. a read-only memory map (`corpus.Corpus.ids`); the streams are a view of
    it (a contiguous slice reshaped, nothing copied) and `batch` returns int64 copies of one batch.

    Batch k of an epoch holds characters [k·T, (k+1)·T) of every stream and, as targets, the characters one
    step later; so the final hidden state of one batch is the right initial state of the next (char-rnn's
    stateful truncated BPTT).

    >>> streams = TextStreams(np.arange(21), batch_size=2, seq_len=3)
    >>> streams.batches_per_epoch
    3
    >>> x, y = streams.batch(1)
    >>> x.tolist(), y.tolist()
    ([[3, 4, 5], [13, 14, 15]], [[4, 5, 6], [14, 15, 16]])
    """

    ids: np.ndarray
    batch_size: int
    seq_len: int

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.seq_len < 1:
            raise ValueError(f"batch size and sequence length must be positive, got {self.batch_size} and "
                             f"{self.seq_len}")
        stream_length = len(self.ids) // self.batch_size
        if stream_length < self.seq_len + 1:
            raise ValueError(f"the text ({len(self.ids)} characters) is too short for {self.batch_size} streams "
                             f"of at least {self.seq_len + 1} characters; lower --batch-size or --seq-len")
        self.streams = np.ascontiguousarray(self.ids[:stream_length * self.batch_size].reshape(self.batch_size, -1))

    @property
    def batches_per_epoch(self) -> int:
        return (self.streams.shape[1] - 1) // self.seq_len

    def batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start = index * self.seq_len
        # int64 copies of the batch alone: `ids` may be a uint8/16/32 memory map of a corpus of any size
        return (np.asarray(self.streams[:, start:start + self.seq_len], dtype=np.int64),
                np.asarray(self.streams[:, start + 1:start + self.seq_len + 1], dtype=np.int64))
