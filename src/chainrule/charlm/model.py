"""The character-level language model: characters -> (embedding or one-hot) -> RNN/LSTM/GRU -> logits."""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from .. import nn
from ..autograd import Tensor, no_grad
from ..nn import functional as F
from .config import CELLS
from .checkpoint import CheckpointError, load_checkpoint
from .checkpoint_schema import limit_problem
from .sampling import PRIME_CHUNK, check_sampling_options, draw, filter_logits, log_probabilities
from .text import Vocabulary



@dataclass
class Architecture:
    """A character model's shape apart from its vocabulary: what a training run decides before it has read its
    text (`TrainConfig.architecture`); with the vocabulary it makes a `ModelConfig`. The one place that checks
    these fields: raises ValueError for a value of the wrong type or out of range (model one of CELLS; hidden,
    layers >= 1; embedding >= 0; 0 <= dropout < 1; sizes within `checkpoint_schema.LIMITS`).

    >>> Architecture("gru", hidden=0)
    Traceback (most recent call last):
    ...
    ValueError: hidden must be at least 1, got 0
    """

    model: str = "lstm"
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.0
    embedding: int = 0  # 0: one-hot input

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or self.model not in CELLS:
            raise ValueError(f"model must be one of {sorted(CELLS)}, got {self.model!r}")
        for name in ("hidden", "layers", "embedding"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if not isinstance(self.dropout, (int, float, np.floating)) or isinstance(self.dropout, bool):
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        for name in ("hidden", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.embedding < 0:
            raise ValueError(f"embedding must be 0 (one-hot) or a positive size, got {self.embedding}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("hidden", "layers", "embedding"):
            value = getattr(self, name)
            problem = limit_problem(name, value)   # the limits of the CLI's options and the checkpoint schema
            if problem is not None:
                raise ValueError(f"{name} {problem}, got {value}")


@dataclass
class _Vocabulary:
    vocabulary: str


# the bases' fields come from the last base first: vocabulary, then the architecture's (as checkpoints list them)
@dataclass
class ModelConfig(Architecture, _Vocabulary):
    """What defines a model: its `Architecture` and its vocabulary (the characters, each once, in id order);
    stored in every checkpoint. Raises ValueError for a vocabulary that is not a non-empty string within
    `checkpoint_schema.LIMITS`, and as `Architecture` does for the other fields.

    >>> config = ModelConfig("abc", "gru", hidden=8, layers=1)
    >>> config.architecture
    Architecture(model='gru', hidden=8, layers=1, dropout=0.0, embedding=0)
    """

    def __post_init__(self) -> None:
        if not isinstance(self.vocabulary, str) or not self.vocabulary:
            raise ValueError(f"vocabulary must be a non-empty string of characters, got {self.vocabulary!r}")
        super().__post_init__()
        problem = limit_problem("vocabulary", len(self.vocabulary))
        if problem is not None:
            raise ValueError(f"vocabulary {problem}, got {len(self.vocabulary)}")

    @classmethod
    def build(cls, vocabulary: str, architecture: Architecture) -> ModelConfig:
        """The configuration of a model of `architecture` over `vocabulary`."""
        return cls(vocabulary, **asdict(architecture))

    @property
    def architecture(self) -> Architecture:
        return Architecture(**{f.name: getattr(self, f.name) for f in fields(Architecture)})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CharModel(nn.Module):
    """Next-character model; parameter names: embedding.weight, rnn.*, head.weight, head.bias.

    >>> import numpy as np
    >>> model = CharModel(ModelConfig("abc", hidden=8, layers=1))
    >>> logits, state = model(np.array([[0, 1, 2]]))
    >>> logits.shape
    (1, 3, 3)
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        size = len(config.vocabulary)
        if config.embedding:
            self.embedding = nn.Embedding(size, config.embedding)
        # the recurrent layer's dropout acts between its layers; the one before the head is in forward
        self.rnn = CELLS[config.model](config.embedding or size, config.hidden, num_layers=config.layers,
                                       dropout=config.dropout if config.layers > 1 else 0.0)
        self.head = nn.Linear(config.hidden, size)

    def forward(self, ids: np.ndarray, state: Any = None) -> tuple[Tensor, Any]:
        # the recurrent layer looks up its first projection in a [vocabulary, gates] table (see forward_tokens)
        embedding = self.embedding.weight if self.config.embedding else None
        output, state = self.rnn.forward_tokens(ids, embedding, state)
        if self.config.dropout and self.training:
            output = F.dropout(output, self.config.dropout, True)
        return self.head(output), state


def detach_state(state: Any) -> Any:
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def state_arrays(state: Any) -> list[np.ndarray]:
    """The carried state's arrays in host memory (copied from a GPU), as a checkpoint stores them."""
    return [s.numpy() for s in state] if isinstance(state, tuple) else [state.numpy()]


def state_from_arrays(arrays: list[np.ndarray], model: str, device: Any = None) -> Any:
    tensors = [Tensor(a) if device is None else Tensor(a).to(device) for a in arrays]
    return tuple(tensors) if model == "lstm" else tensors[0]


def load_model(path: Any) -> tuple[CharModel, Vocabulary, dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights; clear errors for any mismatch."""
    arrays, meta = load_checkpoint(path)  # the description is validated, and compared with the weights' shapes
    try:
        config = ModelConfig.from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"the checkpoint's model configuration is unusable: {error}") from None
    model = CharModel(config)
    weights = {key[len("model."):]: value for key, value in arrays.items() if key.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except ValueError as error:
        raise CheckpointError(f"the checkpoint's weights do not fit its configuration: {error}") from None
    model.eval()
    return model, Vocabulary(config.vocabulary), meta


def _select_state(state: Any, rows: np.ndarray, model: str) -> Any:
    """The state of the batch rows `rows` (repeats allowed): every state array is [layers, batch, hidden]."""
    # indexing the tensors keeps the state on its device (a host copy would not be)
    selected = [tensor[:, rows].detach() for tensor in (state if isinstance(state, tuple) else (state,))]
    return tuple(selected) if model == "lstm" else selected[0]


def _run_prime(model: CharModel, ids: np.ndarray) -> tuple[np.ndarray, Any]:
    """Feed the 1-D `ids` in chunks of PRIME_CHUNK (the state carried): the logits after the last one,
    [1, vocabulary], and the state. A chunk bounds the memory a long prime's forward takes."""
    state = None
    for start in range(0, len(ids), PRIME_CHUNK):
        logits, state = model(ids[None, start:start + PRIME_CHUNK], state)
    return logits.numpy()[:, -1], state


def _generate_ids(model: CharModel, vocabulary: Vocabulary, prime: str, length: int, count: int,
                  temperature: float, top_k: int | None, top_p: float | None, argmax: bool,
                  seed: int | None) -> Iterator[np.ndarray]:
    """Yield, `length` times, the next id of each of `count` samples run as one batch: int64 [count]."""
    check_sampling_options(temperature, top_k, top_p)
    if length < 0:
        raise ValueError(f"length must be non-negative, got {length}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be an integer of at least 1, got {count!r}")
    rng = np.random.default_rng(seed)
    ids = vocabulary.encode(prime, "prime text") if prime else None
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            if ids is None:   # no prime: each sample continues a random character of its own
                logits, state = model(rng.integers(len(vocabulary), size=count)[:, None])
                last = logits.numpy()[:, -1]
            else:             # one prime: run it once, then give every sample its state
                last, state = _run_prime(model, ids)
                last, state = np.repeat(last, count, axis=0), _select_state(state, np.zeros(count, np.int64),
                                                                               model.config.model)
            for _ in range(length):
                choice = (np.argmax(last, axis=-1) if argmax
                          else draw(filter_logits(last, temperature, top_k, top_p), rng))
                yield choice
                logits, state = model(choice[:, None], state)
                last = logits.numpy()[:, -1]
    finally:
        model.train(was_training)


def generate(model: CharModel, vocabulary: Vocabulary, prime: str = "", length: int = 500,
             temperature: float = 1.0, top_k: int | None = None, argmax: bool = False,
             seed: int | None = None, top_p: float | None = None) -> Iterator[str]:
    """Yield `length` characters, one at a time, continuing `prime` (which is not repeated; none: a random
    character, not shown, is continued).

    Each character is drawn from the model's distribution after the filters of `sampling.filter_logits`, in
    the order temperature, top-k, top-p (as Hugging Face's generate and nanoGPT); `argmax` takes the most
    likely character instead (the filters then change nothing). The same seed gives the same text.
    Raises ValueError for a temperature that is not positive and finite, top_k < 1, top_p outside (0, 1],
    length < 0, a prime with characters outside the vocabulary, or logits that are not finite.

    >>> model = CharModel(ModelConfig("ab", hidden=4, layers=1))
    >>> len("".join(generate(model, Vocabulary("ab"), "a", 10, seed=0)))
    10
    """
    for choice in _generate_ids(model, vocabulary, prime, length, 1, temperature, top_k, top_p, argmax, seed):
        yield vocabulary.characters[choice[0]]


def generate_batch(model: CharModel, vocabulary: Vocabulary, prime: str = "", length: int = 500, count: int = 1,
                   temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                   argmax: bool = False, seed: int | None = None) -> list[str]:
    """`count` samples of `length` characters continuing `prime`, run through the model as one batch of
    `count` rows: a list of `count` strings. The prime runs once; with a seed the list is reproducible, and
    count=1 gives what `generate` gives for the same seed (a sample of a larger batch draws other random numbers,
    one per row and step). Options and errors as `generate`'s, and ValueError for count < 1.

    >>> model = CharModel(ModelConfig("ab", hidden=4, layers=1))
    >>> [len(text) for text in generate_batch(model, Vocabulary("ab"), "a", 5, count=3, seed=0)]
    [5, 5, 5]
    """
    steps = list(_generate_ids(model, vocabulary, prime, length, count, temperature, top_k, top_p, argmax, seed))
    ids = np.stack(steps, axis=1) if steps else np.zeros((count, 0), np.int64)
    return [vocabulary.decode(row) for row in ids]


def beam_search(model: CharModel, vocabulary: Vocabulary, prime: str, length: int, width: int,
                count: int = 1) -> list[tuple[str, float]]:
    """The `count` most likely continuations of `length` characters after `prime` that a beam of `width`
    finds: a list of (text, log-probability in nats), best first.

    A beam is a candidate continuation; its score is the exact sum of log p(next character | everything
    before) under the model (log softmax in float64 of the model's logits), with no length normalisation:
    every candidate has the same length, so normalising would not change their order. At each step every beam
    is extended by every character and the `width` best extensions are kept (ties: the extension of the better
    beam, then the lower character id, first), so the search is deterministic. Width 1 is greedy decoding
    (`generate(..., argmax=True)`); a width of at least vocabulary**length tries every continuation and
    returns the most likely one. There is no temperature, top-k or top-p: beam search maximises the model's
    own probability. Raises ValueError for an empty prime or one with characters outside the vocabulary,
    length < 0, width < 1, count < 1 or count > width, and for logits that are not finite.

    >>> model = CharModel(ModelConfig("ab", hidden=4, layers=1))
    >>> model = CharModel(ModelConfig("ab", hidden=4, layers=1))
    >>> best = beam_search(model, Vocabulary("ab"), "a", 6, width=1)[0][0]
    >>> best == "".join(generate(model, Vocabulary("ab"), "a", 6, argmax=True))
    True
    """
    for name, value in (("width", width), ("count", count)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"beam {name} must be an integer of at least 1, got {value!r}")
    if count > width:
        raise ValueError(f"a beam of width {width} ends with {width} candidates; {count} were asked for")
    if length < 0:
        raise ValueError(f"length must be non-negative, got {length}")
    if not prime:
        raise ValueError("beam search continues a prime; give one")
    ids = vocabulary.encode(prime, "prime text")
    size = len(vocabulary)
    scores, sequences = np.zeros(1), np.zeros((1, 0), np.int64)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            last, state = _run_prime(model, ids)
            for step in range(length):
                candidates = (scores[:, None] + log_probabilities(last)).ravel()   # [beams * vocabulary]
                best = np.argsort(-candidates, kind="stable")[:width]
                parents, characters = np.divmod(best, size)
                scores = candidates[best]
                sequences = np.concatenate([sequences[parents], characters[:, None]], axis=1)
                if step + 1 < length:
                    logits, state = model(characters[:, None], _select_state(state, parents, model.config.model))
                    last = logits.numpy()[:, -1]
    finally:
        model.train(was_training)
    count = min(count, len(scores))   # fewer candidates than asked exist only for length 0 or a tiny vocabulary
    return [(vocabulary.decode(sequences[i]), float(scores[i])) for i in range(count)]


@dataclass
class Evaluation:
    loss: float      # nats per character
    characters: int  # how many predictions were scored

    @property
    def bits_per_character(self) -> float:
        return self.loss / math.log(2)

    @property
    def perplexity(self) -> float:
        """exp(loss); inf where that overflows a float (a loss above ~709.78 nats, e.g. exploded weights)."""
        try:
            return math.exp(self.loss)
        except OverflowError:
            return math.inf


def evaluate(model: CharModel, ids: np.ndarray, batch_size: int = 32, seq_len: int = 128) -> Evaluation:
    """Mean next-character loss over `ids`, read as `batch_size` streams with the state carried along.

    The loss may be large or inf for a model whose weights exploded; `perplexity` is then inf, not an error.
    Raises ValueError for fewer than two ids, or batch_size or seq_len below 1.

    >>> model = CharModel(ModelConfig("ab", hidden=4, layers=1))
    >>> result = evaluate(model, np.array([0, 1] * 50), batch_size=2, seq_len=8)
    >>> result.characters
    98
    """
    if len(ids) < 2:
        raise ValueError("evaluation needs at least two characters")
    if seq_len < 1 or batch_size < 1:
        raise ValueError(f"batch_size and seq_len must be at least 1, got {batch_size} and {seq_len}")
    batch_size = max(1, min(batch_size, (len(ids) - 1) // 2))
    stream_length = (len(ids) - 1) // batch_size
    inputs = ids[:stream_length * batch_size].reshape(batch_size, stream_length)
    targets = ids[1:stream_length * batch_size + 1].reshape(batch_size, stream_length)
    was_training = model.training
    model.eval()
    total, state = 0.0, None
    try:
        with no_grad():
            for start in range(0, stream_length, seq_len):
                # int64 copies of one batch: `ids` may be a uint8/16/32 memory map of a corpus of any size
                batch = np.asarray(inputs[:, start:start + seq_len], dtype=np.int64)
                logits, state = model(batch, state)
                expected = np.asarray(targets[:, start:start + seq_len], dtype=np.int64)
                total += float(F.cross_entropy(logits, expected, reduction="sum").item())
    finally:
        model.train(was_training)
    return Evaluation(total / targets.size, int(targets.size))
