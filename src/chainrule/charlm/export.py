"""Export a chainrule character-model checkpoint: to ONNX (`onnx`, an optional extra) or to PyTorch (`torch`).

The checkpoint's weights already use PyTorch's names and layouts (`rnn.weight_ih_l0` is [4H, I] with gates
i, f, g, o, and so on), so the conversion to PyTorch modules is a copy:

    embedding, rnn, head = to_torch("runs/my-run")
    logits = head(rnn(embedding(torch.tensor([[3, 1, 4]])))[0])   # [1, 3, vocabulary]

For a one-hot model the returned embedding is a frozen identity, which equals feeding one-hot vectors.

`chainrule export RUN --format onnx|torch` writes a file that runs without chainrule (`export` below):

- ONNX (`onnx_model`): built with `onnx.helper` (no PyTorch involved); the recurrent layers are ONNX's own
  LSTM / GRU / RNN operators. Inputs `input_ids` int64 [batch, sequence], `h0` float32 [layers, batch, hidden]
  (and `c0` for an LSTM); outputs `logits` float32 [batch, sequence, vocabulary] (unnormalised: softmax gives
  the next-character distribution) and the final states `h_n` (and `c_n`) of the same shape as `h0`. Feed
  zeros as the first state and each call's final state to the next to stream character by character. The
  vocabulary is the model's metadata property `vocabulary`, a JSON string whose i-th character has id i:
  `json.loads(onnxruntime.InferenceSession(path).get_modelmeta().custom_metadata_map["vocabulary"])`.
- PyTorch (`torch_file_contents`): a `torch.save` file of tensors, strings and numbers only, so
  `torch.load(path, weights_only=True)` reads it; PyTorch's own modules are rebuilt from it without chainrule:

      saved = torch.load("model.pt", weights_only=True)
      weights, hidden, size = saved["state_dict"], saved["hidden"], len(saved["vocabulary"])
      embedding = torch.nn.Embedding.from_pretrained(weights["embedding.weight"])
      rnn = getattr(torch.nn, saved["cell"])(weights["embedding.weight"].shape[1], hidden,
                                             num_layers=saved["layers"], batch_first=True)
      rnn.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("rnn.")})
      head = torch.nn.Linear(hidden, size)
      head.load_state_dict({k[5:]: v for k, v in weights.items() if k.startswith("head.")})
      output, state = rnn(embedding(ids))       # ids: int64 [batch, sequence]
      logits = head(output)                     # [batch, sequence, vocabulary]

  (TorchScript is deprecated in PyTorch 2.13 and `torch.export` fixes the sequence length of a recurrent
  layer, so the file holds weights, not a program.)
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import load_checkpoint, new_file_mode, resolve_checkpoint
from .config import CELLS
from .extras import require

FORMATS = ("onnx", "torch")
SUFFIXES = {"onnx": ".onnx", "torch": ".pt"}
OPSET = 17   # LSTM/GRU/RNN of opset 14 (with the layout attribute); Squeeze and Slice take axes as inputs
ONNX_SIZE_LIMIT = 2**31 - 2**24   # bytes of weights: protobuf's 2 GiB message limit, less room for the graph
IR_VERSION = 8   # what the opset-17 era runtimes read; a newer IR version would shut out older onnxruntimes
# PyTorch's gate blocks (rows of W_ih, W_hh, b_ih, b_hh) taken in ONNX's order:
# LSTM i, f, g, o -> i, o, f, c;  GRU r, z, n -> z, r, h;  RNN: one block
ONNX_GATE_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn": [0]}
ONNX_OPERATOR = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def to_torch(checkpoint: str | Path) -> tuple[Any, Any, Any]:
    """(torch.nn.Embedding, torch.nn.LSTM/GRU/RNN with batch_first=True, torch.nn.Linear) from a checkpoint.

    The checkpoint is validated first (`load_checkpoint`: description, containment, arrays against the
    configuration); raises `CheckpointError` naming what is wrong.
    """
    import torch

    arrays, meta = load_checkpoint(checkpoint)
    config = meta["model"]
    size, hidden = len(config["vocabulary"]), config["hidden"]
    weights = {k[len("model."):]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("model.")}
    if config["embedding"]:
        embedding = torch.nn.Embedding(size, config["embedding"])
        embedding.load_state_dict({"weight": weights["embedding.weight"]})
    else:
        embedding = torch.nn.Embedding.from_pretrained(torch.eye(size), freeze=True)
    cell = getattr(torch.nn, CELLS[config["model"]].__name__)   # PyTorch's class of the same name
    rnn = cell(config["embedding"] or size, hidden, num_layers=config["layers"], batch_first=True)
    rnn.load_state_dict({k[len("rnn."):]: v for k, v in weights.items() if k.startswith("rnn.")})
    head = torch.nn.Linear(hidden, size)
    head.load_state_dict({"weight": weights["head.weight"], "bias": weights["head.bias"]})
    for module in (embedding, rnn, head):
        module.eval()
    return embedding, rnn, head


def _onnx_gates(array: np.ndarray, cell: str) -> np.ndarray:
    """PyTorch's stacked gate blocks ([G*H, ...] or [G*H]) reordered to ONNX's order, same shape."""
    order = ONNX_GATE_ORDER[cell]
    blocks = array.reshape(len(order), -1, *array.shape[1:])
    return blocks[order].reshape(array.shape)


def onnx_model(checkpoint: str | Path) -> Any:
    """The checkpoint's model as an `onnx.ModelProto` (inputs, outputs and metadata: see the module's text).

    Dropout is absent (inference). Raises `CheckpointError` for a defective checkpoint, `MissingPackage` when
    the `onnx` package is not installed.
    """
    onnx = require("onnx", "onnx", "export to ONNX")
    TensorProto, helper, numpy_helper = onnx.TensorProto, onnx.helper, onnx.numpy_helper  # noqa: N806 (onnx's names)

    arrays, meta = load_checkpoint(checkpoint)
    config = meta["model"]
    cell, layers, hidden = config["model"], config["layers"], config["hidden"]
    vocabulary = config["vocabulary"]
    size = len(vocabulary)
    weights = {k[len("model."):]: np.asarray(v, dtype=np.float32) for k, v in arrays.items()
               if k.startswith("model.")}
    size_bytes = sum(w.nbytes for w in weights.values()) + (0 if config["embedding"] else size * size * 4)
    if size_bytes > ONNX_SIZE_LIMIT:
        raise ExportError(f"the model's weights take {size_bytes / 2**30:.1f} GiB as float32; an ONNX file holds "
                          f"at most 2 GiB (protobuf's limit): export it with --format torch instead")
    initializers: list[Any] = []
    nodes: list[Any] = []

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    # one-hot input is a lookup in the identity: row i of I is the one-hot vector of character i
    table = weights["embedding.weight"] if config["embedding"] else np.eye(size, dtype=np.float32)
    constant("embedding", table)
    # ONNX's recurrent operators take [sequence, batch, features]: onnxruntime refuses batch-first (layout 1)
    nodes.append(helper.make_node("Transpose", ["input_ids"], ["ids_time_major"], perm=[1, 0]))
    nodes.append(helper.make_node("Gather", ["embedding", "ids_time_major"], ["x_l0"], axis=0))
    lstm = cell == "lstm"
    finals: dict[str, list[str]] = {"h": [], "c": []}
    axis0 = constant("axis0", np.array([0], dtype=np.int64))
    axis1 = constant("axis1", np.array([1], dtype=np.int64))
    for layer in range(layers):
        start = constant(f"layer{layer}_start", np.array([layer], dtype=np.int64))
        end = constant(f"layer{layer}_end", np.array([layer + 1], dtype=np.int64))
        inputs = [f"x_l{layer}"]
        for name, source in (("W", "weight_ih"), ("R", "weight_hh")):
            inputs.append(constant(f"{name}_l{layer}", _onnx_gates(weights[f"rnn.{source}_l{layer}"], cell)[None]))
        bias = np.concatenate([_onnx_gates(weights[f"rnn.bias_ih_l{layer}"], cell),
                               _onnx_gates(weights[f"rnn.bias_hh_l{layer}"], cell)])   # [Wb, Rb]
        inputs += [constant(f"B_l{layer}", bias[None]), ""]   # "": no sequence_lens, every sequence is full
        for state in ("h", "c") if lstm else ("h",):
            nodes.append(helper.make_node("Slice", [f"{state}0", start, end, axis0], [f"{state}0_l{layer}"]))
            inputs.append(f"{state}0_l{layer}")
        outputs = [f"y_l{layer}", f"h_n_l{layer}"] + ([f"c_n_l{layer}"] if lstm else [])
        attributes: dict[str, Any] = {"hidden_size": hidden}
        if cell == "gru":
            attributes["linear_before_reset"] = 1   # PyTorch's n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        if cell == "rnn":
            attributes["activations"] = ["Tanh"]
        nodes.append(helper.make_node(ONNX_OPERATOR[cell], inputs, outputs, name=f"{cell}_l{layer}", **attributes))
        finals["h"].append(f"h_n_l{layer}")
        if lstm:
            finals["c"].append(f"c_n_l{layer}")
        # Y is [sequence, directions, batch, hidden]; one direction
        nodes.append(helper.make_node("Squeeze", [f"y_l{layer}", axis1], [f"x_l{layer + 1}"]))
    for state in ("h", "c") if lstm else ("h",):
        nodes.append(helper.make_node("Concat", finals[state], [f"{state}_n"], axis=0))
    constant("head_weight_t", weights["head.weight"].T)
    constant("head_bias", weights["head.bias"])
    nodes.append(helper.make_node("MatMul", [f"x_l{layers}", "head_weight_t"], ["head_product"]))
    nodes.append(helper.make_node("Add", ["head_product", "head_bias"], ["logits_time_major"]))
    nodes.append(helper.make_node("Transpose", ["logits_time_major"], ["logits"], perm=[1, 0, 2]))

    state_shape = [layers, "batch", hidden]
    graph_inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])]
    graph_outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", size])]
    for state in ("h", "c") if lstm else ("h",):
        graph_inputs.append(helper.make_tensor_value_info(f"{state}0", TensorProto.FLOAT, state_shape))
        graph_outputs.append(helper.make_tensor_value_info(f"{state}_n", TensorProto.FLOAT, state_shape))
    graph = helper.make_graph(nodes, f"chainrule_{cell}", graph_inputs, graph_outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="chainrule",
                              doc_string=f"character-level {cell} language model, {layers}x{hidden}")
    model.ir_version = IR_VERSION
    # JSON with ASCII escapes: any character (a lone surrogate from undecodable input too) survives protobuf
    helper.set_model_props(model, {"vocabulary": json.dumps(vocabulary), "cell": cell, "layers": str(layers),
                                   "hidden": str(hidden), "output": "logits"})
    onnx.checker.check_model(model)
    return model


def torch_file_contents(checkpoint: str | Path) -> dict[str, Any]:
    """What the torch format holds: the model's description and its weights as torch tensors under PyTorch's
    names (`state_dict`; "embedding.weight" is the identity for a one-hot model). Needs torch.

    Raises `CheckpointError` for a defective checkpoint, `MissingPackage` when torch is not installed.
    """
    torch = require("torch", "torch", "export to PyTorch")
    embedding, rnn, head = to_torch(checkpoint)
    _, meta = load_checkpoint(checkpoint)
    config = meta["model"]
    weights = {"embedding.weight": embedding.weight.detach().clone()}
    weights.update({f"rnn.{k}": v.detach().clone() for k, v in rnn.state_dict().items()})
    weights.update({f"head.{k}": v.detach().clone() for k, v in head.state_dict().items()})
    return {"format": "chainrule character model", "cell": CELLS[config["model"]].__name__,
            "layers": int(config["layers"]), "hidden": int(config["hidden"]), "vocabulary": config["vocabulary"],
            "output": "logits", "state_dict": {k: torch.as_tensor(v) for k, v in weights.items()}}


class ExportError(ValueError):
    """The export cannot be written where asked (an existing file without `force`, a missing or unwritable
    folder); the message says what to do."""


def default_path(checkpoint: str | Path, file_format: str) -> Path:
    """Where `export` writes without `out`: model.onnx / model.pt in the checkpoint's run folder."""
    return resolve_checkpoint(checkpoint).parent / f"model{SUFFIXES[file_format]}"


