"""``ssmc.compile(layer)``: the JIT. Runs the passes once, lowers each fused group to kernels,
generates and caches Triton source, and launches the kernels on torch tensors.

Specialization: the generated source depends only on the layer and the strategy; dtypes and
block sizes are Triton's specialization (pointer dtypes, constexpr blocks), and sizes that
vary between calls (lengths, batch, chunk count) are runtime arguments."""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any

from ssmc.backends.triton import cache
from ssmc.backends.triton.binding import KERNEL_DTYPES, bind_packed, common_device, pairable
from ssmc.backends.triton.codegen import GENERATOR_VERSION, generate
from ssmc.backends.triton.kernel_ir import Kernel, Load, WindowLoad
from ssmc.backends.triton.lower import chunkable, lower_group
from ssmc.backends.triton.lower_matrix import (
    MatrixForm,
    check_tile_offsets,
    lower_matrix,
    matrix_form,
    plain_arg,
    share_matrix_states,
    tiles_aligned,
)
from ssmc.backends.triton.replay import Recorder, call_key
from ssmc.backends.triton.schedule import (
    MATRIX_MIN_STEPS,
    REGISTER_HELD,
    REGISTER_MIN_STEPS,
    Schedule,
    choose,
    choose_matrix,
    chunking,
    default_strategy,
)
from ssmc.dsl.layer import Layer
from ssmc.errors import ArgumentError, LoweringError
from ssmc.ir.node import Group
from ssmc.ir.printer import graph_hash
from ssmc.passes import DEFAULT_PIPELINE, pipeline_name, run_passes

STRATEGIES = ("sequential", "tiled", "chunked", "matrix")


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


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
                    out.append(GroupPlan((lower_group(self.graph, g, s, self.unroll),), False, g))
            if strategy == "matrix":
                out = share_matrix_states(out, self.matrix_exact)
            if strategy == "matrix" and not any(p.matrix for p in out):
                why = "; ".join(f"{g.name}: {matrix_form(self.graph, g)}" for g in self.graph.groups)
                raise LoweringError(f"{self.layer.name}: no kernel has the matrix form ({why})")
            self._plans[strategy] = out
        plans = self._plans[strategy]
        if sizes is None:
            return plans
        return [self.held_plan(p, sizes, pairable) for p in plans]

    @functools.cached_property
    def has_matrix_form(self) -> bool:
        """Whether some fused group has the matrix form (lower_matrix)."""
        return any(isinstance(matrix_form(self.graph, g), MatrixForm) for g in self.graph.groups or ())

    def matrix_exact(self, group: Any) -> bool | None:
        """Whether the matrix scan of ``group`` needs float32-accurate products whatever the
        inputs' dtype: True for all its kernels, False for none, None (a layer's own scan) for
        its states kernel alone (the state and final state are float32 results)."""
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
        if self.held == "tensor" or k.strategy != "sequential" or not k.full_dims or k.held:
            return None
        if any(isinstance(s, WindowLoad) for s in k.pre + k.loop):  # a conv: not in print_held yet
            return None
        held = {d: sizes[d] for d in k.full_dims}
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
            self._held_plans[key] = GroupPlan(ks, plan.chunked, plan.group)
        return self._held_plans[key]

    def kernels(self, strategy: str, sizes: dict[str, int] | None = None, pairable: frozenset = frozenset()) -> list[Kernel]:
        return [k for p in self.plans(strategy, sizes, pairable) for k in p.kernels]

    def sources(self, strategy: str = "sequential", sizes: dict[str, int] | None = None, pairable: frozenset = frozenset()) -> list[str]:
        """The generated Triton source of each kernel (what ``ssmc show --stage kernel`` prints);
        with ``sizes``, the form chosen at those sizes (dims held as registers)."""
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

    def __call__(self, *args: Any, cu_seqlens: Any = None, **kwargs: Any) -> dict[str, Any]:
        """Run the kernels; where an argument requires grad (and grad mode is on), through
        autograd: the backward runs the generated backward kernels. ``cu_seqlens``: see
        ``raw_call``."""
        import torch

        values = self.layer.collect(args, kwargs)
        grad = torch.is_grad_enabled() and any(isinstance(v, torch.Tensor) and v.requires_grad for v in values.values())
        if grad or torch.compiler.is_compiling():
            # as a torch.library op: autograd runs the backward kernels; torch.compile sees one op
            from ssmc.export.library import call_op

            return call_op(self, values, cu_seqlens)
        return self.raw_call(cu_seqlens=cu_seqlens, **values)

    def output_names(self) -> list[str]:
        return [k for k, _ in self.graph.outputs]

    def backward_compiled(self) -> Any:
        """The compiled backward of this layer (built on first use): ``MatrixBackward`` where a
        scan has the matrix form (unless another strategy was asked for), else ``CompiledBackward``."""
        if self._backward is None:
            from ssmc.backends.triton.backward import CompiledBackward, MatrixBackward

            # the matrix form's backward where the forward may take the matrix form (tensor
            # cores, at any length); the recurrent one where another strategy is asked for
            if self.has_matrix_form and self.strategy in (None, "matrix"):
                self._backward = MatrixBackward(self.layer, forward=self)
            else:  # the sequence split into the forward's ``chunks`` too, where asked
                self._backward = CompiledBackward(self.layer, forward=self, chunks=self.chunks)
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

    def raw_call(self, *args: Any, cu_seqlens: Any = None, **kwargs: Any) -> dict[str, Any]:
        """The kernels alone, no autograd. ``cu_seqlens`` (int32 [S + 1], the flash-attn convention): the inputs are a packed
        batch of S sequences, batch size 1 and total length T; sequence i is steps
        cu_seqlens[i]:cu_seqlens[i+1]. Its state starts from h0[i] (or 0) and nothing crosses
        a boundary; per-sequence final states come out with first dim S."""
        import torch

        layer = self.layer
        values = layer.collect(args, kwargs)
        det = self.deterministic_now()
        key = call_key(values) if cu_seqlens is None else None
        key = (det, key) if key is not None else None
        recipe = self._recipes.get(key) if key is not None else None
        if recipe is not None:
            results, self.last_launched = recipe.replay(values, self.stats)
            return results
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
        steps = (varlen[2] if varlen is not None else sizes.get(axis, 0)) if axis else 0
        strategy = self.strategy or self.default_strategy(on_gpu, steps)
        run = _Run(self, sizes, tensors, first.dtype, self.out_dtype(first.dtype), device, on_gpu, varlen)
        run.pairable = pairable(layer, tensors)
        run.deterministic = det
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
        return run.results


