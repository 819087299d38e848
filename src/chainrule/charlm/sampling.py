"""Choosing the next character from a model's logits, and the prime read from a file.

Pure functions on NumPy arrays; the loops that drive a model (`generate`, `generate_batch`, `beam_search`) are
in model.py. The filters apply in the order Hugging Face's `generate` and nanoGPT's `sample.py` use:
temperature, then top-k, then top-p (nucleus), each on the previous one's output. Top-p is from **Holtzman et
al.**: Ari Holtzman, Jan Buys, Li Du, Maxwell Forbes, Yejin Choi, "The Curious Case of Neural Text
Degeneration", ICLR 2020, https://arxiv.org/abs/1904.09751.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .text import Vocabulary, read_text

# The largest prime file read, in bytes: a long prime is a chapter, not a corpus (it runs through the model
# once, in chunks of PRIME_CHUNK characters, before the first character is chosen).
MAX_PRIME_BYTES = 1 << 20
PRIME_CHUNK = 4096


def check_sampling_options(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> None:
    """Raise ValueError, naming the option, for a temperature that is not positive and finite, a top_k that is
    not an integer >= 1, or a top_p outside (0, 1].

    >>> check_sampling_options(top_p=0.0)
    Traceback (most recent call last):
    ...
    ValueError: top-p must be in (0, 1], got 0.0
    """
    if not (temperature > 0 and math.isfinite(temperature)):  # NaN fails every comparison
        raise ValueError(f"temperature must be a positive finite number, got {temperature} (for the most likely "
                         "character at every step, use argmax)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top-k must be an integer of at least 1, got {top_k!r}")
    if top_p is not None and not (0 < top_p <= 1):   # NaN fails too
        raise ValueError(f"top-p must be in (0, 1], got {top_p}")


def top_p_mask(probabilities: np.ndarray, top_p: float) -> np.ndarray:
    """The nucleus of each row: a boolean mask of the smallest set of entries whose probability sums to at
    least `top_p` times the row's total (rows need not be normalised).

    probabilities: [..., vocabulary], non-negative and finite; returns a bool array of the same shape. Entries
    are taken in decreasing probability; among equal probabilities the lower index comes first, so a tie at
    the edge of the nucleus keeps the lower indices only (the set stays the smallest). top_p = 1 keeps every
    entry of non-zero probability (no rounding of the cumulative sum can drop one). Raises ValueError for a
    top_p outside (0, 1].

    >>> top_p_mask(np.array([0.1, 0.5, 0.15, 0.25]), 0.7).tolist()
    [False, True, False, True]
    >>> top_p_mask(np.array([0.25, 0.25, 0.25, 0.25]), 0.5).tolist()
    [True, True, False, False]
    """
    check_sampling_options(top_p=top_p)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if top_p == 1:
        return probabilities > 0
    order = np.argsort(-probabilities, axis=-1, kind="stable")
    ordered = np.take_along_axis(probabilities, order, axis=-1)
    cumulative = np.cumsum(ordered, axis=-1)
    before = np.zeros_like(cumulative)   # the mass of the entries ahead of each one
    before[..., 1:] = cumulative[..., :-1]
    # an entry belongs to the nucleus while the mass ahead of it is still short of p: the kept prefix is then
    # the shortest one reaching p (its last entry is the first at which the cumulative sum reaches p)
    keep = (before < top_p * cumulative[..., -1:]) & (ordered > 0)
    mask = np.empty_like(keep)
    np.put_along_axis(mask, order, keep, axis=-1)
    return mask


def filter_logits(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> np.ndarray:
    """The logits to sample from: divided by `temperature`, then all but the `top_k` largest set to -inf, then
    all outside the nucleus of mass `top_p` (computed on the softmax of what top-k left) set to -inf.

    logits: [..., vocabulary] of any float dtype; returns float64 of the same shape. top-k keeps every entry
    equal to the k-th largest (ties at the edge kept, as Hugging Face's TopKLogitsWarper does); top-p's ties
    are described in `top_p_mask`. None (or top_k >= vocabulary, top_p = 1) leaves a filter out. Raises
    ValueError for the values `check_sampling_options` refuses.

    >>> filter_logits(np.log(np.array([0.1, 0.5, 0.15, 0.25])), top_k=3, top_p=0.6).round(3).tolist()
    [-inf, -0.693, -inf, -1.386]
    """
    check_sampling_options(temperature, top_k, top_p)
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    if top_k is not None and top_k < scaled.shape[-1]:
        threshold = np.partition(scaled, -top_k, axis=-1)[..., -top_k, None]
        scaled = np.where(scaled >= threshold, scaled, -np.inf)
    if top_p is not None and top_p < 1:
        scaled = np.where(top_p_mask(_unnormalised_probabilities(scaled), top_p), scaled, -np.inf)
    return scaled


def _unnormalised_probabilities(scaled: np.ndarray) -> np.ndarray:
    """exp(x - max x) per row; ValueError for a row that has no finite maximum or holds NaN, where PyTorch's
    softmax gives NaN and torch.multinomial refuses ("probability tensor contains either inf, nan or element
    < 0")."""
    top = scaled.max(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        probabilities = np.exp(scaled - top)
    if not np.isfinite(top).all() or np.isnan(probabilities).any():
        raise ValueError("the model's next-character scores are not finite (NaN or infinite logits: its weights "
                         "are huge or broken), so there is no distribution to sample from")
    return probabilities


def log_probabilities(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, in float64: [..., vocabulary] -> the same shape. Raises ValueError for
    non-finite scores (see `filter_logits`).

    >>> np.exp(log_probabilities(np.array([[0.0, 0.0]]))).tolist()
    [[0.5, 0.5]]
    """
    scaled = np.asarray(logits, dtype=np.float64)
    probabilities = _unnormalised_probabilities(scaled)
    return scaled - scaled.max(axis=-1, keepdims=True) - np.log(probabilities.sum(axis=-1, keepdims=True))


def draw(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of `logits` [rows, vocabulary] (already filtered), drawn from softmax(logits) by the
    inverse of the cumulative distribution with one `rng.random()` per row; returns int64 [rows]. An entry at
    -inf is never drawn. Raises ValueError for non-finite scores (see `filter_logits`).

    >>> draw(np.array([[0.0, -np.inf, 0.0], [-np.inf, 5.0, -np.inf]]), np.random.default_rng(0)).tolist()
    [2, 1]
    """
    probabilities = _unnormalised_probabilities(np.asarray(logits, dtype=np.float64))
    cumulative = np.cumsum(probabilities, axis=-1)
    targets = rng.random(len(probabilities)) * cumulative[:, -1]
    # the first entry whose cumulative sum exceeds the target: it raised the sum, so its probability is > 0
    # (u < 1 keeps u * total below the total under round-to-nearest, so such an entry exists)
    return (cumulative <= targets[:, None]).sum(axis=-1).astype(np.int64)


def read_prime(path: str | Path, vocabulary: Vocabulary, limit: int = MAX_PRIME_BYTES) -> str:
    """The text of a prime file, read as untrusted input: UTF-8 (a byte-order mark dropped), at most `limit`
    bytes, every character in `vocabulary`. A pipe or `-` (standard input) serves too.

    Raises FileNotFoundError / IsADirectoryError, OSError (naming the file) when it cannot be read, and
    ValueError, one line naming the file, when it is not UTF-8, is empty, is longer than `limit` or holds
    characters the model does not know (listed).
    """
    name = "standard input" if str(path) == "-" else str(path)
    try:
        text = read_text(path, limit=limit)
    except FileNotFoundError:
        raise FileNotFoundError(f"prime file not found: {path}") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"the prime file {path} is a folder; give a text file") from None
    except ValueError as error:
        if f"holds more than {limit:,} bytes" in str(error):
            raise ValueError(f"the prime file {name} holds more than {limit:,} bytes, the most a prime may have "
                             "(sampling.MAX_PRIME_BYTES); give the part that matters, its end") from None
        hint = "; give a file with the text to continue" if str(error).endswith(" is empty") else ""
        raise ValueError(f"the prime file {error}{hint}") from None
    try:
        vocabulary.encode(text, f"prime file {name}")
    except ValueError as error:
        hint = (" (the file has Windows line ends, \\r\\n: convert them to \\n)"
                if "\r" in vocabulary.unknown(text) and "\n" in vocabulary.index else "")
        raise ValueError(f"{error}{hint}") from None
    return text
