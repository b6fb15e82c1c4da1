"""Replaying a call: the host work of a compiled layer done once per call signature.

A call's launches depend only on its signature: every tensor's shape, strides, dtype, device and
alignment (what Triton specializes on, and what decides the 2-element row loads), and which
optional arguments are given. The first call with a signature runs the planner (bind, plans,
schedules, buffers) and records what it did: the buffers it allocated, the kernels it launched
and their arguments, where the results are. Later calls with the same signature allocate the
same buffers and launch the same compiled kernels with the new tensors in place of the old:
on an H100 host the planner's Python cost ~130-260 us a call, more than a decode step's kernel.

On a GPU the launches go straight to the compiled kernel (``CompiledKernel.run``, what
``JITFunction.run`` does after its own cache lookup); Triton's interpreter gets the JIT call."""

from __future__ import annotations

from typing import Any

from triton import knobs
from triton.runtime.driver import driver

_SUM = object()  # a recorded step that is a torch sum, not a kernel launch
_CONVERT = object()  # a recorded step that is a torch dtype conversion (Recorder.convert)
ALIGN = 16  # bytes: Triton specializes pointer arguments on 16-byte alignment


def call_key(tensors: dict[str, Any]) -> tuple | None:
    """The signature of a call (None: not replayable, e.g. a non-tensor argument)."""
    import torch

    key = []
    for k, t in tensors.items():
        if t is None:
            key.append((k, None))
        elif isinstance(t, torch.Tensor):
            key.append((k, t.shape, t.stride(), t.dtype, t.device, t.data_ptr() % ALIGN, t.requires_grad))
        else:
            return None
    return tuple(key)


class Recorder:
    """What a planned call did: its allocations (in order) and launches."""

    def __init__(self) -> None:
        self.allocs: list[tuple[Any, tuple, Any, bool]] = []  # (tensor, shape, dtype, zeroed)
        self.launches: list[tuple[Any, Any, tuple, tuple, dict]] = []  # (fn, compiled, grid, args, kwargs)

    def alloc(self, shape, dtype, device, zero: bool = False):
        import torch

        t = (torch.zeros if zero else torch.empty)(tuple(shape), dtype=dtype, device=device)
        self.allocs.append((t, tuple(shape), dtype, zero))
        return t

    def launch(self, fn, grid: tuple, args: list, kwargs: dict):
        compiled = fn[grid](*args, **kwargs)
        if hasattr(compiled, "result"):  # compiled asynchronously
            compiled = compiled.result()
        self.launches.append((fn, compiled, grid, tuple(args), dict(kwargs)))
        return compiled

    def sum(self, slots, dims: tuple[int, ...]):
        """``slots`` summed over ``dims`` (torch's reduction: the same order every run); the
        deterministic mode's sums across programs."""
        out = slots.sum(dim=dims)
        self.launches.append((_SUM, None, dims, (slots, out), {}))
        return out

    def convert(self, src, dtype):
        """``src`` as a contiguous tensor of ``dtype`` (torch's copy; ``Run.row_input``)."""
        out = src.to(dtype).contiguous()
        self.launches.append((_CONVERT, None, dtype, (src, out), {}))
        return out

    def recipe(self, inputs: dict[str, Any], results: dict[str, Any], device) -> Recipe | None:
        """The recorded call with tensors as slots; None where an argument is a tensor that is
        neither an input nor a recorded allocation (then the call is planned every time)."""
        import torch

        slot = {id(t): ("in", k) for k, t in inputs.items() if t is not None}
        slot.update({id(a[0]): ("alloc", i) for i, a in enumerate(self.allocs)})
        launches = []
        for fn, compiled, grid, args, kwargs in self.launches:
            if fn is _SUM or fn is _CONVERT:  # (source, result): the result becomes a slot of its own
                src, out = args
                if id(src) not in slot:
                    return None
                slot[id(out)] = ("made", len(launches))
                launches.append((fn, None, grid, None, [(0, slot[id(src)])], {}))
                continue
            direct = hasattr(compiled, "packed_metadata") and hasattr(compiled, "run")
            if direct:  # every parameter in signature order, constexprs included (the launcher skips them)
                names = fn.arg_names
                extra = []
                for prm in fn.params[len(args):]:
                    if prm.name in kwargs:
                        extra.append(kwargs[prm.name])
                    elif prm.has_default:
                        extra.append(prm.default)
                    else:
                        return None
                full = list(args) + extra
                if len(full) != len(names):
                    return None
            else:
                full = list(args)
            holes = []
            for i, a in enumerate(full):
                if isinstance(a, torch.Tensor):
                    if id(a) not in slot:
                        return None
                    holes.append((i, slot[id(a)]))
            template = [None if isinstance(a, torch.Tensor) else a for a in full]
            launches.append((fn, compiled if direct else None, grid, template, holes, kwargs))
        out = {}
        for k, t in results.items():
            if t is None or id(t) not in slot:
                return None
            out[k] = slot[id(t)]
        return Recipe([(s, d, z) for _, s, d, z in self.allocs], launches, out, device)


class Recipe:
    """A recorded call, replayed with new tensors of the same signature."""

    def __init__(self, allocs, launches, results, device) -> None:
        self.allocs, self.launches, self.results, self.device = allocs, launches, results, device
        self.n_kernels = sum(fn is not _SUM and fn is not _CONVERT for fn, *_ in launches)  # generated launches

    def replay(self, inputs: dict[str, Any], stats: dict[str, int]) -> dict[str, Any]:
        import torch

        dev = self.device
        allocs = [(torch.zeros if z else torch.empty)(s, dtype=d, device=dev) for s, d, z in self.allocs]
        stream = None
        last = None
        made: dict[int, Any] = {}
        pick = {"in": inputs, "alloc": allocs, "made": made}
        for j, (fn, compiled, grid, template, holes, kwargs) in enumerate(self.launches):
            if fn is _SUM:  # grid holds the summed dims
                (_, (kind, where)), = holes
                made[j] = pick[kind][where].sum(dim=grid)
                continue
            if fn is _CONVERT:  # grid holds the dtype
                (_, (kind, where)), = holes
                made[j] = pick[kind][where].to(grid).contiguous()
                continue
            args = list(template)
            for i, (kind, where) in holes:
                args[i] = pick[kind][where]
            if compiled is None:  # the interpreter, or a launcher we cannot call directly
                last = fn[grid](*args, **kwargs)
                continue
            last = compiled
            if stream is None:
                stream = driver.active.get_current_stream(dev.index if dev.index is not None else torch.cuda.current_device())
            enter, leave = knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook
            meta = compiled.launch_metadata(grid, stream, *args) if enter is not None else None
            g = tuple(grid) + (1, 1)
            compiled.run(g[0], g[1], g[2], stream, compiled.function, compiled.packed_metadata, meta, enter, leave, *args)
        stats["launches"] += self.n_kernels
        stats["replays"] = stats.get("replays", 0) + 1
        return {k: pick[kind][w] for k, (kind, w) in self.results.items()}, last