def checkpoint_used(checkpoint: str | Path) -> str:
    """Which checkpoint `export` reads, for its message: "RUN/best.json", "RUN/latest.json (no best.json)" for a
    run folder without a best checkpoint, or the JSON path given. Raises `CheckpointError` as `resolve_checkpoint`.

    >>> import tempfile; run = Path(tempfile.mkdtemp()); (run / "latest.json").touch()
    >>> checkpoint_used(run) == f"{run / 'latest.json'} (no best.json)"
    True
    """
    path = resolve_checkpoint(checkpoint)
    if Path(checkpoint).is_dir() and path.name == "latest.json":
        return f"{path} (no best.json)"
    return str(path)


def export(checkpoint: str | Path, file_format: str = "onnx", out: str | Path | None = None,
           force: bool = False) -> Path:
    """Write the checkpoint's model as `file_format` ("onnx" or "torch") to `out` (default: `default_path`).

    An existing `out` is replaced only with `force`; the file is written under a temporary name in the same
    folder and then moved into place, so a failed export leaves no partial file. It gets the mode a newly
    created file gets (0o666 less the umask). With `force`, an `out` that is a symbolic link is itself replaced
    by a regular file; the file the link pointed to is left untouched (as `mv`, not as writing through the
    link would). Returns the path written.
    Raises ValueError for an unknown format, `ExportError` for an existing file (without `force`), a folder as
    `out`, a missing or unwritable folder; `CheckpointError`; `MissingPackage` (onnx or torch not installed).
    """
    if file_format not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}; got {file_format!r}")
    path = Path(out) if out is not None else default_path(checkpoint, file_format)
    folder = path.parent
    if path.is_dir():
        example = path / f"model{SUFFIXES[file_format]}"
        raise ExportError(f"{path} is a folder; give the file to write, e.g. --out {example}")
    if os.path.lexists(path) and not force:
        raise ExportError(f"{path} already exists; pass --force to replace it, or choose another path with --out")
    if not folder.is_dir():
        missing = "is not a folder" if os.path.lexists(folder) else "does not exist"
        raise ExportError(f"cannot write {path}: {folder} {missing}; choose another path with --out")
    if file_format == "onnx":
        payload = onnx_model(checkpoint).SerializeToString()
    else:
        torch = require("torch", "torch", "export to PyTorch")
        contents = torch_file_contents(checkpoint)
    try:
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise ExportError(f"cannot write {path}: {error.strerror or error}; choose another path with --out") from None
    try:
        os.fchmod(descriptor, new_file_mode())  # the mode of a normally created file, not mkstemp's 0o600
        with os.fdopen(descriptor, "wb") as file:
            if file_format == "onnx":
                file.write(payload)
            else:
                torch.save(contents, file)
        if force:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)   # fails if `path` appeared meanwhile: never replaced without force
    except FileExistsError:
        raise ExportError(f"{path} already exists; pass --force to replace it, or choose another path with "
                          "--out") from None
    except OSError as error:
        raise ExportError(f"cannot write {path}: {error.strerror or error}; choose another path with --out") from None
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)
    return path
