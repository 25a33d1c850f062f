"""A stand-in for a GPU on a machine without one: tensors that say they live on another device
(torch's `meta`) while a CPU tensor inside each computes the real values.

Under `StandInDevice()` an op that mixes a stand-in tensor with a CPU tensor raises, as CUDA does
(a CPU 0-dim scalar, a CPU index into a stand-in tensor and `copy_` across devices are allowed, as
there), and every read of a stand-in value on the host (`.item()`, `float()`, `.cpu()`, `.tolist()`,
an op that must read its input to size its output) is counted with the project line that made it.
A device bug added anywhere in the library then fails on the CPU: a model left on the host, a random
state loaded onto the device, a mask built on the host, or a loop that waits on the device every step.

Code under test sees `Runtime(torch.device("meta"))`: not the CPU, so it takes its GPU branches.
"""

from __future__ import annotations

import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

import minbert

DEVICE = torch.device("meta")
PROJECT = str(Path(minbert.__file__).parent)
aten = torch.ops.aten

# Ops that read a device value on the host to size their output or to check it (on CUDA each waits
# for the queued kernels): what a training step between two NaN checks must not do.
READS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
         aten.unique_consecutive.default, aten._unique2.default, aten.repeat_interleave.Tensor,
         aten.multinomial.default, aten.equal.default, aten.is_nonzero.default,
         aten._assert_async.default, aten._assert_async.msg}
# Ops that move values between devices, and indexing, whose indices (its second argument) may stay on the
# host as CUDA allows; everything else must have all its tensors on one device, bar CPU 0-dim scalars.
CROSS_DEVICE = {aten.copy_.default, aten._to_copy.default, aten.set_.source_Tensor}
INDEXING = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default}


class DeviceMismatch(RuntimeError):
    """An op mixed a stand-in tensor with a CPU one, which CUDA refuses."""


class StandIn(torch.Tensor):
    """A tensor on the stand-in device; `inner` holds its values on the CPU."""

    inner: torch.Tensor

    @staticmethod
    def __new__(cls, inner: torch.Tensor) -> StandIn:
        made = torch.Tensor._make_wrapper_subclass(cls, inner.size(), strides=inner.stride(),
                                                   storage_offset=inner.storage_offset(), dtype=inner.dtype,
                                                   layout=inner.layout, device=DEVICE,
                                                   requires_grad=inner.requires_grad)
        made.inner = inner
        return made

    def __repr__(self) -> str:  # the values, read without counting (a debugger's or a test's look)
        return f"StandIn({self.inner!r})"

    def tolist(self):  # a host read; torch refuses .tolist() of a subclass, CUDA tensors allow it
        _count_read()
        return self.inner.tolist()

    def numpy(self, *, force: bool = False):
        raise TypeError("can't convert meta device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
                        "to host memory first.")

    def __reduce_ex__(self, protocol):  # torch.save of a device tensor: a copy to the host, saved as such
        _count_read()
        return self.inner.detach().__reduce_ex__(protocol)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # only reached outside the mode
        with StandInDevice(strict=False):
            return func(*args, **(kwargs or {}))


def _count_read() -> None:
    mode = torch.utils._python_dispatch._get_current_dispatch_mode()
    if isinstance(mode, StandInDevice):
        mode.reads[_project_line()] += 1


def _project_line() -> str:
    """The innermost line of the library (else of the caller) that made the current op."""
    frames = traceback.extract_stack()[:-3]
    for frame in reversed(frames):
        if frame.filename.startswith(PROJECT):
            return f"{Path(frame.filename).name}:{frame.lineno} {frame.line}"
    for frame in reversed(frames):
        if "/torch/" not in frame.filename and not frame.filename.endswith("standin_device.py"):
            return f"{Path(frame.filename).name}:{frame.lineno} {frame.line}"
    return "?"


