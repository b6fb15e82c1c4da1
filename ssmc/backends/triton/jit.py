"""``ssmc.compile(layer)``: the JIT. Runs the passes once, lowers each fused group to kernels,
generates and caches Triton source, and launches the kernels on torch tensors.

Specialization: the generated source depends only on the layer and the strategy; dtypes and
block sizes are Triton's specialization (pointer dtypes, constexpr blocks), and sizes that
vary between calls (lengths, batch, chunk count) are runtime arguments."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Any

from ssmc.backends.triton import cache
from ssmc.backends.triton.binding import KERNEL_DTYPES, bind_packed, common_device, pairable
from ssmc.backends.triton.codegen import GENERATOR_VERSION, generate
from ssmc.backends.triton.kernel_ir import Kernel, Load, WindowLoad
from ssmc.backends.triton.lower import chunkable, complex_parts, lower_group
from ssmc.backends.triton.lower_matrix import (
    MatrixForm,
    lower_matrix,
    matrix_form,
    share_matrix_states,
)
from ssmc.backends.triton.replay import call_key
from ssmc.backends.triton.run import Run, interpreting
from ssmc.backends.triton.schedule import (
    MATRIX_MIN_STEPS,
    REGISTER_HELD,
    REGISTER_MIN_STEPS,
    default_strategy,
)
from ssmc.dsl.layer import Layer
from ssmc.errors import ArgumentError, LoweringError
from ssmc.ir.node import Group
from ssmc.ir.printer import graph_hash
from ssmc.passes import DEFAULT_PIPELINE, pipeline_name, run_passes

STRATEGIES = ("sequential", "tiled", "chunked", "matrix", "bidir")


def versions() -> dict[str, str]:
    import triton

    import ssmc

    return {"ssmc": f"{ssmc.__version__}/g{GENERATOR_VERSION}", "triton": triton.__version__}


@dataclass(frozen=True)
class GroupPlan:
    """How one fused group runs: one kernel, or (chunked) states, combine, full."""

    kernels: tuple[Kernel, ...]
    chunked: bool
    group: Group
    matrix: bool = False  # the matrix form's states and outputs kernels (lower_matrix)
    shares: str | None = None  # matrix: the group whose chunk states this one's outputs kernel reads
    checkpointed: bool = False  # bidir: the first kernel is the recomputed forward scan's checkpoint pass


class CompiledLayer:
    """A layer compiled to Triton kernels. Call it with torch tensors (batch-first, any strides);
    it returns a dict of output tensors, dims in the layer's canonical order. Outputs are in the
    dtype of the layer's first input argument, final states in float32."""

    defines_op = True  # a torch.library op of its own (a backward is called through its forward's)

    def __init__(
        self,
        layer: Layer,
        strategy: str | None = None,
        block_t: int | None = None,
        block: int | None = None,
        num_warps: int | None = None,
        num_stages: int | None = None,
        unroll: int = 4,
        chunks: int | None = None,
        verify: bool = False,
        passes: tuple | None = None,
        held: str | None = None,
        deterministic: bool = False,
        exp2_fma: tuple[int, int] = (0, 0),
    ) -> None:
        if strategy is not None and strategy not in STRATEGIES:
            raise LoweringError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
        if held not in (None, "registers", "tensor"):
            raise LoweringError(f"held={held!r}: choose 'registers', 'tensor' or None (by size)")
        # how the sequential strategy holds the dims held whole: one variable per element
        # ("registers") or a block dim of the tensors ("tensor"); None: registers up to
        # schedule.REGISTER_HELD elements per channel
        self.held = held
        # bitwise-identical results run to run: sums across programs (the backward's gradients
        # of what is shared by batch rows or channels) go to one slot per program and are summed
        # in a fixed order instead of added atomically; also on under
        # torch.use_deterministic_algorithms(True)
        self.deterministic = bool(deterministic)
        # (k, m): every k-th per-step exp2 of chunk-states kernels on the FMA pipe, every m-th of
        # the others' (Kernel.exp2_fma; a count other than 1 applies to register-held values)
        if len(tuple(exp2_fma)) != 2 or any(not isinstance(k, int) or k < 0 for k in exp2_fma):
            raise LoweringError(f"exp2_fma={exp2_fma!r}: two counts >= 0 (every k-th exp2 of chunk-states "
                                "kernels, of the others; 1 all, 0 none)")
        self.exp2_fma = tuple(exp2_fma)
        self._det_kernels: dict[str, Kernel] = {}
        self.layer = layer
        self.passes = tuple(passes) if passes is not None else DEFAULT_PIPELINE
        self.graph = run_passes(layer.graph, self.passes, verify_each=verify)
        self.strategy = strategy
        self.unroll = unroll
        self.chunks = chunks
        self.options = {"block_t": block_t, "block_tiled": block, "num_warps": num_warps, "num_stages": num_stages}
        # launches; sources: kernels generated (or read from the disk cache) in this process;
        # disk_hits / disk_writes: the disk cache (a new length or batch adds none: see
        # tests/test_recompile.py)
        self.stats: dict[str, int] = {"launches": 0, "sources": 0}
        self._plans: dict[str, list[GroupPlan]] = {}
        self._held_plans: dict[tuple, GroupPlan] = {}
        self._rows: dict[tuple, frozenset] = {}
        self._fns: dict[tuple, Any] = {}
        self._recipes: dict[tuple, Any] = {}  # call signature -> its recorded launches (replay.py)
        self.last_launched: Any = None
        # run.Run.fit: each matrix kernel's schedule as the GPU took it, per asked schedule
        self.fitted: dict[tuple, Any] = {}
        # run.Run.main_registers: a backward main kernel's registers a thread as compiled
        self.registers: dict[tuple, int | None] = {}
        # outputs that are final states: stored in float32 whatever the inputs' dtype
        self.finals = {k for k, v in self.graph.outputs if v.op in ("scan_final", "conv_final")}
        self._backward: Any = None
        # the torch.library op that autograd and torch.compile call (defined now: not traceable)
        self.op: Any = None
        if self.defines_op:
            from ssmc.export.library import forward_op

            self.op = forward_op(self)

    def __repr__(self) -> str:
        return f"<ssmc compiled {self.layer.name}: {len(self.graph.groups or ())} fused group(s)>"

    # --- generation ------------------------------------------------------------------------

    def plans(self, strategy: str, sizes: dict[str, int] | None = None, pairable: frozenset = frozenset()) -> list[GroupPlan]:
        """Each fused group's kernels. With ``sizes``, the sequential strategy's kernels hold
        their whole dims as registers where that is chosen (``held``), loading the rows of the
        arguments in ``pairable`` (see ``_pairable``) two at a time."""
        if strategy not in self._plans:
            assert self.graph.groups is not None
            out = []
            for g in self.graph.groups:
                form = matrix_form(self.graph, g) if strategy == "matrix" else None
                if isinstance(form, MatrixForm):
                    out.append(GroupPlan(lower_matrix(self.graph, g, form), False, g, matrix=True))
                elif strategy in ("chunked", "matrix") and chunkable(self.graph, g) is None:
                    recurrent = any(n.op in ("scan", "scan_final") for n in g.nodes)
                    ks = tuple(
                        lower_group(self.graph, g, "chunked", self.unroll, role)
                        for role in (("states", "full") if recurrent else ("full",))
                    )
                    out.append(GroupPlan(ks, True, g))
                else:
                    s = "sequential" if strategy in ("chunked", "matrix") else strategy
                    if s == "tiled" and complex_parts(g.nodes):
                        # tl.associative_scan over complex maps is not built: the time loop
                        g = replace(g, notes=g.notes + ("a complex scan: the sequential loop (tiled is not built for it)",))
                        s = "sequential"
                    out.append(GroupPlan((lower_group(self.graph, g, s, self.unroll),), False, g))
            if strategy == "matrix":
                out = share_matrix_states(out, self.matrix_exact, self.dl_from_sums)
            if strategy == "matrix" and not any(p.matrix for p in out):
                why = "; ".join(f"{g.name}: {matrix_form(self.graph, g)}" for g in self.graph.groups)
                raise LoweringError(f"{self.layer.name}: no kernel has the matrix form ({why})")
            self._plans[strategy] = out
        plans = self._plans[strategy]
        if sizes is None:
            # complex values have one form, parts held as registers: where the layer fixes
            # every whole dim's size (the parts' 2), it needs no call's sizes
            fixed = self.layer.fixed_sizes
            return [self.held_plan(p, fixed, pairable) if p.kernels[-1].complex_dims and set(p.kernels[-1].full_dims) <= set(fixed)
                    else p for p in plans]
        return [self.held_plan(p, sizes, pairable) for p in plans]

    @functools.cached_property
    def has_matrix_form(self) -> bool:
        """Whether some fused group has the matrix form (lower_matrix)."""
        return any(isinstance(matrix_form(self.graph, g), MatrixForm) for g in self.graph.groups or ())

    # a matrix scan's chunk states, where its kernels multiply in 16 bits: stored in that dtype
    # (else in the outputs' dtype); a backward's part (float32 outputs) may say so
    states_in_products_dtype = False
    # results of a matrix scan's outputs kernel stored in its products' dtype where they are
    # 16-bit (else in the outputs' dtype): a backward's part names those only its rest reads
    results_in_products_dtype: frozenset[str] = frozenset()
    # a backward's decay gradient with two of its sums per step from the dq and dk kernels
    # (lower_matrix.with_sides); set before the first call (plans are kept)
    dl_from_sums = False

    def matrix_exact(self, group: Any, shape: tuple[int, int] | None = None) -> bool | None:
        """Whether the matrix scan of ``group`` needs float32-accurate products whatever the
        inputs' dtype: True for all its kernels, False for none, None (a layer's own scan) for
        its states kernel alone (the state and final state are float32 results). ``shape``: at a
        call, the sizes of its result's own dim and of the state's other dim."""
        return None

    def default_strategy(self, on_gpu: bool, steps: int) -> str:
        """The matrix form where a group has it and the call is long enough; else chunked."""
        if self.has_matrix_form and steps >= MATRIX_MIN_STEPS:
            return "matrix"
        return default_strategy(on_gpu)

    def held_dims(self, k: Kernel, sizes: dict[str, int], any_length: bool = False) -> dict[str, int] | None:
        """The whole dims of ``k`` and their sizes if they are to be held as registers at these
        sizes (None: not). ``any_length``: whatever the sequence's length (else the tensor form
        below REGISTER_MIN_STEPS steps)."""
        if k.strategy != "sequential" or not k.full_dims or k.held:
            return None
        held = {d: sizes[d] for d in k.full_dims}
        parts = k.complex_dims
        if parts:  # complex values: their parts' dim (size 2) is held whatever else is asked
            if any(held.get(d) != 2 for d in parts):
                raise LoweringError(f"{self.layer.name}: complex parts' dims {sorted(parts)} have sizes "
                                    f"{[held.get(d) for d in sorted(parts)]}; 2 expected")
            if any(isinstance(s, WindowLoad) for s in k.pre + k.loop) or not parts <= set(held):
                raise LoweringError(f"{self.layer.name}: {k.name} holds complex values (parts along "
                                    f"{sorted(parts)}) beside a conv or with the parts' dim split: not lowered yet")
            return held
        if self.held == "tensor":
            return None
        if any(isinstance(s, WindowLoad) for s in k.pre + k.loop):  # a conv: not in print_held yet
            return None
        if self.held is None and math.prod(held.values()) > REGISTER_HELD:
            return None
        if self.held is None and not any_length and k.time_dim is not None and sizes.get(k.time_dim, 0) < REGISTER_MIN_STEPS:
            return None
        return held

    def row_pairs(self, k: Kernel, held: dict[str, int], pairable: frozenset) -> tuple[str, ...]:
        """The arguments whose rows ``k`` reads two elements per load (see ``Kernel.pairs``)."""
        rows_key = (k.name, k.role, tuple(held.items()))
        if rows_key not in self._rows:  # once per kernel and sizes, not per call
            rows = set()  # (tensor, its one held dim): rows of an argument read each step
            for s in k.loop:
                if isinstance(s, Load) and k.time_dim in s.dims and k.tiled_dim not in s.dims:
                    hd = [d for d in s.dims if d in held]
                    if len(hd) == 1 and held[hd[0]] % 2 == 0:
                        rows.add((s.tensor, hd[0]))
            self._rows[rows_key] = frozenset(rows)
        return tuple(sorted(t for t, _ in self._rows[rows_key] & pairable))

    def held_plan(self, plan: GroupPlan, sizes: dict[str, int], pairable: frozenset) -> GroupPlan:
        """``plan`` with its whole dims held as registers, if chosen at these sizes."""
        k = plan.kernels[-1]
        held = self.held_dims(k, sizes)
        if held is None:
            return plan
        pairs = self.row_pairs(k, held, pairable)
        key = (id(plan), tuple(held.items()), pairs)
        if key not in self._held_plans:
            roles = tuple(k.role for k in plan.kernels)
            strategy = "chunked" if plan.chunked else "sequential"
            ks = tuple(lower_group(self.graph, plan.group, strategy, self.unroll, r, held=held, pairs=pairs) for r in roles)
            ks = tuple(replace(k, exp2_fma=self.exp2_fma[k.role != "states"]) for k in ks)
            self._held_plans[key] = GroupPlan(ks, plan.chunked, plan.group)
        return self._held_plans[key]

    def kernels(self, strategy: str, sizes: dict[str, int] | None = None, pairable: frozenset = frozenset()) -> list[Kernel]:
        return [k for p in self.plans(strategy, sizes, pairable) for k in p.kernels]

    def sources(self, strategy: str = "sequential", sizes: dict[str, int] | None = None, pairable: frozenset = frozenset()) -> list[str]:
        """The generated Triton source of each kernel (what ``ssmc show --stage kernel`` prints);
        with ``sizes``, the form chosen at those sizes (dims held as registers)."""
        if strategy == "bidir" and self.defines_op:
            return self.bidir_forward().sources("bidir", sizes, pairable)
        h, p, v = graph_hash(self.graph), pipeline_name(self.passes), versions()
        return [generate(k, h, p, v) for k in self.kernels(strategy, sizes, pairable)]

    def _fn(self, kernel: Kernel) -> Any:
        key = (kernel.name, kernel.strategy, kernel.held, kernel.pairs)
        if key not in self._fns:
            h, p, v = graph_hash(self.graph), pipeline_name(self.passes), versions()
            module = cache.load_source(generate(kernel, h, p, v), self.stats)
            self.stats["sources"] += 1
            self._fns[key] = getattr(module, kernel.name)
        return self._fns[key]

    # --- calling ---------------------------------------------------------------------------

    def out_dtype(self, first_input_dtype: Any) -> Any:
        return first_input_dtype

    def __call__(self, *args: Any, cu_seqlens: Any = None, outputs: Any = None, **kwargs: Any) -> dict[str, Any]:
        """Run the kernels; where an argument requires grad (and grad mode is on), through
        autograd: the backward runs the generated backward kernels. ``cu_seqlens``, ``outputs``:
        see ``raw_call``."""
        import torch

        values = self.layer.collect(args, kwargs)
        asked = self.asked_outputs(outputs)
        grad = torch.is_grad_enabled() and any(isinstance(v, torch.Tensor) and v.requires_grad for v in values.values())
        if grad or torch.compiler.is_compiling():
            # as a torch.library op: autograd runs the backward kernels; torch.compile sees one op
            from ssmc.export.library import call_op

            return call_op(self, values, cu_seqlens, asked)
        return self.raw_call(cu_seqlens=cu_seqlens, outputs=asked, **values)

    def asked_outputs(self, outputs: Any) -> tuple[str, ...] | None:
        """``outputs`` (names of the layer's outputs; None: all) checked, as a tuple."""
        if outputs is None:
            return None
        names = self.output_names()
        asked = (outputs,) if isinstance(outputs, str) else tuple(outputs)
        bad = [k for k in asked if k not in names]
        if bad or not asked or len(set(asked)) != len(asked):
            raise ArgumentError(f"{self.layer.name}: outputs={list(asked)!r}: ask for one or more of its outputs "
                                f"{names}, each once" + (f"; {bad} are not outputs" if bad else ""))
        return asked

    def output_names(self) -> list[str]:
        return [k for k, _ in self.graph.outputs]

    def bidir_forward(self) -> Any:
        """This layer's forward in one main kernel for two recurrences in opposite directions
        (``strategy="bidir"``; ``backward.BidirForward``), built on first use."""
        if getattr(self, "_bidir_forward", None) is None:
            from ssmc.backends.triton.backward import BidirForward

            self._bidir_forward = BidirForward(self.layer, self, chunks=self.chunks)
        return self._bidir_forward

    def backward_compiled(self) -> Any:
        """The compiled backward of this layer (built on first use): ``MatrixBackward`` where a
        scan has the matrix form (unless another strategy was asked for), ``MultiBackward``
        where several recurrences lie side by side, else ``CompiledBackward``."""
        if self._backward is None:
            from ssmc.backends.triton.backward import MatrixBackward, backward_for, recurrences

            # the matrix form's backward where the forward may take the matrix form (tensor
            # cores, at any length); the recurrent one where another strategy is asked for, and
            # per recurrence where there are several (MultiBackward)
            if self.has_matrix_form and self.strategy in (None, "matrix") and recurrences(self.graph) == 1:
                self._backward = MatrixBackward(self.layer, forward=self)
            else:  # the sequence split into the forward's ``chunks`` too, where asked
                self._backward = backward_for(self.layer, forward=self, chunks=self.chunks)
            self._backward.deterministic = self.deterministic
        return self._backward

    def deterministic_now(self) -> bool:
        """Whether this call must give the same bits every run."""
        import torch

        return self.deterministic or torch.are_deterministic_algorithms_enabled()

    def deterministic_kernel(self, kernel: Kernel) -> Kernel:
        """``kernel`` with its sums across programs stored per program (lower_backward.deterministic)."""
        if kernel.name not in self._det_kernels:
            from ssmc.backends.triton.lower_backward import deterministic

            self._det_kernels[kernel.name] = deterministic(kernel)
        return self._det_kernels[kernel.name]

    def raw_call(self, *args: Any, cu_seqlens: Any = None, grads_as_inputs: bool = False, outputs: Any = None,
                 **kwargs: Any) -> dict[str, Any]:
        """The kernels alone, no autograd. ``cu_seqlens`` (int32 [S + 1], the flash-attn convention): the inputs are a packed
        batch of S sequences, batch size 1 and total length T; sequence i is steps
        cu_seqlens[i]:cu_seqlens[i+1]. Its state starts from h0[i] (or 0) and nothing crosses
        a boundary; per-sequence final states come out with first dim S. ``outputs``: the
        names of the outputs to return (None: all); the kernels may then take less care of
        the others (with bf16 inputs and no final state asked, the matrix form's states kernel
        multiplies in two bf16 products a tile, not three: ``Run.matrix``). ``grads_as_inputs``
        (a backward's): see ``Run.result_dtype``."""
        import torch

        asked = self.asked_outputs(outputs)
        if self.strategy == "bidir" and self.defines_op:  # both directions in one kernel
            fused = self.bidir_forward()
            fused.deterministic = self.deterministic
            return _only(fused.raw_call(*args, cu_seqlens=cu_seqlens, **kwargs), asked)
        layer = self.layer
        values = layer.collect(args, kwargs)
        det = self.deterministic_now()
        key = call_key(values) if cu_seqlens is None else None
        key = (det, grads_as_inputs, asked, key) if key is not None else None
        recipe = self._recipes.get(key) if key is not None else None
        if recipe is not None:
            results, self.last_launched = recipe.replay(values, self.stats)
            return _only(results, asked)
        for k, v in values.items():
            if v is not None and not isinstance(v, torch.Tensor):
                raise ArgumentError(
                    f"{layer.name}: argument `{k}` is a {type(v).__name__}; compiled layers take torch tensors"
                )
        tensors = {k: v for k, v in values.items() if v is not None}
        device = common_device(layer.name, tensors)
        varlen = None
        if cu_seqlens is None:
            sizes = layer.bind(values, accept=KERNEL_DTYPES)
        else:
            sizes, varlen = bind_packed(self, values, cu_seqlens, device)
        on_gpu = device.type == "cuda"
        if not on_gpu and not interpreting():
            raise ArgumentError(
                f"{layer.name}: tensors are on {device}; compiled kernels run on a CUDA GPU, "
                "or on the CPU under TRITON_INTERPRET=1"
            )
        first = next(t for k, t in tensors.items() if layer.specs[k].kind == "input")
        axis = self.graph.scan_axis()
        steps = (varlen.longest if varlen is not None else sizes.get(axis, 0)) if axis else 0
        strategy = self.strategy or self.default_strategy(on_gpu, steps)
        run = Run(self, sizes, tensors, first.dtype, self.out_dtype(first.dtype), device, on_gpu, varlen)
        run.pairable = pairable(layer, tensors)
        run.deterministic = det
        run.grads_as_inputs = grads_as_inputs
        run.asked = frozenset(asked) if asked is not None else None
        for plan in self.plans(strategy, sizes, run.pairable):
            if plan.kernels[-1].strategy == "bidir":
                run.bidir(plan)
            elif plan.matrix:
                run.matrix(plan)
            elif plan.chunked:
                run.chunked(plan)
            else:
                run.single(plan.kernels[0])
        if key is not None:
            self._recipes[key] = run.rec.recipe(tensors, run.results, device)
        return _only(run.results, asked)


def _only(results: dict[str, Any], asked: tuple[str, ...] | None) -> dict[str, Any]:
    return results if asked is None else {k: results[k] for k in asked}


__all__ = ["CompiledLayer"]
