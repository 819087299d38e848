"""What a checkpoint description (NAME.json) may hold, checked as a whole before anything is built from it.

A run folder is copied, downloaded and shared, so its descriptions are untrusted input. `validate_description`
checks every field a reader uses (types, ranges, required keys: no defaults are filled in), the fields against
each other (the training configuration against the model's, the optimizer's and schedule's state against
their kinds), and `check_arrays` checks the configuration against the names, dtypes and shapes listed in the
weights file's header, before the arrays are read. Every error names the field, what was expected and what was
found. The kinds of cell, optimizer and schedule are listed here (this module sits below charlm and
training); tests check the lists against theirs.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import CELLS, GATES

FORMAT = "chainrule-checkpoint-1"
CELL_NAMES = tuple(CELLS)
OPTIMIZERS = ("adagrad", "adam", "rmsprop", "sgd")
SCHEDULES = ("constant", "step", "exponential", "cosine")
FLOAT_DTYPES = {"F32": 4, "F64": 8}
WRITTEN_DTYPE = "F32"   # every array the trainer writes (parameters, optimizer state, carried state) is float32

# counts stay within int64, where NumPy and the compiled kernels take them
INT64_MAX = 2 ** 63 - 1

# The one table of limits on sizes and counts: the command line's options, TrainConfig/ModelConfig and this
# schema all check against it, so a value the CLI refuses is refused in a checkpoint too (and the reverse).
# Each entry: (lowest, highest, lowest excluded). Sizes: beyond these a layer's matrices outgrow memory;
# counts of steps: exact in a float64 (2^53); time: a million epochs, ten million minutes.
LIMITS: dict[str, tuple[float, float, bool]] = {
    "hidden": (1, 1 << 16, False),
    "layers": (1, 256, False),
    "embedding": (0, 1 << 16, False),
    "vocabulary": (1, 1 << 16, False),        # characters of a model's vocabulary
    "seq_len": (1, 1 << 20, False),
    "batch_size": (1, 1 << 20, False),
    "steps": (1, 2 ** 53, False),
    "epochs": (0, 1e6, True),
    "minutes": (0, 1e7, True),
    "eval_every": (1, 2 ** 53, False),
    "sample_every": (0, 2 ** 53, False),
    "lr_decay_every": (1, 2 ** 53, False),
    "sample_length": (0, 1 << 20, False),
    "elapsed": (0, 1e7 * 60 * 1e3, False),   # seconds: a thousand budgets of the longest --minutes
}


def limit_problem(name: str, value: float) -> str | None:
    """What is wrong with `value` for the limited quantity `name` (see LIMITS), or None when it is in range.

    >>> limit_problem("layers", 10 ** 9)
    'should be in [1, 256]'
    >>> limit_problem("epochs", 0) is None, limit_problem("epochs", 2.5) is None
    (False, True)
    """
    low, high, low_open = LIMITS[name]
    if low < value <= high or (value == low and not low_open):
        return None
    return f"should be in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}]"


def _bound(value: float) -> str:
    if value == 2 ** 53:   # a representation's limit (the largest integer a float holds exactly), not a choice
        return "2**53"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _limited(kind: type, name: str) -> Any:
    low, high, low_open = LIMITS[name]
    return Annotated[kind, Field(gt=low, le=high) if low_open else Field(ge=low, le=high)]
NonNegativeInt = Annotated[int, Field(ge=0, le=INT64_MAX)]
PositiveInt = Annotated[int, Field(ge=1, le=INT64_MAX)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegativeFinite = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class CheckpointDescriptionError(ValueError):
    """A checkpoint description breaks the schema; `problems` lists (field, what is wrong, what was found)."""

    def __init__(self, problems: list[tuple[str, str, Any]]) -> None:
        self.problems = problems
        lines = [f"{field}: {message}{_found(found)}" for field, message, found in problems[:6]]
        more = f"; and {len(problems) - 6} more" if len(problems) > 6 else ""
        super().__init__("; ".join(lines) + more)


_MISSING = object()


def _found(value: Any) -> str:
    if value is _MISSING:
        return ""
    text = repr(value)
    return f" (found {text if len(text) <= 60 else text[:57] + '...'})"


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def _printable(value: str) -> str:
    # info prints it: a control character could drive the terminal (escape sequences)
    if any("\udc80" <= c <= "\udcff" for c in value):   # os.fsdecode's escape of a byte that is not UTF-8
        raise ValueError("should hold no undecodable (non-UTF-8) bytes")
    if not value.isprintable():
        raise ValueError("should hold no control characters")
    return value


class ModelSection(_Strict):
    vocabulary: Annotated[str, Field(min_length=LIMITS["vocabulary"][0], max_length=LIMITS["vocabulary"][1])]
    model: Literal[CELL_NAMES]  # type: ignore[valid-type]
    hidden: _limited(int, "hidden")  # type: ignore[valid-type]
    layers: _limited(int, "layers")  # type: ignore[valid-type]
    dropout: Fraction
    embedding: _limited(int, "embedding")  # type: ignore[valid-type]

    @field_validator("vocabulary")
    @classmethod
    def _each_character_once(cls, value: str) -> str:
        from collections import Counter

        repeated = sorted(c for c, n in Counter(value).items() if n > 1)   # linear: a vocabulary may be long
        if repeated:
            raise ValueError(f"the vocabulary must list each character once; repeated: {repeated[:5]}")
        return value


class TrainSection(_Strict):
    text: str | None
    model: Literal[CELL_NAMES]  # type: ignore[valid-type]
    hidden: _limited(int, "hidden")  # type: ignore[valid-type]
    layers: _limited(int, "layers")  # type: ignore[valid-type]
    dropout: Fraction
    embedding: _limited(int, "embedding")  # type: ignore[valid-type]
    seq_len: _limited(int, "seq_len")  # type: ignore[valid-type]
    batch_size: _limited(int, "batch_size")  # type: ignore[valid-type]
    optimizer: Literal[OPTIMIZERS]  # type: ignore[valid-type]
    lr: PositiveFinite
    schedule: Literal[SCHEDULES]  # type: ignore[valid-type]
    lr_decay: PositiveFinite
    lr_decay_every: _limited(int, "lr_decay_every")  # type: ignore[valid-type]
    grad_clip: NonNegativeFinite
    steps: _limited(int, "steps") | None  # type: ignore[valid-type]
    epochs: _limited(float, "epochs") | None  # type: ignore[valid-type]
    minutes: _limited(float, "minutes") | None  # type: ignore[valid-type]
    val_frac: Fraction
    eval_every: _limited(int, "eval_every")  # type: ignore[valid-type]
    sample_every: _limited(int, "sample_every")  # type: ignore[valid-type]
    sample_length: _limited(int, "sample_length")  # type: ignore[valid-type]
    seed: Annotated[int, Field(ge=0, lt=2 ** 128)]  # NumPy seeds are non-negative

    @field_validator("text")
    @classmethod
    def _text_printable(cls, value: str | None) -> str | None:
        return None if value is None else _printable(value)


class TextSection(_Strict):
    name: str
    sha256: Sha256

    @field_validator("name")
    @classmethod
    def _name_printable(cls, value: str) -> str:
        return _printable(value)


class ProgressSection(_Strict):
    step: NonNegativeInt
    epoch: NonNegativeInt
    batch: NonNegativeInt
    elapsed: _limited(float, "elapsed")  # type: ignore[valid-type]
    best_val_loss: NonNegativeFinite | None


class HistoryRecord(BaseModel):
    # exactly the fields the trainer writes: an extra key could hold anything (a list nested 900 deep breaks
    # the next checkpoint write), and no reader uses one
    model_config = ConfigDict(strict=True, extra="forbid")
    step: NonNegativeInt
    epoch: NonNegativeInt
    train_loss: Annotated[float, Field(ge=0)] | None  # a cross-entropy: not negative, not NaN (inf may be)
    val_loss: Annotated[float, Field(ge=0)] | None
    lr: NonNegativeFinite
    elapsed: _limited(float, "elapsed")  # type: ignore[valid-type]
    chars_per_second: NonNegativeFinite
    losses: list[NonNegativeFinite] = []  # each step's training loss since the previous record (absent: older runs)


class _Group(_Strict):
    lr: NonNegativeFinite
    # set by a schedule (and kept when a resume drops it); nothing reads it back, so it may be absent
    initial_lr: PositiveFinite = None  # type: ignore[assignment]
    weight_decay: NonNegativeFinite
    params: list[NonNegativeInt]


class AdamGroup(_Group):
    betas: Annotated[list[Fraction], Field(min_length=2, max_length=2)]
    eps: PositiveFinite
    amsgrad: bool


class SGDGroup(_Group):
    momentum: NonNegativeFinite
    dampening: Finite
    nesterov: bool


class RMSpropGroup(_Group):
    alpha: Fraction
    eps: PositiveFinite
    momentum: NonNegativeFinite
    centered: bool


class AdagradGroup(_Group):
    lr_decay: NonNegativeFinite
    initial_accumulator_value: NonNegativeFinite
    eps: PositiveFinite


GROUPS: dict[str, type[BaseModel]] = {"adam": AdamGroup, "sgd": SGDGroup, "rmsprop": RMSpropGroup,
                                     "adagrad": AdagradGroup}


class OptimizerSection(_Strict):
    param_groups: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=1)]
    scalars: dict[Annotated[str, Field(pattern=r"^(0|[1-9][0-9]{0,5})$")], dict[str, NonNegativeInt]]


class _Schedule(_Strict):
    base_lrs: Annotated[list[PositiveFinite], Field(min_length=1, max_length=1)]
    last_epoch: Annotated[int, Field(ge=-1, le=INT64_MAX)]


class StepSchedule(_Schedule):
    step_size: PositiveInt
    gamma: PositiveFinite


class ExponentialSchedule(_Schedule):
    gamma: PositiveFinite


class CosineSchedule(_Schedule):
    T_max: PositiveInt  # noqa: N815 (the optimizer's attribute name)
    eta_min: NonNegativeFinite


SCHEDULE_STATES: dict[str, type[BaseModel]] = {"step": StepSchedule, "exponential": ExponentialSchedule,
                                              "cosine": CosineSchedule}


class PCG64State(_Strict):
    state: Annotated[int, Field(ge=0, lt=2 ** 128)]
    inc: Annotated[int, Field(ge=0, lt=2 ** 128)]


class RNGSection(_Strict):
    bit_generator: Literal["PCG64"]
    state: PCG64State
    has_uint32: Annotated[int, Field(ge=0, le=1)]
    uinteger: Annotated[int, Field(ge=0, lt=2 ** 32)]


class Description(_Strict):
    format: Literal[FORMAT]  # type: ignore[valid-type]
    weights_file: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+-[0-9]{8,}\.safetensors$")]
    weights_sha256: Sha256
    step: NonNegativeInt
    model: ModelSection
    train: TrainSection
    text: TextSection
    progress: ProgressSection
    history: list[HistoryRecord]
    optimizer: OptimizerSection
    schedule: dict[str, Any] | None
    rng: RNGSection
    parameters: NonNegativeInt
    world_size: PositiveInt = 1   # the MPI processes that trained it (absent in checkpoints before MPI training)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(the whole description)"


def _expected(error: Mapping[str, Any]) -> str:
    if error["type"] == "missing":
        return "is required and missing"
    if error["type"] == "extra_forbidden":
        return "is not a field of this checkpoint format"
    if error["type"] == "string_pattern_mismatch":
        loc = error["loc"]
        if loc[-1] == "[key]":
            return "should be a parameter index: 0, 1, 2, ..."
        if loc[-1] == "weights_file":
            return "should be a bare file name NAME-<step, 8 digits>.safetensors in the run folder"
        return "should be 64 lowercase hexadecimal digits (a SHA-256)"
    message = error["msg"].removeprefix("Value error, ")
    if message.startswith("Input should"):
        return "should" + message[len("Input should"):]
    return message[:1].lower() + message[1:]


def _problems(error: ValidationError, prefix: str = "") -> list[tuple[str, str, Any]]:
    out = []
    for item in error.errors(include_url=False):
        loc = tuple(part for part in item["loc"] if part != "[key]")
        found = _MISSING if item["type"] == "missing" else item.get("input", _MISSING)
        out.append((prefix + _location(loc), _expected(item), found))
    return out


def _check(condition: bool, problems: list, field: str, message: str, found: Any = _MISSING) -> None:
    if not condition:
        problems.append((field, message, found))


def parameter_shapes(model: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The model's parameters in the order `CharModel.parameters()` yields them, with their shapes.

    >>> parameter_shapes({"vocabulary": "ab", "model": "gru", "hidden": 4, "layers": 1, "embedding": 0})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'rnn.weight_ih_l0': (12, 2), 'rnn.weight_hh_l0': (12, 4), 'rnn.bias_ih_l0': (12,), 'rnn.bias_hh_l0': (12,),
     'head.weight': (2, 4), 'head.bias': (2,)}
    """
    for name, value in (("layers", model["layers"]), ("hidden", model["hidden"]),
                        ("embedding", model["embedding"]), ("vocabulary", len(model["vocabulary"]))):
        problem = limit_problem(name, value)   # before the per-layer loop: a huge count must not run it
        if problem is not None:
            raise ValueError(f"model.{name}: {problem} (found {value})")
    size, hidden, embedding = len(model["vocabulary"]), model["hidden"], model["embedding"]
    rows = GATES[model["model"]] * hidden
    shapes: dict[str, tuple[int, ...]] = {}
    if embedding:
        shapes["embedding.weight"] = (size, embedding)
    for layer in range(model["layers"]):
        shapes[f"rnn.weight_ih_l{layer}"] = (rows, (embedding or size) if layer == 0 else hidden)
        shapes[f"rnn.weight_hh_l{layer}"] = (rows, hidden)
        shapes[f"rnn.bias_ih_l{layer}"] = (rows,)
        shapes[f"rnn.bias_hh_l{layer}"] = (rows,)
    shapes["head.weight"] = (size, hidden)
    shapes["head.bias"] = (size,)
    return shapes