class _Run:
    """The buffers and launches of one call."""

    def __init__(self, c: CompiledLayer, sizes, tensors, in_dtype, out_dtype, device, on_gpu, varlen=None) -> None:
        self.c, self.sizes, self.tensors = c, dict(sizes), tensors
        self.varlen = varlen  # (batch dim, cu_seqlens, longest sequence) of a packed batch
        self.in_dtype, self.out_dtype, self.device, self.on_gpu = in_dtype, out_dtype, device, on_gpu
        self.results: dict[str, Any] = {}
        self.buffers: dict[str, Any] = {}
        self.pairable: frozenset = frozenset()
        self.deterministic = False
        self.rec = Recorder()  # allocations and launches, for replaying calls of this signature
        self.spans: dict[str, int] = {}  # matrix form: each group's chunk length (states stored per chunk)

    def alloc(self, shape, dtype, zero: bool = False) -> Any:
        return self.rec.alloc(shape, dtype, self.device, zero)

    def schedule(self, kernel: Kernel, **override: Any) -> Schedule:
        return choose(kernel, self.sizes, self.on_gpu, kernel.strategy, **{**self.c.options, **override})

    def single(self, kernel: Kernel) -> None:
        self.launch(kernel, self.schedule(kernel), {})

    def chunked(self, plan: GroupPlan) -> None:
        states, full = plan.kernels if len(plan.kernels) == 2 else (None, plan.kernels[0])
        sched = self.schedule(full)
        sizes = dict(self.sizes)
        if self.varlen is not None:  # chunk by the longest sequence; shorter ones pass through
            sizes[full.time_dim] = self.varlen[2]
        n_chunks, chunk_len = chunking(full, sizes, sched, self.on_gpu, self.c.chunks)
        if states is None:  # no recurrence: nothing passes between chunks (one chunk or many)
            self.sizes["_C"] = n_chunks
            self.launch(full, sched, {"chunk_len": chunk_len})
            del self.sizes["_C"]
            return
        if n_chunks <= 1:  # nothing to split: the plain sequential kernel
            index = self.c.plans("chunked", self.sizes, self.pairable).index(plan)  # plans of both strategies align by group
            return self.single(self.c.plans("sequential", self.sizes, self.pairable)[index].kernels[0])
        self.chunk_states(states, n_chunks, chunk_len)  # the last chunk's program stores final states
        extra = {"chunk_len": chunk_len}
        self.launch(full, sched, extra)
        del self.sizes["_C"]

    def chunk_states(self, states: Kernel, n_chunks: int, chunk_len: int, sched: Schedule | None = None,
                     entry: str = "hin") -> None:
        """The chunk-states pass and the combine: ``entry`` (each chunk's incoming state) in
        the buffers, ``_C`` (``n_chunks``) in the sizes. The last chunk has no states pass
        (nothing enters a chunk after it; at 8 chunks, an eighth of the pass): final states
        are the last chunk's program's to store. ``sched``: the states kernel's schedule (by
        default its own)."""
        import torch

        from ssmc.backends.triton.runtime import chunk_combine

        state_shape = [self.sizes[d] for d in states.carries[0].dims]
        S, P = (self.alloc([n_chunks - 1, *state_shape], torch.float32) for _ in range(2))
        hin = self.alloc([n_chunks, *state_shape], torch.float32)
        self.buffers.update({"st_S": S, "st_P": P, entry: hin})
        self.sizes["_C"] = n_chunks - 1
        self.launch(states, sched or self.schedule(states), {"chunk_len": chunk_len})
        self.sizes["_C"] = n_chunks
        M = math.prod(state_shape)
        block = 128 if self.on_gpu else 64  # one element per thread: programs to fill the SMs
        self.rec.launch(chunk_combine, (triton_cdiv(M, block),), [P, S, hin, n_chunks - 1, M], dict(BLOCK=block, GROUP=8 if self.on_gpu else 4))
        self.c.stats["launches"] += 1

    def matrix(self, plan: GroupPlan) -> None:
        """The matrix form: the states kernel (each chunk's entry state, the final state), then
        the outputs kernel (either alone: only a final state; chunk states another group's
        states kernel stored, ``plan.shares``)."""
        import torch

        states = next((k for k in plan.kernels if k.role == "states"), None)
        full = next((k for k in plan.kernels if k.role != "states"), None)
        m = plan.kernels[0].matrix
        L = self.varlen[2] if self.varlen is not None else self.sizes[m.time]
        # products at float32 accuracy for float32 inputs and float32 results (a forward's
        # states; a backward's matrix scans whose results must be: see MatrixBackward)
        f32 = self.in_dtype == torch.float32
        exact = self.c.matrix_exact(plan.group)
        low = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.in_dtype)
        k = plain_arg(m, m.k, m.n)  # loaded as stored: exact as a bf16 operand if it is bf16
        k_bf16 = k is not None and self.tensors[k.attr("name")].dtype == torch.bfloat16
        r = plain_arg(m, m.c, m.n)  # the readout's factor, likewise
        c_bf16 = r is not None and self.tensors[r.attr("name")].dtype == torch.bfloat16
        if states is not None:
            sa = choose_matrix(states, self.sizes, self.on_gpu, f32 or exact is not False, k_bf16, low, **self.c.options)
            blocks_a = dict(sa.blocks)
            self.spans[plan.group.name] = sa.block_t * sa.sub
            self.sizes["_C"] = max(1, triton_cdiv(L, sa.block_t * sa.sub))
            self.sizes["_NB"] = triton_cdiv(self.sizes[m.n], blocks_a[m.n])
            self.sizes["_PB"] = triton_cdiv(self.sizes[m.p], blocks_a[m.p])
            self.launch(states, sa, {})
        if full is not None:
            sb = choose_matrix(full, self.sizes, self.on_gpu, f32 or bool(exact), k_bf16 and c_bf16, low, **self.c.options)
            span = self.spans[plan.shares or plan.group.name]
            if sb.block_t * sb.sub != span:  # pragma: no cover - both from the same options
                raise LoweringError(f"{full.name}: chunks of {sb.block_t * sb.sub} steps; its chunk states are of {span}")
            self.sizes["_C"] = max(1, triton_cdiv(L, span))
            self.sizes["_RT"] = triton_cdiv(L, sb.block_t)
            self.sizes["_PB"] = triton_cdiv(self.sizes[m.p], dict(sb.blocks)[m.p])
            self.launch(full, sb, {})
        for d in ("_C", "_NB", "_PB", "_RT"):
            self.sizes.pop(d, None)

    def bidir(self, plan: GroupPlan) -> None:
        """A backward's main kernel; first, when it recomputes a forward scan, that scan's
        checkpoints (every SUB chunks of BLOCK_T steps: the chunk-states pass and combine, in
        ``hin``) and the scratch buffer of chunk entry states; when its sequence is split among
        programs, the carried scan's chunk states and combine (``hin_carried`` beside checkpoints, else
        ``hin``), then one program per chunk (and grid dims)."""
        import torch

        kernel = plan.kernels[-1]
        sched = self.schedule(kernel)
        L = self.varlen[2] if self.varlen is not None else self.sizes.get(kernel.time_dim, 0)
        n_chunks, chunk_len = 1, 0
        if kernel.chunked:
            sizes = dict(self.sizes)
            if self.varlen is not None:  # chunk by the longest sequence; shorter ones end early
                sizes[kernel.time_dim] = self.varlen[2]
            n_chunks, chunk_len = chunking(kernel, sizes, sched, self.on_gpu, self.c.chunks)
        if plan.checkpointed:
            span = sched.block_t * sched.sub  # steps between checkpoints
            if kernel.chunked:  # chunks of whole spans: a checkpoint starts each
                chunk_len = max(span, triton_cdiv(chunk_len, span) * span)
                n_chunks = max(1, triton_cdiv(L, chunk_len))
            self.sizes["_Q"] = sched.sub
            carry = plan.kernels[0].carries[0]
            shape = ([n_chunks] if kernel.chunked else []) + [sched.sub, *(self.sizes[d] for d in carry.dims)]
            self.buffers["scr"] = self.alloc(shape, torch.float32)
            states = self.c.states_kernel(plan, "checkpoints", self.sizes, self.pairable)
            if L <= span and self.on_gpu and not interpreting():  # one span: no pass, but a longer call's
                self.compile_states(states, span, None)
            self.chunk_states(states, max(1, triton_cdiv(L, span)), span)
        if not kernel.chunked:
            self.launch(kernel, sched, {})
        else:
            carried = plan.kernels[-2] if len(plan.kernels) > 1 + plan.checkpointed else None
            entry = "hin_carried" if plan.checkpointed else "hin"
            if carried is None:  # no scan carried: no state enters a chunk
                self.sizes["_C"] = n_chunks
            elif n_chunks > 1:
                carried = self.c.states_kernel(plan, "carried", self.sizes, self.pairable)
                self.chunk_states(carried, n_chunks, chunk_len, sched=self.carried_schedule(carried, kernel, sched), entry=entry)
            else:  # one chunk: it starts from the scan's own initial state (the entry is not read)
                if self.on_gpu and not interpreting():
                    held = self.c.states_kernel(plan, "carried", self.sizes, self.pairable)
                    self.compile_states(held, chunk_len, self.carried_schedule(held, kernel, sched))
                self.sizes["_C"] = 1
                self.buffers[entry] = self.alloc([1, *(self.sizes[d] for d in carried.carries[0].dims)], torch.float32)
            self.launch(kernel, sched, {"chunk_len": chunk_len})
        self.sizes.pop("_C", None)
        self.sizes.pop("_Q", None)

    def carried_schedule(self, carried: Kernel, kernel: Kernel, sched: Schedule) -> Schedule | None:
        """The carried chunk-states pass's schedule beside main kernel ``kernel``'s ``sched``. The
        tensor form: the main kernel's block of the tiled dim, as many programs (seen on an H100,
        Mamba-2's rest: 17.7 ms with the states kernel's own 32 channels per program, for 64
        programs); held as registers: its own (None: a channel per thread)."""
        if carried.held:
            return None
        return self.schedule(carried, block_tiled=dict(sched.blocks).get(kernel.tiled_dim), num_warps=sched.num_warps)

    def compile_states(self, states: Kernel, chunk_len: int, sched: Schedule | None) -> None:
        """Compile ``states`` (a backward's chunk-states pass: its checkpoints, or a split
        sequence's carried scan) without running it, where this call needs one chunk: another
        batch size or length of the same signature needs the pass and must find it compiled
        (no compilation after a warm-up; its buffers here are stand-ins with the real ones'
        dtype and strides, in no recipe)."""
        import torch

        shape = [1, *(self.sizes[d] for d in states.carries[0].dims)]
        saved = {k: self.buffers.pop(k, None) for k in ("st_S", "st_P")}
        self.buffers.update(st_S=torch.empty(shape, dtype=torch.float32, device=self.device),
                            st_P=torch.empty(shape, dtype=torch.float32, device=self.device))
        self.sizes["_C"] = 1
        self.launch(states, sched or self.schedule(states), {"chunk_len": chunk_len}, compile_only=True)
        for k, v in saved.items():
            self.buffers.pop(k)
            if v is not None:
                self.buffers[k] = v

    def launch(self, kernel: Kernel, sched: Schedule, extra: dict[str, int], compile_only: bool = False) -> None:
        """Bind ``kernel``'s arguments and launch it (``compile_only``: compile it for these
        arguments' types and specializations, and launch nothing)."""
        import torch

        layer = self.c.layer
        sizes = self.sizes
        call: list[Any] = []
        flags: dict[str, bool] = {}
        dummy = next(iter(self.tensors.values()))
        if self.deterministic and any(t.accumulate for t in kernel.tensors):
            kernel = self.c.deterministic_kernel(kernel)
        blocks = dict(sched.blocks)

        def shape(dims):  # a packed batch's sequence tensors are one row
            seq_row = self.varlen is not None and kernel.time_dim in dims
            return [
                (triton_cdiv(sizes[d[2:]], blocks[d[2:]]) if d[2:] in blocks else sizes[d[2:]]) if d.startswith("_P")
                else 1 if (seq_row and d == self.varlen[0]) else sizes[d]
                for d in dims
            ]

        sums = []  # deterministic mode: (where the result goes, its per-program slots)
        step_reach = 0  # the largest step offset of an input along time, in elements
        for t in kernel.tensors:
            if t.role == "out" and t.name.startswith("o_"):
                dt = torch.float32 if t.source in self.c.finals else self.out_dtype
                buf = self.alloc(shape(t.dims), dt, zero=t.accumulate)  # zeroed: programs add into it
                self.results[t.source] = buf
                if t.partial:
                    sums.append((self.results, t.source, buf, len(t.partial)))
            elif t.role == "out" and t.name not in self.buffers:
                dt = self.out_dtype if t.low else torch.float32
                buf = self.alloc(shape(t.dims), dt, zero=t.accumulate)
                self.buffers[t.name] = buf
                if t.partial:
                    sums.append((self.buffers, t.name, buf, len(t.partial)))
            elif t.name in self.buffers:
                buf = self.buffers[t.name]
            elif t.name.startswith("t") and t.role == "in":
                raise LoweringError(f"{layer.name}: kernel {kernel.name} reads {t.source} before any kernel stored it")
            else:
                buf = self.tensors.get(t.source)
                if t.optional:
                    flags[f"HAS_{t.name}"] = buf is not None
                if buf is None:
                    call.append(dummy)
                    call.extend(0 for _ in t.dims)
                    continue
                layout = layer.specs[t.source].layout
                call.append(buf)
                call.extend(buf.stride(layout.index(d)) for d in t.dims)
                if kernel.time_dim in t.dims:
                    step_reach = max(step_reach, _reach(buf, layout.index(kernel.time_dim)))
                continue
            call.append(buf)
            call.extend(buf.stride(i) for i in range(len(t.dims)))
            if kernel.time_dim in t.dims:
                step_reach = max(step_reach, _reach(buf, t.dims.index(kernel.time_dim)))
        call.extend(sizes[d] for d in kernel.size_dims)
        if kernel.chunked:
            call.append(extra["chunk_len"])
        if kernel.batch_dim:
            call.append(self.varlen[1] if self.varlen is not None else dummy)
            flags["VARLEN"] = self.varlen is not None
        if kernel.narrow_steps:
            flags["OFFS32"] = step_reach < OFFS32_LIMIT
        if kernel.strategy == "matrix":
            flags["ALIGNED"] = tiles_aligned(kernel, call)
            check_tile_offsets(layer.name, kernel, call, sched)
        n_programs = math.prod(sizes[d] for d in kernel.grid_dims)
        if kernel.tiled_dim is not None:
            n_programs *= triton_cdiv(sizes[kernel.tiled_dim], blocks[kernel.tiled_dim])
        if compile_only:
            fn = self.c._fn(kernel)
            fn.warmup(*call, grid=(max(n_programs, 1),), **flags, **sched.constexprs(), num_warps=sched.num_warps)
            return
        if n_programs:
            fn = self.c._fn(kernel)
            self.c.last_launched = self.rec.launch(fn, (n_programs,), call, dict(**flags, **sched.constexprs(), num_warps=sched.num_warps))
            self.c.stats["launches"] += 1
        for where, name, slots, n in sums:  # a fixed order of additions: the same bits every run
            where[name] = self.rec.sum(slots, tuple(range(n)))


# Kernel.narrow_steps: a call whose inputs reach this many elements along time (length times
# stride) takes 64-bit step offsets (a module constant so tests can take both paths)
OFFS32_LIMIT = 2**31


def _reach(buf: Any, axis: int) -> int:
    """How many elements ``buf``'s offsets span along ``axis`` (length times stride)."""
    return buf.shape[axis] * abs(buf.stride(axis))


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


__all__ = ["CompiledLayer"]
