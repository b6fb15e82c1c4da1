"""The buffers and launches of one call of a compiled layer: its plans' kernels bound to the
call's tensors and launched in order (the chunked strategy's states pass and combine, the
matrix form's kernel pairs, a backward's checkpoints, carried chunk states and main kernel),
recorded for replay (``replay.Recorder``). ``jit.CompiledLayer`` plans; this runs the plans."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from ssmc.backends.triton.kernel_ir import Kernel, ScanStep
from ssmc.backends.triton.lower_matrix import check_tile_offsets, plain_arg, tiles_aligned
from ssmc.backends.triton.replay import Recorder
from ssmc.backends.triton.schedule import Schedule, choose, choose_matrix, chunking, smaller_matrix
from ssmc.errors import LoweringError

if TYPE_CHECKING:
    from ssmc.backends.triton.jit import CompiledLayer, GroupPlan


# Kernel.aligned_bases's hint (every ALIGNED bit clear while False: the kernels as before it).
# Measured on an H100 (bench/NOTES.md, session 22): Mamba-2 fwd+bwd B8 L2048 2.255 -> 2.117 ms,
# the same errors against float32; HGRN unchanged. Off by default until the GPU suite passes
# with it: the one partial run with it had one failure it could not name. SSMC_ALIGN_BASES=1
# turns it on (for that run).
ALIGN_BASES = os.environ.get("SSMC_ALIGN_BASES", "0") == "1"

# 16-bit rows a register-held kernel reads each step (Kernel.pairs: Mamba-1's B and C, the same
# row for every channel of a program) passed in float32, converted once a call (Run.row_input):
# each bf16 value otherwise costs an unpacking instruction per step in every thread. By the sm_90
# compiles (bench/aot_sm90.py FLOAT32=B, B2 L8192, 32 chunks) the forward's states kernel loop
# 548 -> 461 instructions (95 -> 168 registers), the chunked kernel 909 -> 865. Exact (bf16 and
# fp16 widen to float32 exactly). Not yet timed on a GPU (bench/wide_rows_gpu.py): off by default;
# SSMC_WIDEN_ROWS=1 (or True) widens them for every kernel, "states" for the chunk-states kernels
# alone (the chunked kernel with B and C in float32 took 254 registers, with B alone 168 + 48 B
# of stack: the states kernel may gain where the chunked one loses).
_WIDEN = os.environ.get("SSMC_WIDEN_ROWS", "0")
WIDEN_ROWS: bool | str = {"0": False, "1": True}.get(_WIDEN, _WIDEN)


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


class Run:
    """The buffers and launches of one call."""

    def __init__(self, c: CompiledLayer, sizes, tensors, in_dtype, out_dtype, device, on_gpu, varlen=None) -> None:
        self.c, self.sizes, self.tensors = c, dict(sizes), tensors
        self.varlen = varlen  # binding.Packed: a packed batch
        self.in_dtype, self.out_dtype, self.device, self.on_gpu = in_dtype, out_dtype, device, on_gpu
        self.results: dict[str, Any] = {}
        self.buffers: dict[str, Any] = {}
        self.pairable: frozenset = frozenset()
        self.deterministic = False
        self.grads_as_inputs = False  # a backward's: see result_dtype
        self.asked: frozenset[str] | None = None  # the outputs the caller asked for (None: all)
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
            sizes[full.time_dim] = self.varlen.longest
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

        from ssmc.backends.triton.runtime import chunk_combine, chunk_combine_complex

        state_shape = [self.sizes[d] for d in states.carries[0].dims]
        S, P = (self.alloc([n_chunks - 1, *state_shape], torch.float32) for _ in range(2))
        hin = self.alloc([n_chunks, *state_shape], torch.float32)
        self.buffers.update({"st_S": S, "st_P": P, entry: hin})
        self.sizes["_C"] = n_chunks - 1
        self.launch(states, sched or self.schedule(states), {"chunk_len": chunk_len})
        self.sizes["_C"] = n_chunks
        M = math.prod(state_shape)
        block = 128 if self.on_gpu else 64  # one element per thread: programs to fill the SMs
        group = dict(BLOCK=block, GROUP=8 if self.on_gpu else 4)
        part = next((s.complex for s in states.loop if isinstance(s, ScanStep) and s.complex), None)
        if part:  # complex: M // 2 elements of two parts
            dims = states.carries[0].dims
            inner = math.prod(state_shape[dims.index(part) + 1:])
            self.rec.launch(chunk_combine_complex, (triton_cdiv(M // 2, block),), [P, S, hin, n_chunks - 1, M // 2, inner], group)
        else:
            self.rec.launch(chunk_combine, (triton_cdiv(M, block),), [P, S, hin, n_chunks - 1, M], group)
        self.c.stats["launches"] += 1

    def matrix(self, plan: GroupPlan) -> None:
        """The matrix form: the states kernel (each chunk's entry state, the final state), then
        the outputs kernel (either alone: only a final state; chunk states another group's
        states kernel stored, ``plan.shares``)."""
        import torch

        states = next((k for k in plan.kernels if k.role == "states"), None)
        full = next((k for k in plan.kernels if k.role != "states"), None)
        m = plan.kernels[0].matrix
        L = self.varlen.longest if self.varlen is not None else self.sizes[m.time]
        # products at float32 accuracy for float32 inputs and float32 results (a forward's
        # states; a backward's matrix scans whose results must be: see MatrixBackward)
        f32 = self.in_dtype == torch.float32
        exact = self.c.matrix_exact(plan.group, (self.sizes[m.p], self.sizes[m.n]))
        low = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.in_dtype)
        k = plain_arg(m, m.k, m.n)  # loaded as stored: exact as a bf16 operand if it is bf16
        k_bf16 = k is not None and self.tensors[k.attr("name")].dtype == torch.bfloat16
        r = plain_arg(m, m.c, m.n)  # the readout's factor, likewise
        c_bf16 = r is not None and self.tensors[r.attr("name")].dtype == torch.bfloat16
        if full is not None and full.role == "dl":  # a decay gradient: one program per chunk
            span = self.spans[plan.shares]
            if span > 128:
                raise LoweringError(f"{full.name}: chunks of {span} steps; a decay gradient's kernel takes at most 128")
            sd = choose_matrix(full, self.sizes, self.on_gpu, f32 or bool(exact), False, low, **{**self.c.options, "block_t": span, "sub": 1})
            self.sizes["_C"] = max(1, triton_cdiv(L, span))
            sides = {t.dims[0]: self.buffers[t.name].shape[0] for t in full.tensors if t.name.startswith("side_")}
            self.sizes.update(sides)  # the slots of the sums dq's and dk's kernels stored (with_sides)
            self.launch(full, self.fit(full, sd), {})
            for d in ("_C", *sides):
                self.sizes.pop(d)
            return
        if states is not None:
            # a layer's own scan (exact None): float32-accurate products where its final state
            # (a float32 result) is asked for, or the inputs are fp16 (decayed inputs rounded to
            # fp16 could overflow); else its chunk states feed only the outputs kernel, which
            # rounds them to bf16: the decayed inputs in two bf16 parts, two products a tile
            # (one, as mamba-ssm's chunk_state kernel, erred 1.02x the tolerance table's bound
            # on an H100 in a bf16 retention case; bench/NOTES.md, session 20)
            final_asked = any(t.source in self.c.finals and (self.asked is None or t.source in self.asked)
                              for t in states.tensors if t.role == "out")
            own = exact is None and not f32 and low == "bf16" and k_bf16 and not final_asked
            sa = choose_matrix(states, self.sizes, self.on_gpu, f32 or (exact is not False and not own), k_bf16, low,
                               **{**self.c.options, "two_parts": own})
            self.spans[plan.group.name] = sa.block_t * sa.sub
            self.sizes["_C"] = max(1, triton_cdiv(L, sa.block_t * sa.sub))
            self.launch(states, self.fit(states, sa), {})
        if full is not None:
            sb = choose_matrix(full, self.sizes, self.on_gpu, f32 or bool(exact), k_bf16 and c_bf16, low, **self.c.options)
            span = self.spans[plan.shares or plan.group.name]
            if sb.block_t * sb.sub != span:  # pragma: no cover - both from the same options
                raise LoweringError(f"{full.name}: chunks of {sb.block_t * sb.sub} steps; its chunk states are of {span}")
            self.sizes["_C"] = max(1, triton_cdiv(L, span))
            # a reverse scan's positions: the steps padded to whole chunks (print_matrix)
            self.sizes["_RT"] = triton_cdiv(L, span) * (span // sb.block_t) if m.reverse else triton_cdiv(L, sb.block_t)
            self.launch(full, self.fit(full, sb), {})
        for d in ("_C", "_NB", "_PB", "_RT"):
            self.sizes.pop(d, None)

    def fit(self, kernel: Kernel, sched: Schedule) -> Schedule:
        """``sched``, or where the GPU refuses its kernel (more shared memory than a program may
        have: float32-accurate products stage three parts of each operand, and asked 248 KB of
        the H100's 227 in session 18's decay gradient at P 64 N 128), the first smaller schedule
        (``schedule.smaller_matrix``) that it takes. Each is compiled, not run; the choice is kept
        per kernel, schedule and dtypes, so only a signature's first call compiles the refused
        ones. None fits: a LoweringError that says what each asked."""
        from triton.runtime.errors import OutOfResources

        if not self.checks_fit():
            return sched
        key = (kernel.name, sched, self.in_dtype, self.out_dtype, self.deterministic)
        if key in self.c.fitted:
            return self.c.fitted[key]
        refused = []
        for cand in (sched, *smaller_matrix(kernel, sched, self.sizes, self.on_gpu)):
            try:
                self.try_compile(kernel, cand)
            except OutOfResources as e:
                refused.append(f"blocks {dict(cand.blocks)}, {cand.num_stages} stage(s): {e}")
                continue
            self.c.fitted[key] = cand
            return cand
        raise LoweringError(
            f"{kernel.name}: no schedule of this kernel fits this GPU ({'; '.join(refused)})"
            + ("; float32-accurate products (low_precision=False or float32 inputs) need the most" if dict(sched.flags).get("PREC") == "tf32x3" else "")
        )

    def checks_fit(self) -> bool:
        """Whether launches can be refused for their resources: a GPU's (the interpreter has no
        limit; tests patch this to take the path on the CPU)."""
        return self.on_gpu and not interpreting()

    def try_compile(self, kernel: Kernel, sched: Schedule) -> None:
        """Compile ``kernel`` under ``sched`` for this call's arguments and load it (where the
        GPU says whether it fits), launching nothing and leaving no trace: the buffers it binds
        are allocated and dropped."""
        n, results, buffers = len(self.rec.allocs), dict(self.results), dict(self.buffers)
        try:
            self.launch(kernel, sched, {}, compile_only=True)
        finally:
            del self.rec.allocs[n:]
            self.results, self.buffers = results, buffers

    def bidir(self, plan: GroupPlan) -> None:
        """A backward's main kernel; first, when it recomputes a forward scan, that scan's
        checkpoints (every SUB chunks of BLOCK_T steps: the chunk-states pass and combine, in
        ``hin``) and the scratch buffer of chunk entry states; when its sequence is split among
        programs, the carried scan's chunk states and combine (``hin_carried`` beside checkpoints, else
        ``hin``), then one program per chunk (and grid dims)."""
        import torch

        kernel = self.c.main_kernel(plan, self.sizes)
        sched = self.schedule(kernel)
        L = self.varlen.longest if self.varlen is not None else self.sizes.get(kernel.time_dim, 0)
        n_chunks, chunk_len = 1, 0
        if kernel.chunked:
            sizes = dict(self.sizes)
            if self.varlen is not None:  # chunk by the longest sequence; shorter ones end early
                sizes[kernel.time_dim] = self.varlen.longest
            regs = self.main_registers(kernel, sched) if self.c.chunks is None and self.checks_fit() else None
            n_chunks, chunk_len = chunking(kernel, sizes, sched, self.on_gpu, self.c.chunks, regs)
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

    def main_registers(self, kernel: Kernel, sched: Schedule) -> int | None:
        """The registers a thread of backward main kernel ``kernel`` (split in time) takes as
        compiled for this call, for the waves ``schedule.chunking`` counts; None where it cannot
        be compiled. It is compiled here, before the chunk count is chosen, with stand-ins for the
        buffers that count sets (its sizes and chunk strides are runtime arguments: the same
        binary the launch then finds), and nothing is kept but the count (per kernel, schedule
        and dtypes)."""
        import torch

        key = (kernel.name, sched, self.in_dtype, self.out_dtype, self.deterministic, self.grads_as_inputs)
        if key in self.c.registers:
            return self.c.registers[key]
        sizes, buffers, results = dict(self.sizes), dict(self.buffers), dict(self.results)
        n = len(self.rec.allocs)
        stand = {"_C": 2, "_Q": max(1, sched.sub), "_K": 1}
        try:
            self.sizes.update(stand)
            for t in kernel.tensors:
                if t.role == "in" and t.name in ("scr", "hin", "hin_carried"):
                    self.buffers[t.name] = self.alloc([stand.get(d) or self.sizes[d] for d in t.dims], torch.float32)
            compiled = self.launch(kernel, sched, {"chunk_len": sched.block_t * max(1, sched.sub)}, compile_only=True)
            regs = getattr(compiled, "n_regs", None)
        except Exception:  # noqa: BLE001 - a count is a hint: without it, the rule's default
            regs = None
        finally:
            del self.rec.allocs[n:]
            self.sizes, self.buffers, self.results = sizes, buffers, results
        self.c.registers[key] = regs
        return regs

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

    def result_dtype(self, t: Any) -> Any:
        """The dtype of result ``t`` (a kernel's output tensor): float32 for final states, else
        the compiled layer's (a forward's: its inputs'; a backward's: float32). With
        ``grads_as_inputs`` (autograd's calls), the gradient of a 16-bit argument in that
        argument's dtype where one program stores each element once (no sum across programs)
        over all of the argument's dims: the float32 value rounded once as it is stored, the
        same bits as a cast after the call, without the float32 tensor's bytes and the cast's
        pass over it."""
        import torch

        if t.source in self.c.finals:
            return torch.float32
        name = t.source[len("grad_"):] if t.source.startswith("grad_") else None
        arg = self.tensors.get(name) if self.grads_as_inputs and name else None
        if (arg is not None and arg.dtype in (torch.bfloat16, torch.float16) and not t.accumulate and not t.partial
                and set(t.dims) == set(self.c.layer.specs[name].layout)):
            return arg.dtype
        return self.out_dtype

    def row_input(self, kernel: Kernel, name: str, t: Any) -> Any:
        """Input ``name`` for ``kernel``, which reads its rows two elements per load
        (``Kernel.pairs``): in float32 where ``WIDEN_ROWS`` names the kernel (True: every one;
        a role: those of that role) and it is 16-bit (one conversion a call, shared by the
        call's kernels), else as given."""
        import torch

        if not (WIDEN_ROWS is True or WIDEN_ROWS == kernel.role) or t.dtype not in (torch.bfloat16, torch.float16):
            return t
        key = f"wide_{name}"
        if key not in self.buffers:
            self.buffers[key] = self.rec.convert(t, torch.float32)
        return self.buffers[key]

    def launch(self, kernel: Kernel, sched: Schedule, extra: dict[str, int], compile_only: bool = False) -> Any:
        """Bind ``kernel``'s arguments and launch it (``compile_only``: compile it for these
        arguments' types and specializations, launch nothing, and return the compiled kernel)."""
        import torch

        layer = self.c.layer
        sizes = self.sizes
        call: list[Any] = []
        flags: dict[str, bool] = {}
        dummy = next(iter(self.tensors.values()))
        if self.deterministic and any(t.accumulate for t in kernel.tensors):
            kernel = self.c.deterministic_kernel(kernel)
        blocks = dict(sched.blocks)
        if kernel.strategy == "matrix":  # the grid's blocks of N and P: this schedule's (see fit)
            m = kernel.matrix
            for d, dim in (("_NB", m.n), ("_PB", m.p)):
                if d in kernel.size_dims:
                    sizes[d] = triton_cdiv(sizes[dim], blocks[dim])

        def shape(dims):  # a packed batch's sequence tensors are one row
            seq_row = self.varlen is not None and kernel.time_dim in dims
            return [
                (triton_cdiv(sizes[d[2:]], blocks[d[2:]]) if d[2:] in blocks else sizes[d[2:]]) if d.startswith("_P")
                else 1 if (seq_row and d == self.varlen.batch) else sizes[d]
                for d in dims
            ]

        sums = []  # deterministic mode: (where the result goes, its per-program slots)
        step_reach = 0  # the largest step offset of an input along time, in elements
        tile_reach = 0  # Kernel.time_tile: the largest offset within a tensor along time, in elements
        for t in kernel.tensors:
            if t.role == "out" and t.name.startswith("o_"):
                dt = self.result_dtype(t)
                if (t.source in self.c.results_in_products_dtype and kernel.role == "full" and not t.accumulate
                        and not t.partial and dict(sched.flags).get("PREC") in ("bf16", "fp16")):
                    # a backward's matrix scan with 16-bit products, its result read by the rest
                    # of the backward only: rounded to the products' dtype once, as it is stored
                    dt = self.in_dtype
                buf = self.alloc(shape(t.dims), dt, zero=t.accumulate)  # zeroed: programs add into it
                self.results[t.source] = buf
                if t.partial:
                    sums.append((self.results, t.source, buf, len(t.partial)))
            elif t.role == "out" and t.name not in self.buffers:
                dt = self.out_dtype if t.low else torch.float32
                if t.low and dict(sched.flags).get("PREC") in ("bf16", "fp16") and self.c.states_in_products_dtype:
                    # chunk states of a kernel with 16-bit products (a backward's matrix scan):
                    # in the products' dtype, which its readers round them to anyway
                    dt = self.in_dtype
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
                if t.name in kernel.pairs:
                    buf = self.row_input(kernel, t.source, buf)
                layout = layer.specs[t.source].layout
                call.append(buf)
                call.extend(buf.stride(layout.index(d)) for d in t.dims)
                if kernel.time_dim in t.dims:
                    step_reach = max(step_reach, _reach(buf, layout.index(kernel.time_dim)))
                    if kernel.time_tile:
                        tile_reach = max(tile_reach, _span(buf))
                continue
            call.append(buf)
            call.extend(buf.stride(i) for i in range(len(t.dims)))
            if kernel.time_dim in t.dims:
                step_reach = max(step_reach, _reach(buf, t.dims.index(kernel.time_dim)))
                if kernel.time_tile:
                    tile_reach = max(tile_reach, _span(buf))
        call.extend(sizes[d] for d in kernel.size_dims)
        if kernel.chunked:
            call.append(extra["chunk_len"])
        if kernel.batch_dim:
            call.extend((self.varlen.cu_seqlens, self.varlen.order) if self.varlen is not None else (dummy, dummy))
            flags["VARLEN"] = self.varlen is not None
        if kernel.narrow_steps:
            flags["OFFS32"] = step_reach < OFFS32_LIMIT
        if kernel.time_tile:
            flags["TILE32"] = tile_reach < OFFS32_LIMIT
        if kernel.strategy == "matrix":
            flags["ALIGNED"] = tiles_aligned(kernel, call)
            check_tile_offsets(layer.name, kernel, call, sched)
        elif kernel.aligned_bases:
            flags["ALIGNED"] = bases_aligned(kernel, call)
        n_programs = math.prod(sizes[d] for d in kernel.grid_dims)
        if kernel.tiled_dim is not None:
            n_programs *= triton_cdiv(sizes[kernel.tiled_dim], blocks[kernel.tiled_dim])
        if compile_only:
            fn = self.c._fn(kernel)
            compiled = fn.warmup(*call, grid=(max(n_programs, 1),), **flags, **sched.constexprs(), **sched.launch_options())
            # and ready to launch: Triton loads the binary and builds its host launcher (a C
            # stub per signature, built by the host's compiler unless cached) on a kernel's first
            # launch, which would otherwise fall on the first call that splits (session 11's
            # first call at a new batch size, 157-499 ms; not yet confirmed on a GPU)
            init = getattr(compiled, "_init_handles", None)
            if init is not None:
                init()
            return compiled
        if n_programs:
            fn = self.c._fn(kernel)
            self.c.last_launched = self.rec.launch(fn, (n_programs,), call, dict(**flags, **sched.constexprs(), **sched.launch_options()))
            self.c.stats["launches"] += 1
        for where, name, slots, n in sums:  # a fixed order of additions: the same bits every run
            where[name] = self.rec.sum(slots, tuple(range(n)))


# Kernel.narrow_steps: a call whose inputs reach this many elements along time (length times
# stride) takes 64-bit step offsets (a module constant so tests can take both paths)
OFFS32_LIMIT = 2**31


def _reach(buf: Any, axis: int) -> int:
    """How many elements ``buf``'s offsets span along ``axis`` (length times stride)."""
    return buf.shape[axis] * abs(buf.stride(axis))


def _span(buf: Any) -> int:
    """The largest offset of an element of ``buf`` from its first, in elements."""
    return sum((n - 1) * abs(s) for n, s in zip(buf.shape, buf.stride()) if n)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def bases_aligned(kernel: Kernel, call: list) -> int:
    """The constexpr ``ALIGNED`` of ``kernel`` (``Kernel.aligned_bases``): bit i set where tensor
    i's strides along its grid dims and slots (the offsets Triton cannot see) are all multiples
    of 8 elements; the tensor itself Triton finds 16-byte aligned or not."""
    if not ALIGN_BASES:
        return 0
    bits = kernel.aligned_bases
    out = 0
    for t, strides in kernel.call_strides(call):
        if t.name in bits and all(s % 8 == 0 for d, s in strides if kernel.by_program(d)):
            out |= 1 << bits[t.name]
    return out
