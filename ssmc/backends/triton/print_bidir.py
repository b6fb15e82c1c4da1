"""Printing the ``bidir`` strategy (a backward): the sequence walked in chunks in the carried
scan's direction, the forward scan it needs recomputed per chunk from checkpoints. A mixin of
``codegen._Printer``."""

from __future__ import annotations

import re

from ssmc.backends.triton.buffer import IndentedBuffer
from ssmc.backends.triton.kernel_ir import Load, Prev, ScanStep, Store, TimeSum


class BidirPrinting:
    """The bidir loop: checkpoint spans, chunk entry states, phases A and B."""

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

        def chunk_start(first: str, index: str, lo: str = "0", hi: str = "n_steps") -> None:
            buf.line(f"t0 = {first} + {index} * {u}")
            for j in range(u):
                buf.line(f"valid_{j} = (t0 + {j} >= {lo}) & (t0 + {j} < {hi})")
            for t, _ in moving:
                buf.line(f"pb_{t.name} = pb0_{t.name} + t0 * {t.name}_s_{k.time_dim}")

        if fwd is None and k.chunked:
            self.chunk_bounds(buf)
            buf.line(f"n_chunks = tl.cdiv(hi - lo, {u})")
            buf.line("for it in range(0, n_chunks):")
            with buf.indent():
                if k.reverse:  # UNROLL-step pieces aligned at hi, the first piece in time cut at lo
                    buf.line("c = n_chunks - 1 - it")
                    chunk_start(f"hi - n_chunks * {u}", "c", "lo", "hi")
                else:
                    buf.line("c = it")
                    chunk_start("lo", "c", "lo", "hi")
                self.steps(buf, list(k.loop), b_order, "", None)
            return
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
        if k.chunked:
            # the sequence split among programs: chunks of chunk_len steps (a multiple of SPAN)
            # aligned at step 0 like the spans, counted from the end (the carried scan's way)
            buf.line("n_chunks = tl.cdiv(n_steps, chunk_len)")
            buf.line("lo = (n_chunks - 1 - pid__C) * chunk_len  # this program's steps: [lo, hi)")
            buf.line("hi = tl.minimum(lo + chunk_len, n_steps)")
            buf.line("span0 = tl.maximum(lo, 0) // SPAN  # its first span")
            buf.line("n_spans = tl.where(lo >= 0, tl.cdiv(hi - lo, SPAN), 0)  # none past a shorter sequence's start")
        else:
            buf.line("n_spans = tl.cdiv(n_steps, SPAN)")
        first = "span0 + " if k.chunked else ""
        for idx in self.combos(carry.dims):
            buf.line(f"{self.held_name('init_', fwd.carry, idx)} = {self.sub(fwd.carry, idx)}")
        # prefetch: walking backwards from the end, the chunk after the one at t0 is always
        # at t0 - UNROLL (the last chunk of a span is followed by the previous span's first)
        ahead = k.prefetch and k.reverse and not fwd.reverse and not k.align_end
        early = self.time_loads() if ahead else []
        preloaded = {st.target for st in early}
        if ahead:
            buf.line("# the loads of the first chunk walked (the last in time), issued before the loop")
            self.prefetch_chunk(buf, early, f"({first}n_spans - 1) * SPAN + (SUB - 1) * {u}", order)
        buf.line("for it in range(0, n_spans):")
        with buf.indent():
            buf.line(f"c = {first}n_spans - 1 - it" if k.reverse else f"c = {first}it")
            if k.align_end:  # spans end at n: the first one (in time) is cut at step 0
                buf.line("s0 = n_steps - (n_spans - c) * SPAN")
                buf.line("ck = n_spans - 1 - c  # checkpoints count from the end")
            else:
                buf.line("s0 = c * SPAN")
                buf.line("ck = c")
            for idx in self.combos(carry.dims):
                ptr, mask = self.address_at(self.tensors["hin"], ("_K",) + carry.dims, idx)
                load = f"tl.load({ptr}, mask=({mask}) & (ck > 0), other=0.0)" if mask else f"tl.load({ptr}, mask=ck > 0, other=0.0)"
                buf.line(f"h_ck = {load}")
                buf.line(f"{self.sub(fwd.carry, idx)} = tl.where(ck == 0, {self.held_name('init_', fwd.carry, idx)}, h_ck)")
            scr_at = [self.address_at(self.tensors["scr"], self.tensors["scr"].dims, idx) for idx in self.combos(carry.dims)]
            a_order = order[::-1] if fwd.reverse else order
            # chunk q (counted in the forward scan's direction) starts at step s0 + index * UNROLL
            index = "(SUB - 1 - q)" if fwd.reverse else "q"
            buf.line("# phase A0: the entry state of each chunk of this span")
            # its loads a chunk ahead (``zf``, ``Kernel.prefetch_a0``), as phase B's: each chunk's
            # compute is short, so loads issued in place leave their whole latency exposed
            z_loads = [st for st in deps if isinstance(st, Load)] if k.prefetch and k.prefetch_a0 else []
            step = f"- {u}" if fwd.reverse else f"+ {u}"
            if z_loads:
                self.prefetch_chunk(buf, z_loads, f"s0 + (SUB - 1) * {u}" if fwd.reverse else "s0", order, "zf")
            buf.line("for q in range(0, SUB):")
            with buf.indent():
                for idx, (scr, smask) in zip(self.combos(carry.dims), scr_at):
                    m = f", mask={smask}" if smask else ""
                    buf.line(f"tl.store({scr}, {self.sub(fwd.carry, idx)}{m})")
                chunk_start("s0", index)
                for j in order:
                    for st in z_loads:
                        for idx in self.combos(st.dims):
                            sfx = self.suffix(st.target, idx)
                            buf.line(f"{st.target}_z{j}{sfx} = {st.target}_zf{j}{sfx}")
                if z_loads:
                    self.prefetch_chunk(buf, z_loads, f"t0 {step}", order, "zf")
                self.steps(buf, deps, a_order, "z", fwd, {st.target for st in z_loads})
            buf.line("for qq in range(0, SUB):")
            with buf.indent():
                buf.line("q = SUB - 1 - qq")
                chunk_start("s0", index)
                for idx, (scr, smask) in zip(self.combos(carry.dims), scr_at):
                    m = f", mask={smask}, other=0.0" if smask else ""
                    buf.line(f"{self.sub(fwd.carry, idx)} = tl.load({scr}{m})")
                for idx in self.combos(carry.dims):
                    buf.line(f"{self.held_name('cin_', fwd.carry, idx)} = {self.sub(fwd.carry, idx)}")
                if ahead:
                    buf.line("# this chunk's loads, issued a chunk ago; then the next chunk's")
                    for j in order:
                        for st in early:
                            for idx in self.combos(st.dims):
                                sfx = self.suffix(st.target, idx)
                                buf.line(f"{st.target}_a{j}{sfx} = {st.target}_pf{j}{sfx}")
                                buf.line(f"{st.target}_{j}{sfx} = {st.target}_pf{j}{sfx}")
                    self.prefetch_chunk(buf, early, f"t0 - {u}", order)
                buf.line("# phase A: the forward scan's states of this chunk")
                self.steps(buf, deps, a_order, "a", fwd, preloaded)
                buf.line("# phase B: the steps the other way")
                self.steps(buf, [s for s in k.loop if s is not fwd], b_order, "", fwd, preloaded)

    def loop_time_tiles(self, buf: IndentedBuffer) -> None:
        """A kernel with no scan (``Kernel.time_tile``): its steps [lo, hi) (the chunk of
        ``pid__C`` when the sequence is split, counted from the end as ``loop_bidir``'s) in
        tiles of BLOCK_T, each statement once per tile on [BLOCK_T, ...] values: one address
        and mask per tile, and sums over a dim held whole reduce every step of the tile at
        once. Sums over time add whole tiles (``TimeSum``) and are reduced once, after the loop.
        Nothing is carried from step to step, so the tiles' order is free: forward in time."""
        k = self.k
        buf.line("idx_T = tl.arange(0, BLOCK_T).to(tl.int64)")
        self.loop_pointers(buf, "t_lo")
        if k.chunked:
            self.chunk_bounds(buf)
        else:
            buf.line("lo = 0")
            buf.line("hi = n_steps")
        moving = self.moving_tensors()
        for t, _ in moving:
            buf.line(f"pb0_{t.name} = pb_{t.name}")
        buf.line("for t0 in tl.range(lo, hi, BLOCK_T, num_stages=NUM_STAGES):")
        with buf.indent():
            buf.line("mask_T = t0 + idx_T < hi")
            for t, _ in moving:
                buf.line(f"pb_{t.name} = pb0_{t.name} + t0 * {t.name}_s_{k.time_dim}")
            for st in k.loop:
                self.stmt(buf, st)

    def chunk_bounds(self, buf: IndentedBuffer) -> None:
        """``lo``, ``hi``: the steps of chunk ``pid__C`` of a kernel with no recomputed scan,
        chunks counted in the carried scan's direction (from the end where it is reverse)."""
        if self.k.reverse:
            buf.line("hi = n_steps - pid__C * chunk_len  # this program's steps: [lo, hi), chunks counted from the end")
            buf.line("lo = tl.maximum(hi - chunk_len, 0)")
        else:
            buf.line("lo = pid__C * chunk_len  # this program's steps: [lo, hi)")
            buf.line("hi = tl.minimum(lo + chunk_len, n_steps)")

    def suffix(self, name: str, idx: dict[str, int]) -> str:
        """The register-held index suffix of value ``name`` at ``idx`` (``__3``; '' if none)."""
        return self.sub(name, idx)[len(name):]

    def held_name(self, prefix: str, name: str, idx: dict[str, int]) -> str:
        """``prefix`` + ``name`` at held index ``idx`` (``cin_h34__3``)."""
        return prefix + self.sub(name, idx)

    def time_loads(self) -> list:
        """The loop's loads of values that move with time, one per value (phases A and B load
        the same ones)."""
        seen, out = set(), []
        for st in self.k.loop:
            if isinstance(st, Load) and self.k.time_dim in st.dims and st.target not in seen:
                seen.add(st.target)
                out.append(st)
        return out

    def prefetch_chunk(self, buf: IndentedBuffer, loads: list, first: str, order: list[int], tag: str = "pf") -> None:
        """``loads`` of the chunk starting at step ``first`` into ``<value>_<tag><step>``, masked
        to the sequence (a chunk before step 0 or past the end loads nothing)."""
        k = self.k
        buf.line(f"tn = {first}")
        for j in order:
            buf.line(f"nvalid_{j} = (tn + {j} >= 0) & (tn + {j} < n_steps)")
        for t, _ in self.moving_tensors():
            if any(st.tensor == t.name for st in loads):
                buf.line(f"pn_{t.name} = pb0_{t.name} + tn * {t.name}_s_{k.time_dim}")
        sub = IndentedBuffer()
        self.steps(sub, loads, order, tag, None)
        for line in sub.getvalue().splitlines():
            buf.line(re.sub(r"\bvalid_(\d+)", r"nvalid_\1", re.sub(r"\bpb_", "pn_", line)))

    def steps(self, buf: IndentedBuffer, stmts: list, order: list[int], tag: str, fwd, preloaded=frozenset()) -> None:
        """``stmts`` for each step of ``order`` (loads of every step first), variables renamed
        per step (``v3`` -> ``v3_a2`` in phase A, ``v3_2`` in B); loads of ``preloaded``
        values are left out (assigned from a prefetch)."""
        stmts = [st for st in stmts if not (isinstance(st, Load) and st.target in preloaded)]
        k = self.k
        loop_vars = {s.target for s in k.loop if not isinstance(s, Store) and s.target}
        u = k.unroll

        def ren(text: str, j: int) -> str:  # v3 -> v3_a2, v3__5 (held index 5) -> v3_a2__5
            return re.sub(r"\b(v\d+)((?:__\d+(?:_\d+)*)?)\b",
                          lambda m: f"{m.group(1)}_{tag}{j}{m.group(2)}" if m.group(1) in loop_vars else m.group(0), text)

        def emit(st, j: int) -> None:
            if isinstance(st, ScanStep) and st.complex:  # both parts at once
                sub = IndentedBuffer()

                def keep(idx: dict[str, int]) -> None:  # the state entering the step
                    if not (st is fwd and tag in ("a", "z")):
                        for i in (0, 1):
                            ix = {**idx, st.complex: i}
                            sub.line(f"{self.held_name('cin_', st.carry, ix)}_{j} = {self.sub(st.carry, ix)}")

                self.complex_step(sub, st, valid=f"valid_{j}", keep=keep)
                for line in sub.getvalue().splitlines():
                    buf.line(ren(line, j))
                return
            if not isinstance(st, (ScanStep, Prev, TimeSum)):
                sub = IndentedBuffer()
                self.stmt(sub, st, step=j)
                for line in sub.getvalue().splitlines():
                    buf.line(ren(line, j))
                return
            buf.line(f"# {st.comment}")
            dims = self.dims_of.get(st.carry if isinstance(st, ScanStep) else st.target, ())
            for idx in self.combos(dims):
                at = lambda name, idx=idx: self.sub(name, idx)  # noqa: E731
                if isinstance(st, ScanStep):
                    c = at(st.carry)
                    if not (st is fwd and tag in ("a", "z")):
                        buf.line(f"{self.held_name('cin_', st.carry, idx)}_{j} = {c}")
                    buf.line(ren(f"{c} = tl.where(valid_{j}, {at(st.a)} * {c} + {at(st.b)}, {c})", j))
                    buf.line(ren(f"{at(st.target)} = {c}", j))
                elif isinstance(st, Prev):
                    if fwd is not None and st.carry == fwd.carry:
                        back = j + 1 if fwd.reverse else j - 1
                        src = (f"{st.scan}_a{back}{self.suffix(st.scan, idx)}" if 0 <= back < u
                               else self.held_name("cin_", st.carry, idx))
                    else:
                        src = f"{self.held_name('cin_', st.carry, idx)}_{j}"
                    buf.line(f"{ren(at(st.target), j)} = {src}")
                else:  # TimeSum: the accumulator keeps its name across steps
                    acc = at(st.target)
                    buf.line(f"{acc} = {acc} + tl.where(valid_{j}, {ren(at(st.source), j)}, 0.0)")

        hoist = k.hoist_loads or tag == "a"  # phase B's loads first too, unless asked not to
        if hoist:
            for j in order:
                for st in stmts:
                    if isinstance(st, Load):
                        emit(st, j)
        for j in order:
            if fwd is not None and tag == "":
                for i, idx in enumerate(self.combos(self.dims_of.get(fwd.carry, ()))):
                    sfx = self.suffix(fwd.target, idx)
                    note = "  # the forward state, from phase A" if i == 0 else ""
                    buf.line(f"{fwd.target}_{j}{sfx} = {fwd.target}_a{j}{sfx}{note}")
            for st in stmts:
                if not isinstance(st, Load) or not hoist:
                    emit(st, j)


def _dependencies(stmts, target_stmt) -> list:
    """The statements ``target_stmt`` needs (itself included), in their order."""
    by_target = {s.target: s for s in stmts if not isinstance(s, Store) and s.target}

    def reads(s) -> list[str]:
        text = " ".join(str(getattr(s, f, "")) for f in ("expr", "source", "a", "b", "scan"))
        return re.findall(r"\b[vum]\d+\b", text)  # values; a conv's taps (u) and products (m)

    need, todo = set(), [target_stmt]
    while todo:
        s = todo.pop()
        if id(s) in need:
            continue
        need.add(id(s))
        todo += [by_target[n] for n in reads(s) if n in by_target]
    return [s for s in stmts if id(s) in need]
