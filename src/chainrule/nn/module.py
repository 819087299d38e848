"""`Module` and `Parameter`: containers of trainable tensors, as in PyTorch."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .._kernels.device import Device, cuda_backend, device_of, parse_device, to_device, to_host
from ..autograd.function import scope
from ..autograd.tensor import Tensor, resolve_dtype


class Parameter(Tensor):
    """A tensor that a `Module` registers as trainable; it requires grad by default.

    >>> from chainrule import nn
    >>> nn.Parameter([1.0, 2.0]).requires_grad
    True
    """

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def _host_copy(array: Any) -> np.ndarray:
    """A NumPy copy of `array` (from a GPU: the transfer is the copy)."""
    return array.copy() if type(array) is np.ndarray else to_host(array)


class Module:
    """Base class of every layer: assign Parameters and Modules as attributes and they are registered.

    >>> import chainrule as cr
    >>> from chainrule import nn
    >>> class Affine(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.scale = nn.Parameter(cr.ones(3))
    ...     def forward(self, x):
    ...         return x * self.scale
    >>> [name for name, _ in Affine().named_parameters()]
    ['scale']
    """

    training: bool
    _parameters: dict[str, Parameter]
    _modules: dict[str, Module]

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        registries: tuple[Any, Any] = self.__dict__.get("_parameters"), self.__dict__.get("_modules")
        if registries[0] is None and isinstance(value, (Parameter, Module)):
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning "
                                 f"parameters or submodules (assigning '{name}')")
        if registries[0] is not None:
            registries[0].pop(name, None)
            registries[1].pop(name, None)
            if isinstance(value, Parameter):
                registries[0][name] = value
            elif isinstance(value, Module):
                registries[1][name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with scope(type(self).__name__):  # names the graph nodes this module creates (see chainrule.insight.graph)
            return self.forward(*args, **kwargs)

    # -- traversal ------------------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every submodule, depth first, each once."""
        seen: set[int] = set()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child}" if name else child, sub) for child, sub in module._modules.items()]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(name, parameter) pairs with dotted names, each parameter once.

        >>> from chainrule import nn
        >>> [n for n, _ in nn.Sequential(nn.Linear(2, 3), nn.Tanh()).named_parameters()]
        ['0.weight', '0.bias']
        """
        seen: set[int] = set()
        modules = self.named_modules(prefix) if recurse else iter([(prefix, self)])
        for module_name, module in modules:
            for name, parameter in module._parameters.items():
                if id(parameter) not in seen:
                    seen.add(id(parameter))
                    yield (f"{module_name}.{name}" if module_name else name), parameter

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, parameter in self.named_parameters(recurse=recurse):
            yield parameter

    def num_parameters(self) -> int:
        """How many numbers the parameters hold.

        >>> from chainrule import nn
        >>> nn.Linear(3, 2).num_parameters()
        8
        """
        return int(sum(p.data.size for p in self.parameters()))

    # -- modes and gradients ----------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (True) or evaluation mode (False) on this module and every submodule.

        Raises ValueError when `mode` is not a bool (a string such as "False" would switch training on)."""
        if not isinstance(mode, (bool, np.bool_)):
            raise ValueError(f"training mode is expected to be boolean, got {type(mode).__name__} {mode!r}")
        mode = bool(mode)
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for parameter in self.parameters():
            if set_to_none or parameter.grad is None:
                parameter.grad = None
            else:
                parameter.grad[...] = 0

    def to(self, device_or_dtype: Any = None, dtype: Any = None, *, device: Any = None) -> Module:
        """Move every parameter to a device ("cpu", "cuda", "cuda:N") and/or convert every floating parameter
        to `dtype`, in place (the Parameter objects stay the same, so an optimizer built on them follows);
        returns self. Gradients are dropped when the dtype changes, moved with the parameter otherwise.

        Raises TypeError for a dtype that is not floating (parameters must stay differentiable), ValueError
        for an unknown device, RuntimeError when CUDA is asked for without CuPy or a GPU.

        >>> from chainrule import nn
        >>> nn.Linear(2, 2).to("float64").weight.dtype
        dtype('float64')
        >>> str(nn.Linear(2, 2).to("cpu").weight.device)
        'cpu'
        """
        spec = device_or_dtype
        names_device = isinstance(spec, str) and spec.split(":")[0].strip().lower() in ("cpu", "cuda")
        if isinstance(device_or_dtype, Device) or names_device:
            device = device_or_dtype
        elif device_or_dtype is not None:
            dtype = device_or_dtype
        if device is not None:
            target = parse_device(device)
            if target.type == "cuda":
                cuda_backend(target.index)  # the clear error when CuPy or the GPU is missing
            for parameter in self.parameters():
                if device_of(parameter.data) != target:
                    parameter.data = to_device(parameter.data, target)
                    parameter.grad = None if parameter.grad is None else to_device(parameter.grad, target)
        if dtype is None:
            return self
        wanted = resolve_dtype(dtype)
        if wanted is None or wanted.kind != "f":
            raise TypeError(f"Module.to only accepts floating dtypes (float16, float32, float64), got {dtype!r}")
        for parameter in self.parameters():
            if parameter.data.dtype != wanted:
                parameter.data = parameter.data.astype(wanted)
                parameter.grad = None
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    # -- state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter's values by dotted name (copies), as `torch.nn.Module.state_dict`.

        >>> from chainrule import nn
        >>> sorted(nn.Linear(2, 3).state_dict())
        ['bias', 'weight']
        """
        # host copies whatever the device, so a checkpoint is device-neutral (PyTorch keeps the device)
        return {name: _host_copy(parameter.data) for name, parameter in self.named_parameters()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> tuple[list[str], list[str]]:
        """Copy values into the parameters; returns (missing keys, unexpected keys).

        Values may be NumPy arrays, chainrule Tensors or anything `np.asarray` accepts (PyTorch tensors).
        With `strict=True`, missing or unexpected keys raise; a wrong shape always raises.

        >>> from chainrule import nn
        >>> a, b = nn.Linear(2, 3), nn.Linear(2, 3)
        >>> _ = b.load_state_dict(a.state_dict())
        >>> bool((a.weight.data == b.weight.data).all())
        True
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict expects a mapping of names to arrays, got {type(state_dict).__name__}")
        own = dict(self.named_parameters())
        missing = [name for name in own if name not in state_dict]
        unexpected = [name for name in state_dict if name not in own]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        values = {}
        for name, parameter in own.items():
            if name not in state_dict:
                continue
            raw = state_dict[name]
            value = raw.data if isinstance(raw, Tensor) else np.asarray(raw)
            if value.shape != parameter.data.shape:
                problems.append(f"'{name}' has shape {tuple(value.shape)} in the state dict, but the "
                                f"parameter has shape {parameter.data.shape}")
            values[name] = value
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))
        for name, value in values.items():
            target = own[name].data
            if type(target) is np.ndarray:
                np.copyto(target, to_host(value), casting="same_kind" if value.dtype.kind == "f" else "unsafe")
            else:  # on a GPU: the values cast on the host, then copied over
                target[...] = to_device(to_host(value).astype(target.dtype), device_of(target))
        return missing, unexpected

    # -- display ----------------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, module in self._modules.items():
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"