def _optimizer_arrays(meta: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Per parameter index with optimizer state: the array names that state must hold."""
    kind, group = meta["train"]["optimizer"], meta["optimizer"]["param_groups"][0]
    out = {}
    for index, scalars in meta["optimizer"]["scalars"].items():
        names: tuple[str, ...]
        if kind == "sgd":
            names = ("momentum_buffer",) if group["momentum"] and meta["step"] > 0 else ()
        elif not scalars:
            names = ()
        elif kind == "adam":
            names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
        elif kind == "rmsprop":
            names = (("square_avg",) + (("momentum_buffer",) if group["momentum"] else ())
                     + (("grad_avg",) if group["centered"] else ()))
        else:
            names = ("sum",)
        out[index] = names
    return out


def validate_description(raw: Any) -> dict[str, Any]:
    """Check a parsed checkpoint description as a whole; returns it as plain data, the same keys with each
    number of the type its field has (an integer given for a float field becomes a float).

    Raises `CheckpointDescriptionError` listing each problem: the field (dotted path), what was expected,
    what was found.
    """
    if not isinstance(raw, dict):
        raise CheckpointDescriptionError([("(the whole description)", "should be a JSON object",
                                           type(raw).__name__)])
    try:
        validated = Description.model_validate(raw)
        meta = validated.model_dump()
        # a record written before the step losses were kept is read back as it is, without them
        meta["history"] = [record.model_dump(exclude_unset=True) for record in validated.history]
    except ValidationError as error:
        raise CheckpointDescriptionError(_problems(error)) from None
    if "world_size" not in raw:   # written before MPI training: the same keys back, none added
        del meta["world_size"]
    problems: list[tuple[str, str, Any]] = []
    model, train, progress = meta["model"], meta["train"], meta["progress"]
    for key in ("model", "hidden", "layers", "dropout", "embedding"):
        _check(train[key] == model[key], problems, f"train.{key}", f"should equal model.{key} ({model[key]!r})",
               train[key])
    _check(progress["step"] == meta["step"], problems, "progress.step", f"should equal step ({meta['step']})",
           progress["step"])
    shapes = parameter_shapes(model)
    kind = train["optimizer"]
    group: Any
    try:
        group = GROUPS[kind].model_validate(meta["optimizer"]["param_groups"][0])
    except ValidationError as error:
        problems += _problems(error, "optimizer.param_groups.0.")
        group = None
    if group is not None:
        meta["optimizer"]["param_groups"][0] = group.model_dump(exclude_unset=True)
        _check(group.params == list(range(len(shapes))), problems, "optimizer.param_groups.0.params",
               f"should be the parameter indices 0..{len(shapes) - 1}", group.params)
    for index, scalars in meta["optimizer"]["scalars"].items():
        field = f"optimizer.scalars.{index}"
        _check(int(index) < len(shapes), problems, field, f"names no parameter (the model has {len(shapes)})")
        allowed = set() if kind == "sgd" else {"step"}
        _check(set(scalars) in (set(), allowed), problems, field,
               f"should hold {sorted(allowed) or 'nothing'} for {kind}", scalars)
    schedule_kind, schedule = train["schedule"], meta["schedule"]
    if schedule_kind == "constant":
        _check(schedule is None, problems, "schedule", "should be null for the constant schedule", schedule)
    elif schedule is None:
        problems.append(("schedule", f"is required for the {schedule_kind} schedule", None))
    else:
        try:
            meta["schedule"] = SCHEDULE_STATES[schedule_kind].model_validate(schedule).model_dump()
        except ValidationError as error:
            problems += _problems(error, "schedule.")
    if problems:
        raise CheckpointDescriptionError(problems)
    return meta


def expected_arrays(meta: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The arrays a checkpoint with this (valid) description holds, with their shapes: the model's and the
    optimizer's. The carried state (`carry_shapes`) is there too except at an epoch's end."""
    shapes = parameter_shapes(meta["model"])
    by_index = list(shapes.values())
    out: dict[str, tuple[int, ...]] = {f"model.{name}": shape for name, shape in shapes.items()}
    for index, names in _optimizer_arrays(meta).items():
        for name in names:
            out[f"optimizer.{index}.{name}"] = by_index[int(index)]
    return out


def carry_shapes(meta: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The carried recurrent state's arrays (h, and c for an LSTM): [layers, batch_size, hidden]."""
    model = meta["model"]
    shape = (model["layers"], meta["train"]["batch_size"], model["hidden"])
    return {f"carry.{k}": shape for k in range(2 if model["model"] == "lstm" else 1)}


def check_arrays(meta: dict[str, Any], header: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """Compare a valid description with the arrays a weights file lists: {name: (dtype, shape)}.

    Raises `CheckpointDescriptionError` naming each missing, unexpected or misshapen array.
    """
    problems: list[tuple[str, str, Any]] = []
    expected = expected_arrays(meta)
    carry = carry_shapes(meta)
    present_carry = [name for name in header if name.startswith("carry.")]
    if present_carry:
        expected.update(carry)
    for name, shape in expected.items():
        if name not in header:
            problems.append((f"weights file: {name}", f"is missing (expected shape {list(shape)})", _MISSING))
            continue
        dtype, found = header[name]
        if dtype != WRITTEN_DTYPE:
            problems.append((f"weights file: {name}", "should be F32 (float32), the dtype chainrule writes",
                             dtype))
        elif tuple(found) != tuple(shape):
            problems.append((f"weights file: {name}", f"should have shape {list(shape)} for the model the "
                             "description configures", list(found)))
    for name in sorted(set(header) - set(expected)):
        index = re.fullmatch(r"optimizer\.([0-9]+)\..+", name)
        why = "" if index is None else (
            f" (optimizer.scalars.{index[1]} gives parameter {index[1]} no such state)"
            if index[1] in meta["optimizer"]["scalars"] else f" (optimizer.scalars.{index[1]} is missing)")
        problems.append((f"weights file: {name}", f"is not an array of this checkpoint{why}", list(header[name][1])))
    count = sum(math.prod(shape) for shape in parameter_shapes(meta["model"]).values())
    _check(meta["parameters"] == count, problems, "parameters",
           f"should be the model's parameter count, {count}", meta["parameters"])
    if problems:
        raise CheckpointDescriptionError(problems)


__all__ = ["CheckpointDescriptionError", "Description", "FORMAT", "validate_description", "check_arrays",
           "parameter_shapes", "expected_arrays", "carry_shapes"]
