"""Printing kernels whose dims held whole are registers (``Kernel.held``): a value with such a
dim is one variable per index (``v7__3``), a sum over it a running total, a row of an input
read each step a run of scalar loads (two elements per load where aligned), loads and stores
outside the time loop one tile split with tl.split, and the sequential loop's loads issued a
tile ahead. A mixin of ``codegen._Printer``: it uses the printer's addressing and statements."""

from __future__ import annotations

import itertools
import re

from ssmc.backends.triton.buffer import IndentedBuffer
from ssmc.backends.triton.kernel_ir import Compute, Load, Reduce, ScanStep, Stmt, Store
from ssmc.ir.dims import Dims


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

        # values v<n>, states h<n>, decay products p<n>, sums of a decay's exponent s<n>
        return re.sub(r"\b([vhps]\d+)\b", one, text) if self.held else text

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
            self.stmt_at(sub, s, step, idx)
            self.put_at(buf, sub, idx, first=i == 0)

    def stmt_at(self, buf: IndentedBuffer, s: Stmt, step: int, idx: dict[str, int]) -> None:
        """``s`` in the tensor form's words, addressed at held index ``idx`` (names not yet
        suffixed: ``put_at`` does that)."""
        self.index = idx
        try:
            self.stmt(buf, s, step, held=False)
        finally:
            self.index = {}

    def put_at(self, buf: IndentedBuffer, sub: IndentedBuffer, idx: dict[str, int], first: bool) -> None:
        """``sub``'s lines with every name at ``idx``; comments only for the first index."""
        for line in sub.getvalue().splitlines():
            if not first and line.lstrip().startswith("#"):
                continue
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
            # each variable as a [1, block] tile: a value constant along the tiled dim (Mamba-2's
            # decay product, one per head) is a scalar until broadcast
            leaves = [self.sub(s.value, {d: i}) for i in range(n)]
            names = {leaf: f"{stem}b{i}" for i, leaf in enumerate(dict.fromkeys(leaves))}
            for leaf, name in names.items():
                buf.line(f"{name} = tl.broadcast_to({leaf}, [1, {block}])")
            tile = join([names[leaf] for leaf in leaves], stem)
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
                    self.stmt_at(sub, st, j, idx)
                self.put_at(buf, sub, idx, first=i == 0)
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
