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
from .text import Vocabulary



@dataclass
class ModelConfig:
    """What defines a model's shape; stored in every checkpoint. Raises ValueError for a value of the wrong
    type or out of range (hidden, layers >= 1; embedding >= 0; 0 <= dropout < 1)."""

    vocabulary: str
    model: str = "lstm"
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.0
    embedding: int = 0  # 0: one-hot input

    def __post_init__(self) -> None:
        if not isinstance(self.vocabulary, str) or not self.vocabulary:
            raise ValueError(f"vocabulary must be a non-empty string of characters, got {self.vocabulary!r}")
        if self.model not in CELLS:
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
        for name, value in (("hidden", self.hidden), ("layers", self.layers), ("embedding", self.embedding),
                            ("vocabulary", len(self.vocabulary))):
            problem = limit_problem(name, value)   # the limits of the CLI's options and the checkpoint schema
            if problem is not None:
                raise ValueError(f"{name} {problem}, got {value}")

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


def _choose(logits: np.ndarray, temperature: float, top_k: int | None, argmax: bool,
            rng: np.random.Generator) -> int:
    if argmax:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < scaled.size:
        threshold = np.partition(scaled, -top_k)[-top_k]
        scaled = np.where(scaled >= threshold, scaled, -np.inf)
    probabilities = np.exp(scaled - scaled.max())
    cumulative = np.cumsum(probabilities)
    return int(min(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"), scaled.size - 1))


def generate(model: CharModel, vocabulary: Vocabulary, prime: str = "", length: int = 500,
             temperature: float = 1.0, top_k: int | None = None, argmax: bool = False,
             seed: int | None = None) -> Iterator[str]:
    """Yield `length` characters, one at a time, continuing `prime` (which is not repeated).

    Raises ValueError for a temperature that is not positive and finite, top_k < 1 or length < 0.

    >>> model = CharModel(ModelConfig("ab", hidden=4, layers=1))
    >>> len("".join(generate(model, Vocabulary("ab"), "a", 10, seed=0)))
    10
    """
    if not (temperature > 0 and math.isfinite(temperature)):  # NaN fails every comparison
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top-k must be at least 1, got {top_k}")
    if length < 0:
        raise ValueError(f"length must be non-negative, got {length}")
    rng = np.random.default_rng(seed)
    ids = vocabulary.encode(prime, "prime text") if prime else np.array([rng.integers(len(vocabulary))])
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            logits, state = model(ids[None, :])
            last = logits[0, -1].numpy()   # host memory (a copy from a GPU): the choice is made there
            for _ in range(length):
                choice = _choose(last, temperature, top_k, argmax, rng)
                yield vocabulary.characters[choice]
                logits, state = model(np.array([[choice]]), state)
                last = logits[0, -1].numpy()   # host memory (a copy from a GPU): the choice is made there
    finally:
        model.train(was_training)


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
                logits, state = model(inputs[:, start:start + seq_len], state)
                total += float(F.cross_entropy(logits, targets[:, start:start + seq_len], reduction="sum").item())
    finally:
        model.train(was_training)
    return Evaluation(total / targets.size, int(targets.size))
