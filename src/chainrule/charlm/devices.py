"""`--device cpu|cuda|cuda:N` for train, sample and eval: where the model computes.

The device is not part of a run's configuration: checkpoints hold host arrays (`Module.state_dict` and
`Optimizer.state_dict` copy from the GPU), so a run trained on a GPU samples, evaluates and resumes on a CPU,
and back. Asking for CUDA where CuPy or a GPU is missing is a usage error saying which, and what to install.
"""
from __future__ import annotations

import argparse
from typing import Any

from .._kernels.device import Device, cuda_backend, parse_device
from ..nn import Module


def device_argument(spec: str) -> Device:
    """argparse type of --device: a Device that is there to use (ArgumentTypeError otherwise).

    >>> device_argument("cpu")
    device(type='cpu')
    """
    try:
        device = parse_device(spec)
        if device.type == "cuda":
            cuda_backend(device.index)
    except (TypeError, ValueError, RuntimeError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return device


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """Add --device to a subcommand's parser."""
    parser.add_argument("--device", type=device_argument, default=Device("cpu"), metavar="cpu|cuda|cuda:N",
                        help="where to compute (default cpu); cuda needs the GPU extra: pip install 'chainrule[gpu]'")


def use_device(model: Module, args: Any) -> Module:
    """Move `model` (in place, before an optimizer loads state for it) to the device --device named."""
    return model.to(getattr(args, "device", None) or Device("cpu"))
