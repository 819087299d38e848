"""Optional packages that only some commands need (onnx for `export --format onnx`, tensorboardX for
`train --tensorboard`): imported on demand, with one clear error naming the extra that installs them."""
from __future__ import annotations

import importlib
from types import ModuleType


class MissingPackage(ImportError):
    """An optional package a command needs is not installed; the message says which extra installs it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """`module` imported, or `MissingPackage` naming `purpose` and the install command of `extra`.

    >>> require("json", "none", "reading JSON").__name__
    'json'
    >>> require("no_such_module_xyz", "onnx", "export to ONNX")   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    chainrule.charlm.extras.MissingPackage: export to ONNX needs ... install it with: pip install 'chainrule[onnx]'
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingPackage(f"{purpose} needs the Python package {module.split('.')[0]}, which is not installed; "
                             f"install it with: pip install 'chainrule[{extra}]'") from None
