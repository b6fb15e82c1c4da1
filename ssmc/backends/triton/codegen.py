"""Printing the kernel IR as Triton source: deterministic names, comments tying each line to its
IR node, a header with the IR hash, pipeline and versions."""

from __future__ import annotations

import re

from ssmc.backends.triton.buffer import IndentedBuffer
from ssmc.backends.triton.kernel_ir import (
    Compute,
    Kernel,
    Load,
    Prev,
    Reduce,
    ScanStep,
    Stmt,
    Store,
    TapAt,
    TapsShift,
    Tensor,
    TimeSum,
    WindowHead,
    WindowLoad,
    parts_of,
)
from ssmc.backends.triton.prelude import prelude_for
from ssmc.backends.triton.print_bidir import BidirPrinting
from ssmc.backends.triton.print_conv import ConvPrinting
from ssmc.backends.triton.print_held import HeldPrinting, on_fma_pipe
from ssmc.backends.triton.print_matrix import MatrixPrinter
from ssmc.backends.triton.print_varlen import VARLEN_PARAMS, print_steps
from ssmc.errors import LoweringError
from ssmc.ir.dims import Dims

GENERATOR_VERSION = "1"  # bump when the printer's output changes meaning


def _is_literal(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


class _Printer(HeldPrinting, BidirPrinting, ConvPrinting):
    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.axes = ("T",) + k.block_dims  # axis 0 is time
        self.rank = len(self.axes)
        self.tensors = {t.name: t for t in k.tensors}
        self.held = dict(k.held)  # register-held dims and their sizes
        self.dims_of = self.value_dims()
        self.index: dict[str, int] = {}  # register-held: the index of the value being printed
        self.tile: str | None = None  # prefetch: loads address the tile this many steps in
        self.joined: dict[str, tuple] = {}  # held bidir: sums over the tiled dim kept as one tile

    # --- shapes and indexing -------------------------------------------------------------

    def expand(self, name: str, axis: int) -> str:
        if self.rank == 1:
            return name
        idx = ", ".join(":" if i == axis else "None" for i in range(self.rank))
        return f"{name}[{idx}]"

    def shape(self, dims: Dims, with_time: bool) -> str:
        ext = ["BLOCK_T" if with_time and self.time_axis else "1"]
        ext += [f"BLOCK_{d}" if d in dims else "1" for d in self.k.block_dims]
        return "[" + ", ".join(ext) + "]"

    def address(self, tensor: Tensor, dims: Dims, step: int = 0) -> tuple[str, str | None]:
        """Pointer expression and mask of ``tensor`` at ``dims``. Inside the time loop, a tensor
        with the time dim is addressed as ``pb_<name>`` (a scalar pointer: the grid offsets and
        the current step, advanced each iteration) plus ``po_<name>`` (the block offsets,
        computed once before the loop): no 64-bit offset per element per step, and unit strides
        become immediate address offsets."""
        if self.k.time_dim in dims:
            masks = [self.expand("mask_T", 0)] if self.time_axis else []
            if self.k.strategy == "bidir" and not self.k.time_tile:
                masks = [f"valid_{step}"]
            masks += [self.expand("mask_" + d, self.axes.index(d)) for d in dims if d in self.k.block_dims]
            sign = "+" if self.k.strategy == "bidir" else ("-" if self.k.reverse else "+")
            if self.tile:  # prefetch: the tile ``self.tile`` steps after the loop's first step
                ptr = f"b_{tensor.name} {sign} ({self.tile} + {step}) * {tensor.name}_s_{self.k.time_dim}"
            else:
                ptr = f"pb_{tensor.name}"
                if step:  # the step-th of an unrolled tile
                    ptr += f" {sign} {step} * {tensor.name}_s_{self.k.time_dim}"
            ptr += f" + po_{tensor.name}" if self.has_offsets(dims) else ""
            ptr += "".join(f" + {self.index[d]} * {tensor.name}_s_{d}" for d in dims if self.index.get(d))
            return ptr, (" & ".join(masks) if masks else None)
        terms, masks = [], []
        for d in dims:
            stride = f"{tensor.name}_s_{d}"
            if d in self.held:  # register-held: this variable's index
                if self.index.get(d):
                    terms.append(f"{self.index[d]} * {stride}")
            elif d == "_K":  # bidir: this span's checkpoint
                terms.append(f"ck * {stride}")
            elif d == "_Q":  # bidir: chunk q's entry state in the scratch buffer
                terms.append(f"q * {stride}")
            elif d.startswith("_P"):  # deterministic mode: this program's slot of a sum
                terms.append(f"pid_{d[2:]} * {stride}")
            elif d in self.k.grid_dims:
                terms.append(f"pid_{d} * {stride}")
            else:
                ax = self.axes.index(d)
                terms.append(f"{self.expand('offs_' + d, ax)} * {stride}")
                masks.append(self.expand("mask_" + d, ax))
        ptr = tensor.name + (" + " + " + ".join(terms) if terms else "")
        return ptr, (" & ".join(masks) if masks else None)

    @staticmethod
    def store_mask(s: Store, mask: str | None) -> str | None:
        """``mask`` and the programs that store ``s`` (``only_first``, ``only_last``)."""
        conds = [f"(pid_{d} == 0)" for d in s.only_first] + [f"(pid_{d} == size_{d} - 1)" for d in s.only_last]
        return " & ".join(x for x in (mask, *conds) if x) or None

    def has_offsets(self, dims: Dims) -> bool:
        return self.time_axis or any(d in self.k.block_dims for d in dims)

    @property
    def time_axis(self) -> bool:
        """Whether values in the time loop span a tile of BLOCK_T steps along axis 0 (the tiled
        strategy; a time-tiled bidir kernel) rather than one step."""
        return self.k.strategy == "tiled" or self.k.time_tile

    def loop_pointers(self, buf: IndentedBuffer, first_step: str) -> None:
        """Scalar base pointers at the first step and the loop-invariant block offsets."""
        k = self.k
        sign = "-" if k.reverse else ""
        bits = k.aligned_bases
        for t, dims in self.moving_tensors():
            terms = [f"{'row' if d == k.batch_dim else 'pid'}_{d} * {t.name}_s_{d}" for d in dims if d in k.grid_dims]
            terms += [f"pid_{d[2:]} * {t.name}_s_{d}" for d in dims if d.startswith("_P")]  # a program's slot
            if t.name in bits:  # the grid offsets: a multiple of 8 elements where the host found so
                buf.line(f"ob_{t.name} = " + " + ".join(terms))
                buf.line(f"if ALIGNED & {1 << bits[t.name]}:")
                with buf.indent():
                    buf.line(f"ob_{t.name} = tl.multiple_of(ob_{t.name}, 8)")
                terms = [f"ob_{t.name}"]
            terms.append(f"({first_step}) * {t.name}_s_{k.time_dim}")
            buf.line(f"pb_{t.name} = {t.name} + " + " + ".join(terms))
            offs = [f"{self.expand('offs_' + d, self.axes.index(d))} * {t.name}_s_{d}" for d in dims if d in k.block_dims]
            if self.time_axis:  # (a time-tiled bidir kernel's tiles run forward in time)
                s_ = sign if k.strategy == "tiled" else ""
                offs.insert(0, f"{s_}{self.expand('idx_T', 0)} * {t.name}_s_{k.time_dim}")
            if offs and k.time_tile:
                # held through the loop, an offset per element of the tile: 32 bits where every
                # offset within each tensor of this call fits (TILE32), half the registers
                buf.if_else("TILE32", f"po_{t.name} = ({' + '.join(offs)}).to(tl.int32)", f"po_{t.name} = " + " + ".join(offs))
            elif offs:
                buf.line(f"po_{t.name} = " + " + ".join(offs))

    # --- statements ----------------------------------------------------------------------

    @staticmethod
    def load_or_zeros(buf: IndentedBuffer, t: Tensor, name: str, load: str, shape: str) -> None:
        """``name = load``; for an optional tensor, zeros of ``shape`` where it is not given."""
        if not t.optional:
            buf.line(f"{name} = {load}")
            return
        buf.if_else(f"HAS_{t.name}", f"{name} = {load}", f"{name} = tl.zeros({shape}, tl.float32)")

    def stmt(self, buf: IndentedBuffer, s: Stmt, step: int = 0, held: bool = True) -> None:
        if held and self.held:
            return self.stmt_held(buf, s, step)
        if isinstance(s, Load):
            t = self.tensors[s.tensor]
            ptr, mask = self.address(t, s.dims, step)
            m = f", mask={mask}, other=0.0" if mask else ""
            load = f"tl.load({ptr}{m}).to(tl.float32)"
            buf.line(f"# {s.comment}")
            self.load_or_zeros(buf, t, s.target, load, self.shape(s.dims, self.k.time_dim in s.dims))
        elif isinstance(s, WindowLoad):
            self.window_load(buf, s, step)
        elif isinstance(s, TapAt):
            self.tap_at(buf, s, step)
        elif isinstance(s, TapsShift):
            self.taps_shift(buf, s)
        elif isinstance(s, WindowHead):
            self.window_head(buf, s)
        elif isinstance(s, Compute):
            parts = parts_of(s.expr)
            if parts and not parts <= set(self.held):
                raise LoweringError(
                    f"{self.k.layer}: complex values (parts along {sorted(parts)}) are lowered with those dims "
                    f"held as registers (the sequential and chunked strategies), not in {self.k.name}'s tensor form"
                )
            expr = on_fma_pipe(s.expr) if self.k.exp2_fma == 1 else s.expr
            buf.line(f"{s.target} = {expr}  # {s.comment}")
        elif isinstance(s, TimeSum) and self.k.time_tile:  # a tile-shaped sum, reduced after the loop
            buf.line(f"# {s.comment}")
            buf.line(f"{s.target} = {s.target} + tl.where({self.expand('mask_T', 0)}, {s.source}, 0.0)")
        elif isinstance(s, TimeSum):
            buf.line(f"# {s.comment}")
            buf.line(f"{s.target} += tl.sum(tl.where({self.expand('mask_T', 0)}, {s.source}, 0.0), axis=0, keep_dims=True)")
        elif isinstance(s, Prev):  # pragma: no cover - the bidir loop emits these itself
            raise TypeError("prev outside a bidir kernel")
        elif isinstance(s, Reduce) and s.kind == "partial":
            buf.line(f"# {s.comment}  (this program's block; the store adds the blocks)")
            if s.dim in self.k.sum_even_dims:
                self.reduce(buf, s, "  # the blocks tile the dim exactly: no lane to mask")
            else:
                ax = self.axes.index(s.dim)
                buf.line(f"{s.target} = tl.sum(tl.where({self.expand('mask_' + s.dim, ax)}, {s.source}, 0.0), axis={ax}, keep_dims=True)")
        elif isinstance(s, Reduce):
            buf.line(f"# {s.comment}")
            self.reduce(buf, s)
        elif isinstance(s, ScanStep):
            self.scan(buf, s)
        elif isinstance(s, Store) and s.atomic:
            t = self.tensors[s.tensor]
            ptr, mask = self.address(t, s.dims, step)
            mask = self.store_mask(s, mask)
            buf.line(f"# {s.comment}  (added: a sum across programs)")
            # pointer and value have the same extents (the value's dims are the tensor's), but
            # either may be a scalar or size-1 block: bring both to one shape
            buf.line(f"p_add, v_add = tl.broadcast({ptr}, {s.value})")
            m = f", mask=tl.broadcast_to({mask}, p_add.shape)" if mask else ""
            buf.line(f"tl.atomic_add(p_add, v_add{m}, sem='relaxed')")
        elif isinstance(s, Store):
            t = self.tensors[s.tensor]
            ptr, mask = self.address(t, s.dims, step)
            mask = self.store_mask(s, mask)
            m = f", mask={mask}" if mask else ""
            buf.line(f"# {s.comment}")
            if t.partial:  # deterministic mode: this program's term of a sum, into its own slot
                buf.line(f"p_st, v_st = tl.broadcast({ptr}, {s.value})")
                m = f", mask=tl.broadcast_to({mask}, p_st.shape)" if mask else ""
                buf.line(f"tl.store(p_st, v_st.to({t.name}.dtype.element_ty){m})")
            elif self.rank > 1 and not self.has_offsets(s.dims):
                # a scalar pointer (no block dim); the value a size-1 block, or a scalar where all
                # it depends on was loaded through scalar pointers (tl.sum of a scalar compiles
                # in the interpreter only): one element either way
                one = "[" + ", ".join("1" for _ in range(self.rank)) + "]"
                buf.line(f"tl.store({ptr}, tl.sum({s.value} + tl.zeros({one}, tl.float32)).to({t.name}.dtype.element_ty){m})")
            else:
                buf.line(f"tl.store({ptr}, {s.value}.to({t.name}.dtype.element_ty){m})")
        else:  # pragma: no cover
            raise TypeError(s)

    def scan(self, buf: IndentedBuffer, s: ScanStep) -> None:
        if s.complex:  # the register-held printer prints complex steps (print_held.complex_step)
            raise LoweringError(
                f"{self.k.layer}: the complex scan (parts along {s.complex!r}) is lowered with its parts held as "
                f"registers (the sequential and chunked strategies), not in {self.k.name}'s tensor form"
            )
        carry = next(c for c in self.k.carries if c.name == s.carry)
        buf.line(f"# {s.comment}")
        if self.k.strategy == "sequential":
            buf.line(f"{s.carry} = {s.a} * {s.carry} + {s.b}")
            if s.product:
                buf.line(f"{s.product} = {s.a} * {s.product}")
            if s.target:
                buf.line(f"{s.target} = {s.carry}")
            return
        full = self.shape(carry.dims, True)
        mask_t = self.expand("mask_T", 0)

        def bcast(v: str) -> str:  # a constant operand has no shape to broadcast
            return f"tl.full({full}, {v}, tl.float32)" if _is_literal(v) else f"tl.broadcast_to({v}, {full})"

        buf.line(f"sa = tl.where({mask_t}, {bcast(s.a)}, 1.0)")
        buf.line(f"sb = tl.where({mask_t}, {bcast(s.b)}, 0.0)")
        buf.line("ca, cb = tl.associative_scan((sa, sb), 0, _ssmc_scan_combine)")
        target = s.target or "h_tile"
        buf.line(f"{target} = ca * {s.carry} + cb")
        last = self.expand("last_T", 0)
        buf.line(f"{s.carry} = tl.sum(tl.where({last}, {target}, 0.0), axis=0, keep_dims=True)")

    def loop_tiled(self, buf: IndentedBuffer) -> None:
        """One tile of BLOCK_T steps per iteration, scanned with tl.associative_scan."""
        k = self.k
        buf.line("idx_T = tl.arange(0, BLOCK_T).to(tl.int64)")
        buf.line("last_T = idx_T == BLOCK_T - 1")
        moving = self.moving_tensors()
        self.loop_pointers(buf, "t_lo + n_steps - 1" if k.reverse else "t_lo")
        buf.line("for t0 in tl.range(0, n_steps, BLOCK_T, num_stages=NUM_STAGES):")
        with buf.indent():
            buf.line("mask_T = t0 + idx_T < n_steps")
            for s in k.loop:
                self.stmt(buf, s)
            sign = "-=" if k.reverse else "+="
            for t, _ in moving:
                buf.line(f"pb_{t.name} {sign} BLOCK_T * {t.name}_s_{k.time_dim}")

    def loop_unrolled(self, buf: IndentedBuffer) -> None:
        """UNROLL steps per iteration, unrolled here: every load of the tile first (so the loads
        of all steps are in flight together; a store would keep later loads from moving above
        it), then the steps one after another in registers, then the stores. Full tiles need
        no time mask; the last L % UNROLL steps run one at a time. With ``prefetch``, each
        tile's loads are issued one tile ahead, into values the loop carries: a tile's work
        runs while the next tile's loads are in flight."""
        k = self.k
        u = k.unroll
        if k.chunked and k.align_start:
            buf.line("n_chunks = tl.cdiv(n_steps, chunk_len)  # chunks aligned at step 0, counted from the end")
            buf.line("i_end = n_steps - (n_chunks - 1 - pid__C) * chunk_len  # past n_steps: a shorter sequence's")
            buf.line("i1 = tl.minimum(i_end, n_steps)  # this program's steps: [i0, i1)")
            buf.line("i0 = tl.minimum(tl.maximum(i_end - chunk_len, 0), i1)")
        elif k.chunked:
            buf.line("i0 = pid__C * chunk_len  # this program's steps: [i0, i1)")
            buf.line("i1 = tl.minimum(i0 + chunk_len, n_steps)")
        else:
            buf.line("i0 = 0")
            buf.line("i1 = n_steps")
        self.loop_pointers(buf, "t_lo + n_steps - 1 - i0" if k.reverse else "t_lo + i0")
        buf.line(f"n_full = i1 - (i1 - i0) % {u}")
        if k.prefetch:
            # Each tile issues the next tile's loads before its own work; the last full tile
            # loads itself again (a clamped tile, no mask: masked loads there cost Mamba-1 ~75
            # registers). Addresses from loop-invariant bases (b_): no pointer arithmetic per
            # load, as the loop-carried pointers would need.
            for t, _ in self.moving_tensors():
                if t.role == "in":
                    buf.line(f"b_{t.name} = pb_{t.name}")
            buf.line("# the first tile's loads (raw: converted where used)")
            raw = self.issue_loads(buf, u, 0, "i0 < n_full")
            buf.line(f"for t0 in range(i0, n_full, {u}):")
            with buf.indent():
                for r in raw:
                    buf.line(f"q{r[1:]} = {r}")
                buf.line("# the next tile's loads, in flight during this tile's work")
                tn = f"(tl.minimum(t0 + {u}, n_full - {u}) - i0)"
                if k.narrow_steps:
                    buf.if_else("OFFS32", f"tn = {tn}.to(tl.int32)", f"tn = {tn}.to(tl.int64)",
                                "  # every step offset of this call fits in 32 bits")
                else:
                    buf.line(f"tn = {tn}.to(tl.int64)  # 64-bit: tn * stride may pass 2^31")
                self.tile = "tn"
                try:
                    self.issue_loads(buf, u, 0, None)
                finally:
                    self.tile = None
                self.unrolled_body(buf, u, from_raw=True)
        else:
            buf.line(f"for t0 in range(i0, n_full, {u}):")
            with buf.indent():
                self.unrolled_body(buf, u)
        buf.line("for t0 in range(n_full, i1):")
        with buf.indent():
            self.unrolled_body(buf, 1)

    def unrolled_body(self, buf: IndentedBuffer, u: int, from_raw: bool = False) -> None:
        """``u`` steps. Without ``from_raw``, every load of the tile first, the stores last;
        with it (prefetch), the loads were issued a tile ahead: each step converts its raw
        values where they are used and stores its results."""
        k = self.k
        loop_vars = {s.target for s in k.loop if not isinstance(s, Store) and s.target}

        def ren(text: str, j: int) -> str:
            return re.sub(r"\b(v\d+)(?=\b|__)", lambda m: f"{m.group(1)}_{j}" if m.group(1) in loop_vars else m.group(1), text)

        def emit(out: IndentedBuffer, stmts: list[Stmt], j: int) -> None:
            if not stmts:
                return
            sub = IndentedBuffer()
            for run in self.runs(stmts):
                self.emit_run(sub, run, j, from_raw)
            for line in sub.getvalue().splitlines():
                out.line(ren(line, j))

        if from_raw:
            for j in range(u):
                emit(buf, list(k.loop), j)
        else:
            stores = IndentedBuffer()
            for j in range(u):
                emit(buf, [st for st in k.loop if isinstance(st, Load)], j)
            for j in range(u):
                emit(buf, [st for st in k.loop if not isinstance(st, (Load, Store))], j)
                emit(stores, [st for st in k.loop if isinstance(st, Store)], j)
            buf.lines(stores.getvalue().splitlines())
        for t, _ in self.moving_tensors():
            buf.line(f"pb_{t.name} {'-=' if k.reverse else '+='} {u} * {t.name}_s_{k.time_dim}")

    def moving_tensors(self) -> list[tuple[Tensor, Dims]]:
        """Tensors read or written in the time loop, with the dims they are accessed at."""
        out: dict[str, tuple[Tensor, Dims]] = {}
        for s in self.k.loop:
            if isinstance(s, (Load, Store, WindowLoad)) and self.k.time_dim in s.dims:
                out.setdefault(s.tensor, (self.tensors[s.tensor], s.dims))
        return list(out.values())

    # --- the kernel ----------------------------------------------------------------------

    def carry_init(self, buf: IndentedBuffer, c, idx: dict[str, int], first: bool) -> None:
        """The state ``c`` (at register-held index ``idx``) before the time loop."""
        k = self.k
        name = self.sub(c.name, idx)
        shape = self.shape(c.dims, False)
        init = f"tl.broadcast_to({self.sub(c.init, idx)}, {shape})" if c.init else f"tl.zeros({shape}, tl.float32)"
        buf.line(f"{name} = {init}" + ("  # the state, carried across time tiles" if first else ""))
        recomputed = any(isinstance(s, ScanStep) and s.checkpointed and s.carry == c.name for s in k.loop)
        if k.chunked and k.role == "full" and not recomputed:  # (a recomputed scan: from checkpoints)
            entry = self.tensors.get("hin_carried") or self.tensors["hin"]  # beside a bidir kernel's checkpoints
            ptr, mask = self.address(entry, ("_C",) + c.dims)
            if first:
                buf.line("# chunks after the first start from the state the chunk-combine kernel computed")
            m = f"({mask}) & (pid__C > 0)" if mask else "pid__C > 0"
            buf.line(f"h_in = tl.load({ptr}, mask={m}, other=0.0)")
            buf.line(f"{name} = tl.where(pid__C == 0, {name}, h_in)")
        if k.role == "states":
            buf.line(f"{name} = tl.where(pid__C == 0, {name}, 0.0)" + ("  # later chunks: from zero" if first else ""))
            for st in k.loop:
                if isinstance(st, ScanStep) and st.carry == c.name and st.product:
                    note = "  # prod of a over the chunk" if first else ""
                    one = "0.0" if st.complex and idx.get(st.complex) == 1 else "1.0"  # complex: 1 + 0i
                    buf.line(f"{self.sub(st.product, idx)} = tl.full({shape}, {one}, tl.float32){note}")

    def params(self) -> list[str]:
        out = []
        for t in self.k.tensors:
            out.append(", ".join([t.name] + [f"{t.name}_s_{d}" for d in t.dims]) + ",")
        sizes = [f"size_{d}" for d in self.k.size_dims] + (["chunk_len"] if self.k.chunked else [])
        if sizes:  # a kernel over values without dims (a scalar parameter's gradient) has none
            out.append(", ".join(sizes) + ",")
        if self.k.batch_dim:
            out.append(VARLEN_PARAMS)
        flags = [f"HAS_{t.name}: tl.constexpr" for t in self.k.tensors if t.optional]
        if self.k.batch_dim:
            flags.append("VARLEN: tl.constexpr")
        if self.k.narrow_steps:
            flags.append("OFFS32: tl.constexpr")
        if self.k.time_tile:
            flags.append("TILE32: tl.constexpr")
        if self.k.aligned_bases:
            flags.append("ALIGNED: tl.constexpr")  # a bit per tensor (Kernel.aligned_bases)
        blocks = ["NUM_STAGES: tl.constexpr", "BLOCK_T: tl.constexpr"]
        if self.k.strategy == "bidir":
            blocks.append("SUB: tl.constexpr")
        blocks += [f"EVEN_{d}: tl.constexpr" for d in self.k.even_dims + self.k.sum_even_dims]
        blocks += [f"BLOCK_{d}: tl.constexpr" for d in self.k.block_dims]
        out.append(", ".join(flags + blocks) + ",")
        return out

    def reduce(self, buf: IndentedBuffer, s: Reduce, note: str = "") -> None:
        """``s`` summed unmasked where ``EVEN_<dim>`` says the blocks tile its dim exactly, else
        with the block's lanes past the dim masked out (a mean divides by the dim's size)."""
        ax = self.axes.index(s.dim)
        div = f" / size_{s.dim}" if s.kind == "mean" else ""
        masked = f"tl.where({self.expand('mask_' + s.dim, ax)}, {s.source}, 0.0)"
        buf.if_else(f"EVEN_{s.dim}", f"{s.target} = tl.sum({s.source}, axis={ax}, keep_dims=True){div}",
                    f"{s.target} = tl.sum({masked}, axis={ax}, keep_dims=True){div}", note)

    def kernel(self, buf: IndentedBuffer) -> None:
        k = self.k
        buf.line(f"@triton.jit(do_not_specialize={self.k.varying_ints()!r})")
        buf.line(f"def {k.name}(")
        with buf.indent():
            buf.lines(self.params())
        buf.line("):")
        with buf.indent():
            self.body(buf)

    def body(self, buf: IndentedBuffer) -> None:
        k = self.k
        buf.line("pid = tl.program_id(0).to(tl.int64)")
        if k.tiled_dim:
            d = k.tiled_dim
            buf.line(f"nblocks_{d} = tl.cdiv(size_{d}, BLOCK_{d})")
            buf.line(f"pid_{d} = pid % nblocks_{d}")
            buf.line(f"rest = pid // nblocks_{d}")
        else:
            buf.line("rest = pid")
        for d in reversed(k.grid_dims):
            buf.line(f"pid_{d} = rest % size_{d}")
            buf.line(f"rest = rest // size_{d}")
        for d in k.block_dims:
            base = f"pid_{d} * BLOCK_{d} + " if d == k.tiled_dim else ""
            buf.line(f"offs_{d} = {base}tl.arange(0, BLOCK_{d}).to(tl.int64)")
            if d in k.even_dims:
                whole = "the block is the whole dim" if d in k.full_dims else "the blocks tile the dim exactly"
                buf.if_else(f"EVEN_{d}", f"mask_{d} = tl.full([BLOCK_{d}], 1, tl.int1)", f"mask_{d} = offs_{d} < size_{d}",
                            f"  # {whole}: no lane is masked")
            else:
                # the tensor form's tiled dim, always masked: unmasked, Mamba-1 ran 2.3x slower on
                # an H100 (bench/NOTES.md; likely a vectorized load layout converted every step)
                buf.line(f"mask_{d} = offs_{d} < size_{d}")
        if k.time_dim is not None:
            buf.line("")
            print_steps(buf, k.batch_dim, k.time_dim)

        buf.line("")
        buf.line("# loop-invariant values")
        for s in k.pre:
            self.stmt(buf, s)
        for c in k.carries:
            for i, idx in enumerate(self.combos(c.dims)):
                self.index = idx
                self.carry_init(buf, c, idx, first=i == 0)
            self.index = {}
        for st in k.loop:
            if isinstance(st, TimeSum):
                for idx in self.combos(st.dims):
                    buf.line(f"{self.sub(st.target, idx)} = tl.zeros({self.shape(st.dims, k.time_tile)}, tl.float32)  # a sum over time")
        if k.time_dim is not None and k.loop:
            buf.line("")
            buf.line(f"# the time loop over {k.time_dim}" + (" in tiles of BLOCK_T steps" if k.time_tile else ", from the end" if k.reverse else ""))
            if k.strategy == "sequential":
                self.loop_unrolled(buf)
            elif k.strategy == "bidir" and k.time_tile:
                self.loop_time_tiles(buf)
            elif k.strategy == "bidir":
                self.loop_bidir(buf)
            else:
                self.loop_tiled(buf)
        if k.time_tile:
            for st in k.loop:
                if isinstance(st, TimeSum):
                    buf.line(f"{st.target} = tl.sum({st.target}, axis=0, keep_dims=True)  # the tile's steps added")
        if k.post:
            buf.line("")
            buf.line("# final states")
            for s in k.post:
                self.stmt(buf, s)


def generate(kernel: Kernel, ir_hash: str, pipeline: str, versions: dict[str, str]) -> str:
    """Triton source for ``kernel``: header, imports, helpers, the kernel."""
    buf = IndentedBuffer()
    buf.line("# Generated by ssmc; do not edit. Regenerated from the IR on every compile.")
    buf.line(f"# IR hash: {ir_hash}   pipeline: {pipeline}")
    buf.line("# versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    for h in kernel.header:
        buf.line(f"# {h}")
    buf.line("")
    buf.line("import triton")
    buf.line("import triton.language as tl")
    body = IndentedBuffer()
    if kernel.strategy == "matrix":
        MatrixPrinter(kernel).kernel(body)
    else:
        _Printer(kernel).kernel(body)
    helpers = prelude_for(body.getvalue())
    if helpers:
        buf.line("")
        for line in helpers.splitlines():
            buf.line(line)
    buf.line("")
    buf.line("")
    buf.lines(body.getvalue().splitlines())
    return buf.getvalue()