@dataclass
class StandInDevice(TorchDispatchMode):
    """The mode: ops on stand-in tensors compute on their CPU values and give stand-in tensors back.
    `reads` counts host reads by the project line that made them; `strict` raises on mixed devices."""

    strict: bool = True
    reads: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        super().__init__()

    def read_count(self) -> int:
        return sum(self.reads.values())

    def __enter__(self):
        # torch.tensor(data, device=...) builds its tensor below the dispatcher; made on the host and
        # moved, it reaches the mode as every other copy does
        self._made = {name: getattr(torch, name) for name in _FROM_DATA}
        for name, make in self._made.items():
            setattr(torch, name, _made_on_host(make))
        # transformers' from_pretrained builds its skeleton on torch's own meta device and fills it on the
        # host: it runs outside the stand-in, and the caller's .to(device) moves what it made
        from transformers import PreTrainedModel
        self._loader = PreTrainedModel.__dict__["from_pretrained"]
        PreTrainedModel.from_pretrained = classmethod(_outside_modes(self._loader.__func__, self._made))
        return super().__enter__()

    def __exit__(self, *exc):
        from transformers import PreTrainedModel
        for name, make in self._made.items():
            setattr(torch, name, make)
        PreTrainedModel.from_pretrained = self._loader
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat = [a for a in _flatten((args, kwargs)) if isinstance(a, torch.Tensor)]
        on_device = any(isinstance(t, StandIn) for t in flat)
        to = kwargs.get("device")
        to = torch.device(to) if to is not None else None
        if any(t.device.type == "meta" and not isinstance(t, StandIn) for t in flat):
            raise DeviceMismatch(f"{func}: a meta tensor without values (loaded with map_location=device?) "
                                 f"at {_project_line()}")
        hosts = _host_operands(func, args, flat) if self.strict and on_device else []
        if hosts:
            shapes = [tuple(t.shape) for t in hosts]
            raise DeviceMismatch(f"Expected all tensors to be on the same device, but found at least two "
                                 f"devices, meta and cpu! ({func}, host shapes {shapes}) "
                                 f"at {_project_line()}")
        if on_device and func in READS:
            self.reads[f"{_project_line()} [{func.__name__}]"] += 1
        if func is aten._to_copy.default and on_device and to is not None and to.type == "cpu":
            self.reads[_project_line()] += 1
        if func is aten.copy_.default and not isinstance(args[0], StandIn) and isinstance(args[1], StandIn):
            self.reads[_project_line()] += 1  # into a host tensor
        inputs_args = tree_map(_unwrap, args)
        inputs_kwargs = tree_map(_unwrap, kwargs)
        goes_to_device = to is not None and to.type == "meta"
        if goes_to_device:
            inputs_kwargs["device"] = torch.device("cpu")
            if "pin_memory" in inputs_kwargs:
                inputs_kwargs["pin_memory"] = False
        out = func(*inputs_args, **inputs_kwargs)
        if to is not None and to.type == "cpu":
            return out
        if not (on_device or goes_to_device):
            return out
        return tree_map(lambda o, f=func, a=args: _wrap_like(o, f, a), out)


_FROM_DATA = ("tensor", "as_tensor", "asarray")


def _outside_modes(load, originals: dict):
    """`load` with no dispatch mode and torch's own factories (transformers hooks them as it loads)."""
    def loaded(*args, **kwargs):
        patched = {name: getattr(torch, name) for name in originals}
        for name, make in originals.items():
            setattr(torch, name, make)
        try:
            with torch.utils._python_dispatch._disable_current_modes():
                return load(*args, **kwargs)
        finally:
            for name, make in patched.items():
                setattr(torch, name, make)
    return loaded


def _made_on_host(make):
    def made(data, *args, device=None, **kwargs):
        if device is None or torch.device(device).type != "meta":
            return make(data, *args, device=device, **kwargs)
        return make(data, *args, **kwargs).to(DEVICE)
    return made


def _host_operands(func, args, flat: list[torch.Tensor]) -> list[torch.Tensor]:
    """The host tensors (bar 0-dim ones) that an op mixes with stand-in ones, as CUDA refuses them."""
    if func in CROSS_DEVICE:
        return []
    if func in INDEXING:  # host indices are fine; a device index into a host tensor is not
        indices = [t for t in _flatten(args[1]) if isinstance(t, torch.Tensor)]
        if any(isinstance(t, StandIn) for t in indices) and not isinstance(args[0], StandIn):
            return [args[0]]
        flat = [t for t in _flatten((args[0], args[2:])) if isinstance(t, torch.Tensor)]
    if not any(isinstance(t, StandIn) for t in flat):
        return []
    return [t for t in flat if not isinstance(t, StandIn) and t.dim() > 0]


def _flatten(tree):
    return tree_flatten(tree)[0]


def _unwrap(value):
    return value.inner if isinstance(value, StandIn) else value


def _wrap_like(out, func, args):
    """An op's output as a stand-in tensor; an in-place op gives back the stand-in it wrote to."""
    if not isinstance(out, torch.Tensor):
        return out
    for arg in _flatten(args):
        if isinstance(arg, StandIn) and arg.inner is out:
            return arg
        if arg is out:  # written in place on the host (a copy_ from the device)
            return arg
    return StandIn(out)
