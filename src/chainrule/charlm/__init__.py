"""The application: a character-level language model and the `chainrule` command.

- `config`: the table of cells (the one place that lists lstm, gru, rnn); `text`: reading a corpus, the
  vocabulary, the batch streams; `model`: `Architecture` (a model's shape, checked once), `ModelConfig` (it
  and a vocabulary), `CharModel`, sampling, beam search, evaluation;
  `sampling`: the temperature, top-k and top-p filters, the draw, prime files;
- `checkpoint`: a run's arrays and metadata on disk (`pack_run`/`unpack_run` name the arrays), checked
  against `checkpoint_schema` (pydantic) before anything is built; `training`: the training loop and
  `TrainConfig` (an `Architecture` and the options of training); `resume`: continuing a run from a
  checkpoint; `run_folder`: one training per run folder (its lock), and what the folder holds, in words;
- `cli`: the command line (`chainrule train/sample/eval/info/diagnose/export/demo`), `diagnose`, `demo`, and
  `export` (a checkpoint as ONNX or PyTorch files); `tensorboard`; `distributed` (MPI); `plots` for the pictures.

It may use every other part of chainrule; no other part imports it (`import chainrule` does not load it).
What `chainrule.charlm` held when it was one module is still importable from here.
"""
from .model import (CELLS, Architecture, CharModel, Evaluation, ModelConfig, detach_state, evaluate, generate,
                    load_model, state_arrays, state_from_arrays)

__all__ = ["CELLS", "Architecture", "CharModel", "Evaluation", "ModelConfig", "detach_state", "evaluate", "generate",
           "load_model", "state_arrays", "state_from_arrays"]
from .model import beam_search, generate_batch  # noqa: E402
from .sampling import filter_logits, read_prime, top_p_mask  # noqa: E402

__all__ += ["beam_search", "generate_batch", "filter_logits", "read_prime", "top_p_mask"]
