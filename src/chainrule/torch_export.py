"""Loading a checkpoint into PyTorch, at its former place: `chainrule.charlm.export` holds it now."""
from .charlm.export import to_torch

__all__ = ["to_torch"]
