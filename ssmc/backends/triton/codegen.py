"""Printing the kernel IR as Triton source: deterministic names, comments tying each line to its
IR node, a header with the IR hash, pipeline and versions."""

from __future__ import annotations

import itertools
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
    Tensor,
    TimeSum,
)
from ssmc.backends.triton.prelude import prelude_for
from ssmc.ir.dims import Dims

GENERATOR_VERSION = "1"  # bump when the printer's output changes meaning


def _is_literal(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


class _Printer:
    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.axes = ("T",) + k.block_dims  # axis 0 is time
        self.rank = len(self.axes)
        self.tensors = {t.name: t for t in k.tensors}
        self.held = dict(k.held)  # register-held dims and their sizes
        self.dims_of = self.value_dims()
        self.index: dict[str, int] = {}  # register-held: the index of the value being printed
        self.tile: str | None = None  # prefetch: loads address the tile this many steps in

    # --- register-held dims ----------------------------------------------------------------

    def value_dims(self) -> dict[str, Dims]:
        """The dims of every named in-kernel value (carries and products included)."""
        k = self.k
        out: dict[str, Dims] = {c.name: c.dims for c in k.carries}
        for s in k.pre + k.loop + k.post:
            if isinstance(s, Load):
                out[s.target] = s.dims
            elif isinstance(s, Compute):
                out[s.target] = s.dims or ()
            elif isinstance(s, Reduce):
                out[s.target] = tuple(d for d in out.get(s.source, ()) if d != s.dim)
            elif isinstance(s, ScanStep):
                dims = out.get(s.carry, ())
                for name in (s.target, s.product):
                    if name:
                        out[name] = dims
        return out

    def combos(self, dims: Dims) -> list[dict[str, int]]:
        """Every index of the register-held dims among ``dims`` ([{}] if none)."""
        hd = [(d, n) for d, n in self.k.held if d in dims]
        return [dict(zip([d for d, _ in hd], idx)) for idx in itertools.product(*(range(n) for _, n in hd))]

    def sub(self, text: str, index: dict[str, int]) -> str:
        """``text`` with each value name replaced by its variable at ``index`` (``v7__3``)."""
        def one(m: re.Match) -> str:
            name = m.group(1)
            own = [d for d, _ in self.k.held if d in self.dims_of.get(name, ())]
            return name + ("__" + "_".join(str(index[d]) for d in own) if own else "")

        return re.sub(r"\b([vhp]\d+)\b", one, text) if self.held else text

    def stmt_held(self, buf: IndentedBuffer, s: Stmt, step: int) -> None:
        """``s`` once per index of its register-held dims."""
        if isinstance(s, Reduce) and s.dim in self.held:
            n = self.held[s.dim]
            rest = tuple(d for d in self.dims_of.get(s.source, ()) if d != s.dim)
            buf.line(f"# {s.comment}  (a chain of adds: the products before it fuse into FMAs)")
            for idx in self.combos(rest):
                expr = " + ".join(self.sub(s.source, {**idx, s.dim: i}) for i in range(n))
                if s.kind == "mean":
                    expr = f"({expr}) / {float(n)!r}"
                buf.line(f"{self.sub(s.target, idx)} = {expr}")
            return
        if self.tile_io(buf, s):
            return
        if isinstance(s, (Load, Store)):
            dims = s.dims
        elif isinstance(s, ScanStep):
            dims = self.dims_of.get(s.carry, ())
        else:
            dims = self.dims_of.get(s.target, ())
        for i, idx in enumerate(self.combos(dims)):
            sub = IndentedBuffer()
            self.index = idx
            try:
                self.stmt(sub, s, step, held=False)
            finally:
                self.index = {}
            for line in sub.getvalue().splitlines():
                if i and line.lstrip().startswith("#"):
                    continue  # the comment once, on the first index
                buf.line(self.sub(re.sub(r"\s+#.*$", "", line) if i else line, idx))

    def tile_io(self, buf: IndentedBuffer, s: Stmt) -> bool:
        """A load or store outside the time loop of a tensor over the tiled dim and one
        register-held dim of a power-of-two size (h0, A, the final state): one [1, block, P]
        tile, contiguous along the held dim when its stride is 1, split into (or joined from)
        the P variables with tl.split / tl.join, instead of P strided accesses. Returns False
        where it does not apply."""
        k = self.k
        if not isinstance(s, (Load, Store)) or (isinstance(s, Store) and s.atomic):
            return False
        hd = [(d, n) for d, n in k.held if d in s.dims]
        if k.time_dim in s.dims or k.tiled_dim not in s.dims or len(hd) != 1 or self.rank != 2:
            return False
        d, n = hd[0]
        if n < 2 or n & (n - 1):
            return False
        t = self.tensors[s.tensor]
        base, mask = self.address(t, s.dims)
        ptr = f"({base})[:, :, None] + tl.arange(0, {n})[None, None, :] * {t.name}_s_{d}"
        m = f", mask=({mask})[:, :, None]" if mask else ""
        block = f"BLOCK_{k.tiled_dim}"
        stem = f"w{(s.target if isinstance(s, Load) else s.value)[1:]}_"
        buf.line(f"# {s.comment}  (one tile over {d}, split into its {n} variables)" if isinstance(s, Load)
                 else f"# {s.comment}  (the {n} variables joined into one tile over {d})")

        def split(name: str, size: int, out: IndentedBuffer) -> dict[int, str]:
            if size == 1:
                return {0: name}
            a, b = name + "0", name + "1"  # even and odd indices
            src = name if size == 2 else f"tl.reshape({name}, [1, {block}, {size // 2}, 2])"
            out.line(f"{a}, {b} = tl.split({src})")
            left, right = split(a, size // 2, out), split(b, size // 2, out)
            return {**{2 * i: v for i, v in left.items()}, **{2 * i + 1: v for i, v in right.items()}}

        def join(names: list[str], name: str) -> str:
            if len(names) == 1:
                return names[0]
            a, b = join(names[0::2], name + "0"), join(names[1::2], name + "1")
            size = len(names)
            expr = f"tl.join({a}, {b})" if size == 2 else f"tl.reshape(tl.join({a}, {b}), [1, {block}, {size}])"
            buf.line(f"{name} = {expr}")
            return name

        if isinstance(s, Store):
            tile = join([self.sub(s.value, {d: i}) for i in range(n)], stem)
            buf.line(f"tl.store({ptr}, {tile}.to({t.name}.dtype.element_ty){m})")
            return True
        body = IndentedBuffer()
        body.line(f"{stem} = tl.load({ptr}{m}, other=0.0).to(tl.float32)" if m else f"{stem} = tl.load({ptr}).to(tl.float32)")
        leaves = split(stem, n, body)
        for i in range(n):
            body.line(f"{self.sub(s.target, {d: i})} = {leaves[i]}")
        if t.optional:
            buf.line(f"if HAS_{t.name}:")
            with buf.indent():
                buf.lines(body.getvalue().splitlines())
            buf.line("else:")
            with buf.indent():
                for i in range(n):
                    buf.line(f"{self.sub(s.target, {d: i})} = tl.zeros({self.shape(s.dims, False)}, tl.float32)")
        else:
            buf.lines(body.getvalue().splitlines())
        return True

    # --- shapes and indexing -------------------------------------------------------------

    def expand(self, name: str, axis: int) -> str:
        if self.rank == 1:
            return name
        idx = ", ".join(":" if i == axis else "None" for i in range(self.rank))
        return f"{name}[{idx}]"

    def shape(self, dims: Dims, with_time: bool) -> str:
        ext = ["BLOCK_T" if with_time and self.k.strategy == "tiled" else "1"]
        ext += [f"BLOCK_{d}" if d in dims else "1" for d in self.k.block_dims]
        return "[" + ", ".join(ext) + "]"

    def address(self, tensor: Tensor, dims: Dims, step: int = 0) -> tuple[str, str | None]:
        """Pointer expression and mask of ``tensor`` at ``dims``. Inside the time loop, a tensor
        with the time dim is addressed as ``pb_<name>`` (a scalar pointer: the grid offsets and
        the current step, advanced each iteration) plus ``po_<name>`` (the block offsets,
        computed once before the loop): no 64-bit offset per element per step, and unit strides
        become immediate address offsets."""
        if self.k.time_dim in dims:
            masks = [self.expand("mask_T", 0)] if self.k.strategy == "tiled" else []
            if self.k.strategy == "bidir":
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
            elif d == "_C" and d not in self.k.grid_dims:  # bidir: this span's checkpoint
                terms.append(f"ck * {stride}")
            elif d == "_Q":  # bidir: chunk q's entry state in the scratch buffer
                terms.append(f"q * {stride}")
            elif d in self.k.grid_dims:
                terms.append(f"pid_{d} * {stride}")
            else:
                ax = self.axes.index(d)
                terms.append(f"{self.expand('offs_' + d, ax)} * {stride}")
                masks.append(self.expand("mask_" + d, ax))
        ptr = tensor.name + (" + " + " + ".join(terms) if terms else "")
        return ptr, (" & ".join(masks) if masks else None)

    def has_offsets(self, dims: Dims) -> bool:
        return self.k.strategy == "tiled" or any(d in self.k.block_dims for d in dims)

    def loop_pointers(self, buf: IndentedBuffer, first_step: str) -> None:
        """Scalar base pointers at the first step and the loop-invariant block offsets."""
        k = self.k
        sign = "-" if k.reverse else ""
        for t, dims in self.moving_tensors():
            terms = [f"{'row' if d == k.batch_dim else 'pid'}_{d} * {t.name}_s_{d}" for d in dims if d in k.grid_dims]
            terms.append(f"({first_step}) * {t.name}_s_{k.time_dim}")
            buf.line(f"pb_{t.name} = {t.name} + " + " + ".join(terms))
            offs = [f"{self.expand('offs_' + d, self.axes.index(d))} * {t.name}_s_{d}" for d in dims if d in k.block_dims]
            if k.strategy == "tiled":
                offs.insert(0, f"{sign}{self.expand('idx_T', 0)} * {t.name}_s_{k.time_dim}")
            if offs:
                buf.line(f"po_{t.name} = " + " + ".join(offs))

    # --- statements ----------------------------------------------------------------------

    def stmt(self, buf: IndentedBuffer, s: Stmt, step: int = 0, held: bool = True) -> None:
        if held and self.held:
            return self.stmt_held(buf, s, step)
        if isinstance(s, Load):
            t = self.tensors[s.tensor]
            ptr, mask = self.address(t, s.dims, step)
            m = f", mask={mask}, other=0.0" if mask else ""
            load = f"tl.load({ptr}{m}).to(tl.float32)"
            buf.line(f"# {s.comment}")
            if t.optional:
                buf.line(f"if HAS_{t.name}:")
                with buf.indent():
                    buf.line(f"{s.target} = {load}")
                buf.line("else:")
                with buf.indent():
                    with_time = self.k.time_dim in s.dims
                    buf.line(f"{s.target} = tl.zeros({self.shape(s.dims, with_time)}, tl.float32)")
            else:
                buf.line(f"{s.target} = {load}")
        elif isinstance(s, Compute):
            buf.line(f"{s.target} = {s.expr}  # {s.comment}")
        elif isinstance(s, TimeSum):
            buf.line(f"# {s.comment}")
            buf.line(f"{s.target} += tl.sum(tl.where({self.expand('mask_T', 0)}, {s.source}, 0.0), axis=0, keep_dims=True)")
        elif isinstance(s, Prev):  # pragma: no cover - the bidir loop emits these itself
            raise TypeError("prev outside a bidir kernel")
        elif isinstance(s, Reduce) and s.kind == "partial":
            ax = self.axes.index(s.dim)
            buf.line(f"# {s.comment}  (this program's block; the store adds the blocks)")
            masked = f"tl.where({self.expand('mask_' + s.dim, ax)}, {s.source}, 0.0)"
            buf.line(f"{s.target} = tl.sum({masked}, axis={ax}, keep_dims=True)")
        elif isinstance(s, Reduce):
            ax = self.axes.index(s.dim)
            div = f" / size_{s.dim}" if s.kind == "mean" else ""
            masked = f"tl.where({self.expand('mask_' + s.dim, ax)}, {s.source}, 0.0)"
            buf.line(f"# {s.comment}")
            buf.line(f"if EVEN_{s.dim}:")
            with buf.indent():
                buf.line(f"{s.target} = tl.sum({s.source}, axis={ax}, keep_dims=True){div}")
            buf.line("else:")
            with buf.indent():
                buf.line(f"{s.target} = tl.sum({masked}, axis={ax}, keep_dims=True){div}")
        elif isinstance(s, ScanStep):
            self.scan(buf, s)
        elif isinstance(s, Store) and s.atomic:
            t = self.tensors[s.tensor]
            ptr, mask = self.address(t, s.dims, step)
            first = " & ".join(f"(pid_{d} == 0)" for d in s.only_first)
            mask = " & ".join(x for x in (mask, first) if x)
            buf.line(f"# {s.comment}  (added: a sum across programs)")
            # pointer and value have the same extents (the value's dims are the tensor's), but
            # either may be a scalar or size-1 block: bring both to one shape
            buf.line(f"p_add, v_add = tl.broadcast({ptr}, {s.value})")
            m = f", mask=tl.broadcast_to({mask}, p_add.shape)" if mask else ""
            buf.line(f"tl.atomic_add(p_add, v_add{m}, sem='relaxed')")
        elif isinstance(s, Store):
            t = self.tensors[s.tensor]
            ptr, mask = self.address(t, s.dims, step)
            m = f", mask={mask}" if mask else ""
            buf.line(f"# {s.comment}")
            if self.rank > 1 and not self.has_offsets(s.dims):
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

    def loop_bidir(self, buf: IndentedBuffer) -> None:
        """Chunks of UNROLL steps, in the carried scan's direction. Per chunk: the checkpointed
        scan runs its UNROLL steps from the chunk's entry state (phase A, in its direction),
        each state kept in a register of its own; then every other statement runs the steps
        the other way (phase B), reading those states, recomputing the rest. The entry states:
        checkpoints every SUB chunks come from memory (the chunk-states pass); phase A0 runs the
        scan over those SUB chunks first, leaving each chunk's entry state in ``scr`` (a small,
        cache-resident buffer)."""
        k = self.k
        u = k.unroll
        fwd = next((s for s in k.loop if isinstance(s, ScanStep) and s.checkpointed), None)
        deps = _dependencies(k.loop, fwd) if fwd is not None else []
        moving = self.moving_tensors()
        self.loop_pointers(buf, "t_lo")
        for t, _ in moving:
            buf.line(f"pb0_{t.name} = pb_{t.name}")
        order = list(range(u))
        b_order = order if (fwd is not None and fwd.reverse) or (fwd is None and not k.reverse) else order[::-1]

        def chunk_start(first: str, index: str) -> None:
            buf.line(f"t0 = {first} + {index} * {u}")
            for j in range(u):
                buf.line(f"valid_{j} = (t0 + {j} >= 0) & (t0 + {j} < n_steps)")
            for t, _ in moving:
                buf.line(f"pb_{t.name} = pb0_{t.name} + t0 * {t.name}_s_{k.time_dim}")

        if fwd is None:
            buf.line(f"n_chunks = tl.cdiv(n_steps, {u})")
            buf.line("for it in range(0, n_chunks):")
            with buf.indent():
                buf.line("c = n_chunks - 1 - it" if k.reverse else "c = it")
                chunk_start("0", "c")
                self.steps(buf, list(k.loop), b_order, "", None)
            return
        carry = next(c for c in k.carries if c.name == fwd.carry)
        buf.line(f"SPAN = SUB * {u}  # steps between checkpoints")
        buf.line("n_spans = tl.cdiv(n_steps, SPAN)")
        buf.line(f"init_{fwd.carry} = {fwd.carry}")
        buf.line("for it in range(0, n_spans):")
        with buf.indent():
            buf.line("c = n_spans - 1 - it" if k.reverse else "c = it")
            if k.align_end:  # spans end at n: the first one (in time) is cut at step 0
                buf.line("s0 = n_steps - (n_spans - c) * SPAN")
                buf.line("ck = n_spans - 1 - c  # checkpoints count from the end")
            else:
                buf.line("s0 = c * SPAN")
                buf.line("ck = c")
            ptr, mask = self.address(self.tensors["hin"], ("_C",) + carry.dims)
            buf.line(f"h_ck = tl.load({ptr}, mask=({mask}) & (ck > 0), other=0.0)")
            buf.line(f"{fwd.carry} = tl.where(ck == 0, init_{fwd.carry}, h_ck)")
            scr, smask = self.address(self.tensors["scr"], ("_Q",) + carry.dims)
            a_order = order[::-1] if fwd.reverse else order
            # chunk q (counted in the forward scan's direction) starts at step s0 + index * UNROLL
            index = "(SUB - 1 - q)" if fwd.reverse else "q"
            buf.line("# phase A0: the entry state of each chunk of this span")
            buf.line("for q in range(0, SUB):")
            with buf.indent():
                buf.line(f"tl.store({scr}, {fwd.carry}, mask={smask})")
                chunk_start("s0", index)
                self.steps(buf, deps, a_order, "z", fwd)
            buf.line("for qq in range(0, SUB):")
            with buf.indent():
                buf.line("q = SUB - 1 - qq")
                chunk_start("s0", index)
                buf.line(f"{fwd.carry} = tl.load({scr}, mask={smask}, other=0.0)")
                buf.line(f"cin_{fwd.carry} = {fwd.carry}")
                buf.line("# phase A: the forward scan's states of this chunk")
                self.steps(buf, deps, a_order, "a", fwd)
                buf.line("# phase B: the steps the other way")
                self.steps(buf, [s for s in k.loop if s is not fwd], b_order, "", fwd)

    def steps(self, buf: IndentedBuffer, stmts: list, order: list[int], tag: str, fwd) -> None:
        """``stmts`` for each step of ``order`` (loads of every step first), variables renamed
        per step (``v3`` -> ``v3_a2`` in phase A, ``v3_2`` in B)."""
        k = self.k
        loop_vars = {s.target for s in k.loop if not isinstance(s, Store) and s.target}
        u = k.unroll

        def ren(text: str, j: int) -> str:
            return re.sub(r"\b(v\d+)\b", lambda m: f"{m.group(1)}_{tag}{j}" if m.group(1) in loop_vars else m.group(1), text)

        def emit(st, j: int) -> None:
            sub = IndentedBuffer()
            if isinstance(st, ScanStep):
                sub.line(f"# {st.comment}")
                if st is fwd and tag in ("a", "z"):
                    sub.line(f"{st.carry} = tl.where(valid_{j}, {st.a} * {st.carry} + {st.b}, {st.carry})")
                    sub.line(f"{st.target} = {st.carry}")
                else:
                    sub.line(f"cin_{st.carry}_{j} = {st.carry}")
                    sub.line(f"{st.carry} = tl.where(valid_{j}, {st.a} * {st.carry} + {st.b}, {st.carry})")
                    sub.line(f"{st.target} = {st.carry}")
            elif isinstance(st, Prev):
                sub.line(f"# {st.comment}")
                if fwd is not None and st.carry == fwd.carry:
                    back = j + 1 if fwd.reverse else j - 1
                    src = f"{st.scan}_a{back}" if 0 <= back < u else f"cin_{st.carry}"
                    sub.line(f"{st.target} = {src}")
                else:
                    sub.line(f"{st.target} = cin_{st.carry}_{j}")
            elif isinstance(st, TimeSum):
                sub.line(f"# {st.comment}")
                sub.line(f"{st.target} = {st.target} + tl.where(valid_{j}, {st.source}, 0.0)")
            else:
                self.stmt(sub, st, step=j)
            for line in sub.getvalue().splitlines():
                if isinstance(st, TimeSum):  # the accumulator keeps its name across steps
                    buf.line(re.sub(rf"\b{st.source}\b(?! =)", ren(st.source, j), line) if not line.lstrip().startswith("#") else line)
                elif isinstance(st, Prev) and fwd is not None and st.carry == fwd.carry:
                    target = ren(st.target, j)
                    buf.line(line.replace(f"{st.target} =", f"{target} =", 1))
                else:
                    buf.line(ren(line, j))

        hoist = k.hoist_loads or tag == "a"  # phase B holds more per step: its loads stay in place
        if hoist:
            for j in order:
                for st in stmts:
                    if isinstance(st, Load):
                        emit(st, j)
        for j in order:
            if fwd is not None and tag == "":
                buf.line(f"{fwd.target}_{j} = {fwd.target}_a{j}  # the forward state, from phase A")
            for st in stmts:
                if not isinstance(st, Load) or not hoist:
                    emit(st, j)

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
        if k.chunked:
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
                buf.line(f"tn = (tl.minimum(t0 + {u}, n_full - {u}) - i0).to(tl.int64)  # 64-bit: tn * stride may pass 2^31")
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

    def issue_loads(self, buf: IndentedBuffer, u: int, ahead: int, more: str | None) -> list[str]:
        """The raw loads of the tile ``ahead`` steps on, masked by ``more`` if given; returns
        their names (``r<value>_<step>[__<index>]``; ``__w<k>``: the k-th 32-bit pair of a
        16-bit row)."""
        names = []
        for j in range(u):
            for s in self.k.loop:
                if not isinstance(s, Load):
                    continue
                t = self.tensors[s.tensor]
                base = f"r{s.target[1:]}_{j}"
                pairs = self.pair_dim(s)
                if pairs:  # one pointer per row, the pairs at immediate offsets from it
                    d, n = pairs
                    ptr, _ = self.address(t, s.dims, j + ahead)
                    buf.line(f"pw = _ssmc_pair_ptr({ptr})  # {n} values, two per load")
                    for w in range(n // 2):
                        names.append(f"{base}__w{w}")
                        m = f", mask={more}, other=0" if more else ""
                        buf.line(f"{names[-1]} = tl.load(pw{f' + {w}' if w else ''}{m})")
                    continue
                if not self.has_offsets(s.dims) and self.combos(s.dims) != [{}]:  # a row: one pointer
                    ptr, _ = self.address(t, s.dims, j + ahead)
                    buf.line(f"pw = {ptr}")
                    for idx in self.combos(s.dims):
                        name = base + self.sub(s.target, idx)[len(s.target):]
                        names.append(name)
                        off = " + ".join(f"{i} * {t.name}_s_{dd}" for dd, i in idx.items() if i)
                        m = f", mask={more}, other=0.0" if more else ""
                        load = f"tl.load(pw{' + ' + off if off else ''}{m})"
                        if t.optional:
                            buf.line(f"if HAS_{t.name}:")
                            with buf.indent():
                                buf.line(f"{name} = {load}")
                            buf.line("else:")
                            with buf.indent():
                                buf.line(f"{name} = tl.zeros([1, 1], tl.float32)")
                        else:
                            buf.line(f"{name} = {load}")
                    continue
                for idx in self.combos(s.dims):
                    self.index = idx
                    ptr, mask = self.address(t, s.dims, j + ahead)
                    self.index = {}
                    name = base + self.sub(s.target, idx)[len(s.target):]
                    names.append(name)
                    m = " & ".join(f"({x})" for x in (mask, more) if x)
                    load = f"tl.load({ptr}, mask={m}, other=0.0)" if m else f"tl.load({ptr})"
                    if t.optional:
                        buf.line(f"if HAS_{t.name}:")
                        with buf.indent():
                            buf.line(f"{name} = {load}")
                        buf.line("else:")
                        with buf.indent():
                            buf.line(f"{name} = tl.zeros({self.shape(s.dims, True)}, tl.float32)")
                    else:
                        buf.line(f"{name} = {load}")
        return names

    def pair_dim(self, s: Load) -> tuple[str, int] | None:
        """(dim, size) if ``s`` loads a row two elements per load."""
        if s.tensor not in self.k.pairs or self.has_offsets(s.dims):
            return None
        hd = [(d, n) for d, n in self.k.held if d in s.dims]
        return hd[0] if len(hd) == 1 and hd[0][1] % 2 == 0 else None

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

    def held_of(self, st: Stmt) -> tuple[str, ...]:
        """The register-held dims of the value ``st`` defines (or stores)."""
        if isinstance(st, (Load, Store)):
            dims = st.dims
        elif isinstance(st, ScanStep):
            dims = self.dims_of.get(st.carry, ())
        else:
            dims = self.dims_of.get(getattr(st, "target", None) or "", ())
        return tuple(d for d, _ in self.k.held if d in dims)

    def runs(self, stmts: list[Stmt]) -> list[tuple[tuple[str, ...], list[Stmt]]]:
        """Register-held kernels: consecutive statements over the same held dims, to be printed
        index by index (all of index 0, then 1, ...: few values live at once), a sum over the
        held dim closing its run as a running total. Else one statement per run."""
        out: list[tuple[tuple[str, ...], list[Stmt]]] = []
        if not self.held:
            return [((), [st]) for st in stmts]
        for st in self.held_last(stmts):
            hs = self.held_of(st)
            last = out[-1] if out else None
            open_ = last is not None and last[0] and not isinstance(last[1][-1], (Reduce, Store))
            if isinstance(st, Reduce) and open_ and last[0] == (st.dim,) and not self.held_of(st):
                last[1].append(st)
            elif hs and not isinstance(st, Store) and open_ and last[0] == hs:
                last[1].append(st)
            else:
                out.append((hs if not isinstance(st, (Reduce, Store)) else (), [st]))
        return out

    def held_last(self, stmts: list[Stmt]) -> list[Stmt]:
        """``stmts`` with those that neither have held dims nor read (transitively) a value
        that has moved first, in order: the statements over held dims then form one run."""
        tainted: set[str] = set()
        first, rest = [], []
        for st in stmts:
            reads = set(re.findall(r"\b[vh]\d+\b", " ".join(str(getattr(st, f, "") or "") for f in ("expr", "source", "a", "b", "carry", "value"))))
            if self.held_of(st) or reads & tainted or isinstance(st, ScanStep):
                rest.append(st)
                tainted.update(x for x in (getattr(st, "target", None), getattr(st, "carry", None)) if x)
            else:
                first.append(st)
        return first + rest

    def emit_run(self, buf: IndentedBuffer, run: tuple[tuple[str, ...], list[Stmt]], j: int, from_raw: bool) -> None:
        hs, stmts = run
        if not hs:
            for st in stmts:
                if from_raw and isinstance(st, Load):
                    self.convert_raw(buf, st, j)
                else:
                    self.stmt(buf, st, step=j)
            return
        for i, idx in enumerate(self.combos(hs)):
            for st in stmts:
                sub = IndentedBuffer()
                if isinstance(st, Reduce):
                    if i == 0:
                        sub.line(f"# {st.comment}  (a running total: the products before it fuse into FMAs)")
                    src = self.sub(st.source, idx)
                    sub.line(f"{st.target} = {src}" if i == 0 else f"{st.target} = {st.target} + {src}")
                elif from_raw and isinstance(st, Load):
                    self.convert_raw(sub, st, j, idx)
                else:
                    self.index = idx
                    try:
                        self.stmt(sub, st, step=j, held=False)
                    finally:
                        self.index = {}
                for line in sub.getvalue().splitlines():
                    if i and line.lstrip().startswith("#"):
                        continue
                    buf.line(self.sub(re.sub(r"\s+#.*$", "", line) if i else line, idx))
        for st in stmts:
            if isinstance(st, Reduce) and st.kind == "mean":
                buf.line(f"{st.target} = {st.target} / {float(self.held[st.dim])!r}")

    def convert_raw(self, buf: IndentedBuffer, s: Load, j: int, idx: dict[str, int] | None = None) -> None:
        """The values of ``s`` at step ``j`` (at ``idx`` only, if given) from this tile's raw
        loads (``q...``)."""
        base = f"q{s.target[1:]}_{j}"
        if not idx:
            buf.line(f"# {s.comment}")
        pairs = self.pair_dim(s)
        if pairs:
            d, n = pairs
            dt = f"{s.tensor}.dtype.element_ty"
            for i in ([idx[d]] if idx else range(n)):
                buf.line(f"{self.sub(s.target, {d: i})} = _ssmc_pair({base}__w{i // 2}, {i % 2}, {dt})")
            return
        for ix in ([idx] if idx else self.combos(s.dims)):
            name = self.sub(s.target, ix)
            buf.line(f"{name} = {base}{name[len(s.target):]}.to(tl.float32)")

    def moving_tensors(self) -> list[tuple[Tensor, Dims]]:
        """Tensors read or written in the time loop, with the dims they are accessed at."""
        out: dict[str, tuple[Tensor, Dims]] = {}
        for s in self.k.loop:
            if isinstance(s, (Load, Store)) and self.k.time_dim in s.dims:
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
        if k.chunked and k.role == "full":
            ptr, mask = self.address(self.tensors["hin"], ("_C",) + c.dims)
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
                    buf.line(f"{self.sub(st.product, idx)} = tl.full({shape}, 1.0, tl.float32){note}")

    def params(self) -> list[str]:
        out = []
        for t in self.k.tensors:
            out.append(", ".join([t.name] + [f"{t.name}_s_{d}" for d in t.dims]) + ",")
        out.append(", ".join([f"size_{d}" for d in self.k.size_dims] + (["chunk_len"] if self.k.chunked else [])) + ",")
        if self.k.batch_dim:
            out.append("cu_seqlens,  # int32 [sequences + 1]: a packed batch's offsets (VARLEN)")
        flags = [f"HAS_{t.name}: tl.constexpr" for t in self.k.tensors if t.optional]
        if self.k.batch_dim:
            flags.append("VARLEN: tl.constexpr")
        blocks = ["NUM_STAGES: tl.constexpr", "BLOCK_T: tl.constexpr"]
        if self.k.strategy == "bidir":
            blocks.append("SUB: tl.constexpr")
        blocks += [f"EVEN_{d}: tl.constexpr" for d in self.k.full_dims if d not in self.held]
        blocks += [f"BLOCK_{d}: tl.constexpr" for d in self.k.block_dims]
        out.append(", ".join(flags + blocks) + ",")
        return out

    def no_specialize(self) -> list[str]:
        """Ints that vary with the sequence length or batch: never compile-time constants,
        so a new length or batch size does not recompile."""
        names = [f"size_{d}" for d in self.k.size_dims] + (["chunk_len"] if self.k.chunked else [])
        for t in self.k.tensors:
            names += [f"{t.name}_s_{d}" for d in t.dims if d in self.k.grid_dims]
        return names

    def kernel(self, buf: IndentedBuffer) -> None:
        k = self.k
        buf.line(f"@triton.jit(do_not_specialize={self.no_specialize()!r})")
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
            if d in k.full_dims:
                buf.line(f"if EVEN_{d}:  # the block is the whole dim: no lane is masked")
                with buf.indent():
                    buf.line(f"mask_{d} = tl.full([BLOCK_{d}], 1, tl.int1)")
                buf.line("else:")
                with buf.indent():
                    buf.line(f"mask_{d} = offs_{d} < size_{d}")
            else:
                # always masked: unmasked, Mamba-1 ran 2.3x slower on an H100 (bench/NOTES.md;
                # likely a vectorized load layout converted every step, not yet confirmed)
                buf.line(f"mask_{d} = offs_{d} < size_{d}")
        if k.time_dim is not None:
            b = k.batch_dim
            buf.line("")
            if b:
                buf.line(f"if VARLEN:  # a packed batch: program pid_{b} scans sequence pid_{b}, in row 0")
                with buf.indent():
                    buf.line(f"t_lo = tl.load(cu_seqlens + pid_{b}).to(tl.int64)")
                    buf.line(f"n_steps = tl.load(cu_seqlens + pid_{b} + 1).to(tl.int64) - t_lo")
                    buf.line(f"row_{b} = 0")
                buf.line("else:")
                with buf.indent():
                    buf.line("t_lo = 0")
                    buf.line(f"n_steps = size_{k.time_dim}")
                    buf.line(f"row_{b} = pid_{b}")
            else:
                buf.line("t_lo = 0")
                buf.line(f"n_steps = size_{k.time_dim}")

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
                buf.line(f"{st.target} = tl.zeros({self.shape(st.dims, False)}, tl.float32)  # a sum over time")
        if k.time_dim is not None:
            buf.line("")
            buf.line(f"# the time loop over {k.time_dim}" + (", from the end" if k.reverse else ""))
            if k.strategy == "sequential":
                self.loop_unrolled(buf)
            elif k.strategy == "bidir":
                self.loop_bidir(buf)
            else:
                self.loop_tiled(buf)
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


def _dependencies(stmts, target_stmt) -> list:
    """The statements ``target_stmt`` needs (itself included), in their order."""
    by_target = {s.target: s for s in stmts if not isinstance(s, Store) and s.target}

    def reads(s) -> list[str]:
        text = " ".join(str(getattr(s, f, "")) for f in ("expr", "source", "a", "b", "scan"))
        return re.findall(r"\bv\d+\b", text)

    need, todo = set(), [target_stmt]
    while todo:
        s = todo.pop()
        if id(s) in need:
            continue
        need.add(id(s))
        todo += [by_target[n] for n in reads(s) if n in by_target]
    return [s for s in stmts if id(s) in need]
