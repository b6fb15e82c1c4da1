"""Printing kernels whose dims held whole are registers (``Kernel.held``): a value with such a
dim is one variable per index (``v7__3``), a sum over it a running total, a row of an input
read each step a run of scalar loads (two elements per load where aligned), loads and stores
outside the time loop one tile split with tl.split, and the sequential loop's loads issued a
tile ahead. A mixin of ``codegen._Printer``: it uses the printer's addressing and statements."""

from __future__ import annotations

import itertools
import re

from ssmc.backends.triton.buffer import IndentedBuffer
from ssmc.backends.triton.kernel_ir import (
    Compute,
    Load,
    Prev,
    Reduce,
    ScanStep,
    Stmt,
    Store,
    TimeSum,
)
from ssmc.ir.dims import Dims


def on_fma_pipe(text: str) -> str:
    """``text`` with its exp2 calls as the prelude's FMA-pipe exp2 (``Kernel.exp2_fma``)."""
    return text.replace("tl.exp2(", "_ssmc_exp2_fma(")


class HeldPrinting:
    """Register-held dims: naming, the per-index statements, runs, prefetch loads."""

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
            elif isinstance(s, TimeSum):
                out[s.target] = s.dims
            elif isinstance(s, Prev):
                out[s.target] = out.get(s.carry, ())
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

        if not self.held:
            return text
        # complex values' parts (``Compute``): _pick_R(re, im) at this index of R; v7[R=1]
        text = re.sub(r"_pick_(\w+)\(([^,()]+), ([^,()]+)\)", lambda m: m.group(2 + index[m.group(1)]), text)
        text = re.sub(r"\b([vhps]\d+)\[(\w+)=(\d)\]", lambda m: self.sub(m.group(1), {**index, m.group(2): int(m.group(3))}), text)
        # values v<n>, states h<n>, decay products p<n>, sums of a decay's exponent s<n>
        return re.sub(r"\b([vhps]\d+)\b", one, text)

    def stmt_held(self, buf: IndentedBuffer, s: Stmt, step: int) -> None:
        """``s`` once per index of its register-held dims."""
        joined = self.joinable(s)
        if joined:
            return self.joined_reduce(buf, s, step, *joined)
        if self.joined_store(buf, s, step):
            return
        if isinstance(s, ScanStep) and s.complex:
            return self.complex_step(buf, s)
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
            self.stmt_at(sub, s, step, idx)
            self.put_at(buf, sub, idx, first=i == 0, fma=self.fma_at(s, i))

    def complex_step(self, buf: IndentedBuffer, s: ScanStep, valid: str | None = None, keep=None) -> None:
        """A complex scan's step: both parts of every state element at once (h = a h + b,
        complex products written out; the decay product too, in a chunk-states kernel).
        ``valid``: a step mask (bidir: steps outside the sequence keep h); ``keep(name, idx)``:
        lines to put before the update (the bidir kernel saves the state entering the step)."""
        part = s.complex
        buf.line(f"# {s.comment}  (complex: parts along {part})")
        for idx in self.combos(tuple(d for d in self.dims_of.get(s.carry, ()) if d != part)):
            def at(name: str, i: int, idx=idx) -> str:
                return self.sub(name, {**idx, part: i})

            a0, a1, b0, b1 = at(s.a, 0), at(s.a, 1), at(s.b, 0), at(s.b, 1)
            h0, h1 = at(s.carry, 0), at(s.carry, 1)
            if keep is not None:
                keep(idx)
            new0, new1 = f"{a0} * {h0} - {a1} * {h1} + {b0}", f"{a0} * {h1} + {a1} * {h0} + {b1}"
            if valid is not None:
                new0, new1 = f"tl.where({valid}, {new0}, {h0})", f"tl.where({valid}, {new1}, {h1})"
            buf.line(f"{h0}, {h1} = {new0}, {new1}")
            if s.product:
                p0, p1 = at(s.product, 0), at(s.product, 1)
                buf.line(f"{p0}, {p1} = {a0} * {p0} - {a1} * {p1}, {a0} * {p1} + {a1} * {p0}")
            if s.target:
                buf.line(f"{at(s.target, 0)} = {h0}")
                buf.line(f"{at(s.target, 1)} = {h1}")

    def address_at(self, tensor, dims, idx: dict[str, int], step: int = 0) -> tuple[str, str | None]:
        """``address`` at register-held index ``idx``."""
        self.index = idx
        try:
            return self.address(tensor, dims, step)
        finally:
            self.index = {}

    def stmt_at(self, buf: IndentedBuffer, s: Stmt, step: int, idx: dict[str, int]) -> None:
        """``s`` in the tensor form's words, addressed at held index ``idx`` (names not yet
        suffixed: ``put_at`` does that)."""
        self.index = idx
        try:
            self.stmt(buf, s, step, held=False)
        finally:
            self.index = {}

    def fma_at(self, s: Stmt, i: int) -> bool:
        """Whether ``s`` at its ``i``-th held index computes its exp2 on the FMA pipe."""
        every = self.k.exp2_fma
        return isinstance(s, Compute) and every > 0 and i % every == every - 1

    def put_at(self, buf: IndentedBuffer, sub: IndentedBuffer, idx: dict[str, int], first: bool, fma: bool = False) -> None:
        """``sub``'s lines with every name at ``idx``; comments only for the first index.
        ``fma``: its exp2 on the FMA pipe (``Kernel.exp2_fma``)."""
        for line in sub.getvalue().splitlines():
            if not first and line.lstrip().startswith("#"):
                continue
            if fma:
                line = on_fma_pipe(line)
            buf.line(self.sub(line if first else re.sub(r"\s+#.*$", "", line), idx))

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
        if isinstance(s, Store):
            mask = self.store_mask(s, mask)
        ptr = f"({base})[:, :, None] + tl.arange(0, {n})[None, None, :] * {t.name}_s_{d}"
        m = f", mask=({mask})[:, :, None]" if mask else ""
        block = f"BLOCK_{k.tiled_dim}"
        stem = f"w{(s.target if isinstance(s, Load) else s.value)[1:]}_"
        buf.line(f"# {s.comment}  (one tile over {d}, split into its {n} variables)" if isinstance(s, Load)
                 else f"# {s.comment}  (the {n} variables joined into one tile over {d})")

        if isinstance(s, Store):
            # each variable as a [1, block] tile: a value constant along the tiled dim (Mamba-2's
            # decay product, one per head) is a scalar until broadcast
            leaves = [self.sub(s.value, {d: i}) for i in range(n)]
            names = {leaf: f"{stem}b{i}" for i, leaf in enumerate(dict.fromkeys(leaves))}
            for leaf, name in names.items():
                buf.line(f"{name} = tl.broadcast_to({leaf}, [1, {block}])")
            tile = self.join_tree(buf, [names[leaf] for leaf in leaves], stem, f"1, {block}")
            buf.line(f"tl.store({ptr}, {tile}.to({t.name}.dtype.element_ty){m})")
            return True
        body = IndentedBuffer()
        body.line(f"{stem} = tl.load({ptr}{m}, other=0.0).to(tl.float32)" if m else f"{stem} = tl.load({ptr}).to(tl.float32)")
        leaves = self.split_tree(body, stem, n, f"1, {block}")
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

    def split_tree(self, buf: IndentedBuffer, name: str, size: int, lead: str) -> dict[int, str]:
        """Variables for each index of the last dim (of ``size``, a power of two) of the tile
        ``name`` of shape [``lead``, size], by halving with tl.split (even, odd indices)."""
        if size == 1:
            return {0: name}
        a, b = name + "0", name + "1"
        src = name if size == 2 else f"tl.reshape({name}, [{lead}, {size // 2}, 2])"
        buf.line(f"{a}, {b} = tl.split({src})")
        left, right = self.split_tree(buf, a, size // 2, lead), self.split_tree(buf, b, size // 2, lead)
        return {**{2 * i: v for i, v in left.items()}, **{2 * i + 1: v for i, v in right.items()}}

    def join_tree(self, buf: IndentedBuffer, names: list[str], name: str, lead: str) -> str:
        """One tile of shape [``lead``, len(names)] (a power of two) holding ``names`` (each of
        shape [``lead``]) along a new last dim, by pairs with tl.join; returns its name."""
        if len(names) == 1:
            return names[0]
        a = self.join_tree(buf, names[0::2], name + "0", lead)
        b = self.join_tree(buf, names[1::2], name + "1", lead)
        size = len(names)
        buf.line(f"{name} = " + (f"tl.join({a}, {b})" if size == 2 else f"tl.reshape(tl.join({a}, {b}), [{lead}, {size}])"))
        return name

    def joinable(self, s: Stmt) -> tuple[str, int] | None:
        """(dim, size) where ``s``, in the bidir kernel, sums over the tiled dim a value
        register-held along one dim (dB, dC of Mamba-1: over D, held along N): the values of
        every index are then joined into one tile and summed by one reduction."""
        k = self.k
        if k.strategy != "bidir" or not isinstance(s, Reduce) or s.dim != k.tiled_dim or self.rank != 2:
            return None
        hd = [(d, n) for d, n in k.held if d in self.dims_of.get(s.target, ())]
        return hd[0] if len(hd) == 1 and hd[0][1] >= 2 else None

    def joined_reduce(self, buf: IndentedBuffer, s: Reduce, step: int, d: str, n: int) -> None:
        """``s`` as one tl.sum over a [1, block, n] tile (the n held variables joined; padded
        with zeros to a power of two): one reduction across the program's threads (one round
        of shared memory and barriers) instead of n. Its result stays a tile for the store
        (``joined_store``) and is split into the n variables for any other reader."""
        n2 = 1 << (n - 1).bit_length()
        block = f"BLOCK_{s.dim}"
        stem = f"j{s.target[1:]}_{step}_"
        names = [self.sub(s.source, {d: i}) for i in range(n)]
        buf.line(f"# {s.comment}  (its {n} variables joined: one reduction)")
        if n2 > n:
            buf.line(f"{stem}z = tl.zeros([1, {block}], tl.float32)")
            names += [f"{stem}z"] * (n2 - n)
        tile = self.join_tree(buf, names, stem, f"1, {block}")
        mask = self.expand("mask_" + s.dim, self.axes.index(s.dim))
        total = f"{stem}s"
        buf.line(f"{total} = tl.sum(tl.where(({mask})[:, :, None], {tile}, 0.0), axis=1, keep_dims=True)")
        leaves = self.split_tree(buf, total, n2, "1, 1")
        for i in range(n):
            buf.line(f"{self.sub(s.target, {d: i})} = {leaves[i]}")
        self.joined[s.target] = (total, d, n, n2, step)

    def joined_store(self, buf: IndentedBuffer, s: Stmt, step: int) -> bool:
        """A store of a joined sum (``joined_reduce``) at this step: one store (or atomic add)
        of the tile, its n elements at the held dim's stride. False where it does not apply."""
        j = self.joined.get(getattr(s, "value", None)) if isinstance(s, Store) else None
        if j is None or j[4] != step or j[1] not in s.dims:
            return False
        total, d, n, n2, _ = j
        t = self.tensors[s.tensor]
        ptr, mask = self.address_at(t, s.dims, {d: 0}, step)
        lanes = f"tl.arange(0, {n2})[None, None, :]"
        masks = [m for m in (self.store_mask(s, mask), f"{lanes} < {n}" if n2 > n else None) if m]
        m = f", mask=tl.broadcast_to({' & '.join(f'({x})' for x in masks)}, p_st.shape)" if masks else ""
        buf.line(f"# {s.comment}  ({n} elements, one {'atomic add' if s.atomic else 'store'})")
        buf.line(f"p_st, v_st = tl.broadcast(({ptr}) + {lanes} * {t.name}_s_{d}, {total})")
        if s.atomic:
            buf.line(f"tl.atomic_add(p_st, v_st{m}, sem='relaxed')")
        else:
            buf.line(f"tl.store(p_st, v_st.to({t.name}.dtype.element_ty){m})")
        return True

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
                        self.load_or_zeros(buf, t, name, f"tl.load(pw{' + ' + off if off else ''}{m})", "[1, 1]")
                    continue
                for idx in self.combos(s.dims):
                    self.index = idx
                    ptr, mask = self.address(t, s.dims, j + ahead)
                    self.index = {}
                    name = base + self.sub(s.target, idx)[len(s.target):]
                    names.append(name)
                    m = " & ".join(f"({x})" for x in (mask, more) if x)
                    load = f"tl.load({ptr}, mask={m}, other=0.0)" if m else f"tl.load({ptr})"
                    self.load_or_zeros(buf, t, name, load, self.shape(s.dims, True))
        return names

    def pair_dim(self, s: Load) -> tuple[str, int] | None:
        """(dim, size) if ``s`` loads a row two elements per load."""
        if s.tensor not in self.k.pairs or self.has_offsets(s.dims):
            return None
        hd = [(d, n) for d, n in self.k.held if d in s.dims]
        return hd[0] if len(hd) == 1 and hd[0][1] % 2 == 0 else None

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
            if isinstance(st, ScanStep) and st.complex:  # both parts at once: a run of its own
                out.append(((), [st]))
            elif isinstance(st, Reduce) and open_ and last[0] == (st.dim,) and not self.held_of(st):
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
                    self.stmt_at(sub, st, j, idx)
                self.put_at(buf, sub, idx, first=i == 0, fma=self.fma_at(st, i))
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
