"""Printing the two kernels of the matrix (SSD) form (see ``lower_matrix``) as Triton source.

Values are 2-D tiles: axis 0 is time (``BLOCK_T`` steps), axis 1 the *context* dim (N for the
factors of ``k`` and ``c``, P for those of ``u`` and the epilogue, none for the decay); a value
lacking one has size 1 there, and a value with neither is a scalar. The prologue is recomputed
where it is used (it is elementwise, cheaper than a trip through memory), so each context prints
the nodes it needs."""

from __future__ import annotations

import contextlib

from ssmc.backends.triton.buffer import IndentedBuffer
from ssmc.backends.triton.kernel_ir import Kernel, Tensor
from ssmc.backends.triton.lower import elementwise_expr
from ssmc.backends.triton.lower_matrix import MatrixForm, plain_arg
from ssmc.backends.triton.print_matrix_dl import DecayGradientPrinting
from ssmc.backends.triton.print_varlen import VARLEN_PARAMS, print_steps
from ssmc.errors import LoweringError
from ssmc.ir.node import Node, topo_order
from ssmc.ir.printer import format_node
from ssmc.ops.registry import ELEMENTWISE, get


class MatrixPrinter(DecayGradientPrinting):
    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.m: MatrixForm = k.matrix
        self.tensors = {t.source: t for t in k.tensors}
        self.names = self.m.names
        # per time-index variable (t, t_r, t_c: each printed in one scope), the values along time
        # only (no N, no P) printed there: valid in every context at those steps
        self.memo: dict[str, dict[Node, str]] = {}
        # values with none of the time, N and P dims, printed once before a loop over tiles
        # (``hoist``): valid in every context after it
        self.invariant: dict[Node, str] = {}

    # --- values in a context ---------------------------------------------------------------

    def head_terms(self, t: Tensor, dims) -> list[str]:
        b = self.m.batch
        return [f"{'row' if d == b and self.m.time in t.dims else 'pid'}_{d} * {t.name}_s_{d}" for d in dims if d in self.m.heads]

    def emit(self, buf: IndentedBuffer, targets: list[Node], ctx: str | None, t: str, mask_t: str, tag: str,
             bound: dict[Node, str] | None = None, raw: bool = False) -> dict[Node, str]:
        """Print the nodes ``targets`` need, as tiles of [time, ``ctx``] at steps ``t + idx``
        (``t`` a scalar, the tile's first step); variables ``<tag><id>``. ``bound``: values
        already printed. Addresses: a scalar 64-bit base plus 32-bit offsets within the tile
        (64-bit offsets per element cost Mamba-2's kernels 255 registers and spills on an H100;
        ``jit`` checks the offsets fit)."""
        m = self.m
        var: dict[Node, str] = {**self.invariant, **(bound or {})}
        memo = self.memo.setdefault(t, {})
        var.update(memo)
        order = topo_order(targets, stop=lambda x: x in var)
        # a conv's operands are read by the conv itself (at other steps): no tile of their own
        read = {i for n in order if n.op != "conv" for i in n.inputs} | set(targets)
        skip = {i for n in order if n.op == "conv" for i in n.inputs} - read
        for n in order:
            if n in skip:
                continue
            name = f"{tag}{self.names[n][1:]}"
            if n.op == "const":
                var[n] = repr(float(n.attr("value")))
                continue
            if n.op == "arg":
                tensor = self.tensors[n.attr("name")]
                terms = self.head_terms(tensor, n.dims)
                masks = []
                if m.time in n.dims:
                    terms += self.time_terms(tensor, t)
                    masks.append(f"{mask_t}[:, None]")
                if ctx is not None and ctx in n.dims:
                    terms.append(f"offs_{ctx}[None, :] * {tensor.name}_s_{ctx}")
                    masks.append(f"mask_{ctx}[None, :]")
                extra = set(n.dims) - set(m.heads) - {m.time} - ({ctx} if ctx else set())
                if extra:  # pragma: no cover - matrix_form rules these out
                    raise LoweringError(f"{self.k.layer}: {self.names[n]} varies along {sorted(extra)} in context {ctx}")
                ptr = self.based(buf, tensor.name, terms, f"b{name}")
                mask = " & ".join(masks)
                load = f"tl.load({ptr}{f', mask={mask}, other=0.0' if mask else ''})"
                if not raw or n not in targets or len(targets) != 1:
                    load += ".to(tl.float32)"
                buf.line(f"# {format_node(n, self.names)}")
                if tensor.optional:
                    shape = "[" + ", ".join(["BLOCK_T" if m.time in n.dims else "1", f"BLOCK_{ctx}" if ctx in n.dims else "1"]) + "]"
                    zero = f"tl.zeros({shape}, tl.float32)" if masks else "0.0"
                    buf.line(f"{name} = {load} if HAS_{tensor.name} else {zero}")
                else:
                    buf.line(f"{name} = {load}")
            elif n.op == "conv":
                self.conv(buf, n, name, ctx, t, mask_t, var)
            elif get(n.op).group == ELEMENTWISE:
                expr = elementwise_expr(self.k.layer, n, [var[i] for i in n.inputs], m.time not in n.dims)
                buf.line(f"{name} = {expr}  # {format_node(n, self.names)}")
            else:  # pragma: no cover - matrix_form rules these out
                raise LoweringError(f"{self.k.layer}: `{n.op}` in the matrix form's prologue or epilogue")
            var[n] = name
            if m.n not in n.dims and m.p not in n.dims:
                memo[n] = name
        return var

    def hoist(self, buf: IndentedBuffer, targets: list[Node]) -> None:
        """Print before a loop over tiles the values ``targets`` need that vary along none of
        time, N, P and the heads a program sums (a parameter's exp: Mamba-2's A from A_log),
        once instead of every tile (ptxas left them in the states kernel's loop: the loop
        stores chunk states, so its loads could alias them)."""
        m = self.m
        keep = set(m.heads) - set(m.summed)
        nodes = [n for n in topo_order(targets) if n.op not in ("const", "conv") and set(n.dims) <= keep]
        if nodes:
            buf.line("# values the same in every tile")
            self.invariant.update(self.emit(buf, nodes, None, "", "", "i"))

    def conv(self, buf: IndentedBuffer, n: Node, name: str, ctx: str | None, t: str, mask_t: str, var) -> None:
        """A conv (ssmc/ops/conv.py) as a [time, ``ctx``] tile: a loop over its K taps, each
        reading the input's tile K-1-k steps back (the window before the sequence's start) and
        one row of weights. The steps are counted from the sequence's start whichever way the
        tile's positions run."""
        m = self.m
        x, w = n.inputs[0], n.inputs[1]
        win = n.inputs[2] if len(n.inputs) == 3 else None
        K = n.attr("taps")
        for op in (x, w, win):
            if op is not None and op.op != "arg":  # pragma: no cover - matrix_form rules these out
                raise LoweringError(f"{self.k.layer}: the conv {self.names[n]} in the matrix form reads a computed value")
        extra = set(n.dims) - set(m.heads) - {m.time} - ({ctx} if ctx else set())
        if extra:  # pragma: no cover - matrix_form rules these out
            raise LoweringError(f"{self.k.layer}: {self.names[n]} varies along {sorted(extra)} in context {ctx}")
        rows = f"({t} {'-' if m.reverse else '+'} idx[:, None] - t_lo)"  # each row's step in its sequence
        shape = "[BLOCK_T, " + (f"BLOCK_{ctx}" if ctx in n.dims else "1") + "]"
        lane = [f"offs_{ctx}[None, :]"] if ctx in n.dims else []
        lane_mask = [f"mask_{ctx}[None, :]"] if ctx in n.dims else []

        def ptr(a: Node, time_or_taps: str) -> str:
            tensor = self.tensors[a.attr("name")]
            terms = self.head_terms(tensor, a.dims) + [f"{time_or_taps} * {tensor.name}_s_{m.time if m.time in a.dims else K}"]
            terms += [f"{o} * {tensor.name}_s_{ctx}" for o in lane if ctx in a.dims]
            return tensor.name + "".join(f" + {x}" for x in terms)

        buf.line(f"# {format_node(n, self.names)}: the taps one at a time")
        buf.line(f"{name} = tl.zeros({shape}, tl.float32)")
        buf.line(f"for kk in range(0, size_{K}):")
        with buf.indent():
            buf.line(f"p_kk = {rows} - (size_{K} - 1) + kk  # the step each row reads")
            wm = " & ".join(lane_mask if ctx in w.dims else [])
            buf.line(f"w_kk = tl.load({ptr(w, 'kk')}{f', mask={wm}, other=0.0' if wm else ''}).to(tl.float32)")
            xm = " & ".join([f"{mask_t}[:, None]", "(p_kk >= 0)", "(p_kk < n_steps)"] + lane_mask)
            buf.line(f"x_kk = tl.load({ptr(x, '(t_lo + p_kk)')}, mask={xm}, other=0.0).to(tl.float32)")
            if win is not None:
                wt = self.tensors[win.attr("name")]
                wmask = " & ".join([f"{mask_t}[:, None]", "(p_kk < 0)"] + (lane_mask if ctx in win.dims else []))
                load = f"tl.load({ptr(win, '(p_kk + size_' + K + ')')}, mask={wmask}, other=0.0).to(tl.float32)"
                if wt.optional:
                    buf.line(f"if HAS_{wt.name}:  # steps before the start: the window")
                    with buf.indent():
                        buf.line(f"x_kk += {load}")
                else:
                    buf.line(f"x_kk += {load}")
            buf.line(f"{name} += w_kk * x_kk")

    def time_terms(self, tensor: Tensor, t: str) -> list[str]:
        """The offsets of a tile's steps: ``t`` (the step at position 0 of the tile), then the
        tile's positions: later steps forward, earlier ones in a reverse scan."""
        s = f"{tensor.name}_s_{self.m.time}"
        return [f"{t} * {s}", f"idx[:, None] * {'-' if self.m.reverse else ''}{s}"]

    def positions(self, buf: IndentedBuffer, t: str, start: str, mask: str) -> tuple[str, str]:
        """Print ``t`` (the step at position ``start``, the first of a tile) and return the
        step variable and mask of the tile's decays: the same in a forward scan; in a reverse
        one, the step after each position's (``t + 1``), at positions 1 .. n (position n: the
        final state's extra step, when it is stored)."""
        if not self.m.reverse:
            buf.line(f"{t} = t_lo + {start}")
            return t, mask
        buf.line(f"{t} = t_lo + n_pos - 1 - {start}  # position p is step n_pos - 1 - p")
        buf.line(f"{t}d = {t} + 1  # the decay entering position p: step n_pos - p's")
        buf.line(f"mask_{t}d = ({start} + idx >= p_lo + 1) & ({start} + idx < n_pos + {self.extra()})")
        return f"{t}d", f"mask_{t}d"

    def n_pos(self) -> str:
        """The number of positions: the steps (forward); a reverse scan's padded to whole chunks
        at the end (see ``preamble``)."""
        return "n_pos" if self.m.reverse else "n_steps"

    def row_mask(self, start: str) -> str:
        """The positions of a tile starting at ``start`` that hold a step."""
        if self.m.reverse:
            return f"({start} + idx >= p_lo) & ({start} + idx < n_pos)"
        return f"{start} + idx < n_steps"

    def extra(self) -> int:
        """1 where a reverse scan's final state is stored: one position more (see lower_matrix)."""
        return int(self.m.reverse and any(t.name.startswith("o_") for t in self.k.tensors) and self.k.role == "states")

    def based(self, buf: IndentedBuffer, tensor: str, terms: list[str], base: str) -> str:
        """``tensor`` + ``terms``: the scalar terms first, as ``base`` (said to be a multiple of
        8 elements where the host found every such offset is: 16-byte vector loads), then the
        tile's offsets (with ``[``)."""
        scalar = [x for x in terms if "[" not in x]
        tile = [x for x in terms if "[" in x]
        if not scalar or not tile:
            return tensor + "".join(f" + {x}" for x in terms)
        buf.line(f"{base} = " + " + ".join(scalar))
        buf.line("if ALIGNED:")
        with buf.indent():
            buf.line(f"{base} = tl.multiple_of({base}, 8)")
        return f"{tensor} + {base}" + "".join(f" + {x}" for x in tile)

    def product(self, var: dict[Node, str], factors: tuple[Node, ...]) -> str:
        return " * ".join(var[f] for f in factors) if factors else "1.0"

    def tile(self, buf: IndentedBuffer, what: str, factors: tuple[Node, ...], ctx: str | None, t: str, mask_t: str,
             tag: str, comment: str, raw: bool = False) -> None:
        """``what`` = the product of ``factors`` as a [BLOCK_T, BLOCK_ctx] tile, zero where
        masked. ``raw``: a factor that is one argument [.., time, ctx], loaded as stored (no
        float32 copy of a 16-bit tile: a tensor-core operand as it is)."""
        one = ctx is not None and plain_arg(self.m, factors, ctx) is not None
        var = self.emit(buf, list(factors), ctx, t, mask_t, tag, raw=raw and one)
        if raw and one:  # its masked load is the zero-padded tile
            buf.line(f"{what} = {var[factors[0]]}  # {comment}")
            return
        mask = f"{mask_t}[:, None]" + (f" & mask_{ctx}[None, :]" if ctx else "")
        buf.line(f"{what} = tl.where({mask}, {self.product(var, factors)}, 0.0)  # {comment}")

    def log_decay(self, buf: IndentedBuffer, what: str, t: str, mask_t: str, tag: str) -> None:
        """``what`` = log2 of the decay per step, [BLOCK_T], 0 where masked; ``cum_<what>`` +
        ``cum2_<what>``, its running sum over the tile as a hi + lo pair (differences of two
        running sums then keep float32 accuracy: seen on an H100, a plain cumsum's differences
        cost simple GLA's final state 2e-5 relative error); ``tot_<what>`` (+ ``tot2_``), its
        sum. One-dimensional: a cumsum over a [BLOCK_T, 1] tile fails to compile (Triton 3.6.0,
        seen on an H100)."""
        m = self.m
        var = self.emit(buf, [m.log_decay], None, t, mask_t, tag)
        x = var[m.log_decay]
        scale = "" if m.log_scale == 1.0 else f" * {m.log_scale!r}"
        buf.line(f"{what} = tl.sum(tl.where({mask_t}[:, None], {x}{scale}, 0.0), axis=1)  # log2 of the decay, per step")
        if self.k.role == "states":  # the state is a float32 result: always the pair
            buf.line(f"cum_{what}, cum2_{what} = tl.associative_scan(({what}, {what} * 0.0), 0, _ssmc_sum2)")
        else:
            buf.line("if PREC == 'tf32x3' or PREC == 'bf16split':  # float32-accurate outputs: the pair")
            with buf.indent():
                buf.line(f"cum_{what}, cum2_{what} = tl.associative_scan(({what}, {what} * 0.0), 0, _ssmc_sum2)")
            buf.line("else:  # 16-bit outputs: a plain running sum (its error, ~1e-5, is far below theirs)")
            with buf.indent():
                buf.line(f"cum_{what} = tl.cumsum({what}, axis=0)")
                buf.line(f"cum2_{what} = tl.zeros_like({what})")
        buf.line(f"tot_{what} = tl.sum(tl.where(idx == BLOCK_T - 1, cum_{what}, 0.0), axis=0)")
        buf.line(f"tot2_{what} = tl.sum(tl.where(idx == BLOCK_T - 1, cum2_{what}, 0.0), axis=0)")

    # --- the kernels -----------------------------------------------------------------------

    def params(self) -> list[str]:
        k = self.k
        out = [", ".join([t.name] + [f"{t.name}_s_{d}" for d in t.dims]) + "," for t in k.tensors]
        out.append(", ".join(f"size_{d}" for d in k.size_dims) + ",")
        if k.batch_dim:
            out.append(VARLEN_PARAMS)
        flags = [f"HAS_{t.name}: tl.constexpr" for t in k.tensors if t.optional]
        if k.batch_dim:
            flags.append("VARLEN: tl.constexpr")
        flags.append("ALIGNED: tl.constexpr")
        blocks = ["NUM_STAGES: tl.constexpr", "BLOCK_T: tl.constexpr", "SUB: tl.constexpr",
                  f"BLOCK_{self.m.n}: tl.constexpr", f"BLOCK_{self.m.p}: tl.constexpr",
                  f"EVEN_{self.m.n}: tl.constexpr", f"EVEN_{self.m.p}: tl.constexpr", "PREC: tl.constexpr"]
        out.append(", ".join(flags + blocks) + ",")
        return out

    def kernel(self, buf: IndentedBuffer) -> None:
        k = self.k
        buf.line(f"@triton.jit(do_not_specialize={k.varying_ints()!r})")
        buf.line(f"def {k.name}(")
        with buf.indent():
            buf.lines(self.params())
        buf.line("):")
        with buf.indent():
            self.preamble(buf)
            if k.role == "states":
                self.states_body(buf)
            elif k.role == "dl":
                self.dl_body(buf)
            else:
                self.outputs_body(buf)

    def preamble(self, buf: IndentedBuffer) -> None:
        k, m = self.k, self.m
        buf.line("pid = tl.program_id(0).to(tl.int64)")
        buf.line("rest = pid")
        for d in reversed(k.grid_dims):
            buf.line(f"pid_{d} = rest % size_{d}")
            buf.line(f"rest = rest // size_{d}")
        print_steps(buf, m.batch, m.time)
        if m.reverse:
            buf.line("# positions from the end, padded to whole chunks: the chunks of a reverse scan are a forward")
            buf.line("# one's (the same steps), so both scans' chunk states meet at the same boundaries")
            buf.line("n_pos = tl.cdiv(n_steps, BLOCK_T * SUB) * (BLOCK_T * SUB)")
            buf.line("p_lo = n_pos - n_steps  # positions before it are past the last step")
        buf.line("idx = tl.arange(0, BLOCK_T)")

    def offsets(self, buf: IndentedBuffer, d: str, start: str | None, cast: bool = True) -> None:
        """``offs_<d>``, ``mask_<d>``: this program's block of ``d`` (block ``start``: a program
        id, cast to 32 bits; ``cast`` False: a loop's counter). Where blocks tile ``d``
        exactly (EVEN), the mask is a constant: loads along a contiguous ``d`` vectorize, and
        values along time only are not recomputed per lane (seen on an H100: 255 registers
        and spills with the runtime mask)."""
        base = (f"({start} * BLOCK_{d}).to(tl.int32) + " if cast else f"{start} * BLOCK_{d} + ") if start else ""
        buf.line(f"offs_{d} = {base}tl.arange(0, BLOCK_{d})")
        buf.if_else(f"EVEN_{d}", f"mask_{d} = tl.full([BLOCK_{d}], 1, tl.int1)", f"mask_{d} = offs_{d} < size_{d}")

    def state_ptr(self, buf: IndentedBuffer, t: Tensor, chunk: str | None) -> tuple[str, str]:
        m = self.m
        terms = self.head_terms(t, t.dims)
        if chunk is not None:
            terms.append(f"{chunk} * {t.name}_s__C")
        terms += [f"offs_{m.n}[:, None] * {t.name}_s_{m.n}", f"offs_{m.p}[None, :] * {t.name}_s_{m.p}"]  # 32-bit
        return self.based(buf, t.name, terms, f"b_{t.name}"), f"mask_{m.n}[:, None] & mask_{m.p}[None, :]"

    def states_body(self, buf: IndentedBuffer) -> None:
        k, m = self.k, self.m
        n, p = m.n, m.p
        self.offsets(buf, n, "pid__NB")
        self.offsets(buf, p, "pid__PB")
        buf.line("")
        buf.line(f"# the state [{n}, {p}] of this head, carried in registers")
        buf.line(f"h = tl.zeros([BLOCK_{n}, BLOCK_{p}], tl.float32)")
        if m.h0 is not None:
            t0 = self.tensors[m.h0.attr("name")]
            ptr, mask = self.state_ptr(buf, t0, None)
            buf.line(f"if HAS_{t0.name}:")
            with buf.indent():
                buf.line(f"h = tl.load({ptr}, mask={mask}, other=0.0).to(tl.float32)")
        self.operand_dtype(buf)
        self.hoist(buf, [m.log_decay, *m.u, *m.k])
        hin = next(t for t in k.tensors if t.name.startswith("hin_"))
        extra = self.extra()
        buf.line(f"n_tiles = tl.cdiv({self.n_pos()}{f' + {extra}' if extra else ''}, BLOCK_T)")
        buf.line("for i in tl.range(0, n_tiles, num_stages=NUM_STAGES):  # the tiles in order (loads pipelined)")
        with buf.indent():
            buf.line("r = i * BLOCK_T  # the tile's first position")
            buf.line("if i % SUB == 0:")
            with buf.indent():
                if extra:
                    buf.line(f"if r < {self.n_pos()}:  # not the final state's extra position")
                with buf.indent() if extra else contextlib.nullcontext():
                    ptr, mask = self.state_ptr(buf, hin, "(i // SUB)")
                    buf.line("# the state entering chunk i // SUB (the outputs kernel starts its rows from it)")
                    buf.line(f"tl.store({ptr}, h, mask={mask})")
            buf.line(f"mask_t = {self.row_mask('r')}")
            td, mask_d = self.positions(buf, "t", "r", "mask_t")
            self.log_decay(buf, "la", td, mask_d, "d")
            self.tile(buf, "kt", m.k, n, "t", "mask_t", "k", f"k: the input's {n} factor", raw=True)
            self.tile(buf, "ut", m.u, p, "t", "mask_t", "u", f"u: the input's {p} factor")
            buf.line("# h <- (decay over the tile) h + sum_s (decay from s to the tile's end) k[s] u[s]^T,")
            buf.line("# at float32 accuracy unless PREC says 16-bit: the state and the final state are float32 results")
            buf.line("v = ut * tl.exp2((tot_la - cum_la) + (tot2_la - cum2_la))[:, None]")
            buf.line("if PREC == 'bf16' or PREC == 'fp16':  # a result that needs no float32 accuracy: 16-bit products")
            with buf.indent():
                buf.line("kv = tl.dot(tl.trans(kt.to(DT)), v.to(DT))")
            buf.line("elif PREC == 'bf16split':  # k exact in bf16: v as three bf16 parts, three bf16 products")
            with buf.indent():
                buf.line("kv = _ssmc_dot_bf16x3(tl.trans(kt), v)")
            buf.line("elif PREC == 'bf16x2':  # chunk states only the outputs read (in bf16): v as two bf16 parts")
            with buf.indent():
                buf.line("kv = _ssmc_dot_bf16x2(tl.trans(kt), v)")
            buf.line("else:")
            with buf.indent():
                buf.line("kv = tl.dot(tl.trans(kt.to(tl.float32)), v, input_precision='tf32x3')")
            buf.line("h = h * tl.exp2(tot_la + tot2_la) + kv")
        finals = [t for t in k.tensors if t.name.startswith("o_")]
        if finals:
            buf.line("")
            buf.line("# the final state")
            for t in finals:
                ptr, mask = self.state_ptr(buf, t, None)
                buf.line(f"tl.store({ptr}, h, mask={mask})")

    def operand_dtype(self, buf: IndentedBuffer, ip: bool = False) -> None:
        """``DT``, the products' operand dtype (and ``ip``: ``IP``, tl.dot's input precision):
        PREC (``choose_matrix``) names them."""
        buf.line("if PREC == 'bf16':  # 16-bit inputs stay 16-bit on tensor cores")
        with buf.indent():
            buf.line("DT = tl.bfloat16")
        buf.line("elif PREC == 'fp16':")
        with buf.indent():
            buf.line("DT = tl.float16")
        buf.line("else:  # float32-accurate products (tf32x3, or bf16split: a bf16 operand times three bf16 parts)")
        with buf.indent():
            buf.line("DT = tl.float32")
        if ip:
            buf.line("IP: tl.constexpr = 'tf32' if PREC == 'bf16' or PREC == 'fp16' else 'tf32x3'  # (float32 operands only)")

    def outputs_body(self, buf: IndentedBuffer) -> None:
        m = self.m
        n, p = m.n, m.p
        self.operand_dtype(buf, ip=True)
        self.hoist(buf, [m.log_decay, *m.u, *m.k, *m.c, *(x for x, _ in m.stores)])
        buf.line("r0 = pid__RT * BLOCK_T  # this program's rows: [r0, r0 + BLOCK_T)")
        buf.line(f"if r0 < {self.n_pos()}:")
        with buf.indent():
            buf.line("c = r0 // (BLOCK_T * SUB)  # the chunk")
            buf.line("j_lo = c * SUB  # its first tile")
            self.offsets(buf, n, None)  # N whole
            self.offsets(buf, p, "pid__PB")
            buf.line(f"mask_r = {self.row_mask('r0')}")
            td, mask_d = self.positions(buf, "t_r", "r0", "mask_r")
            if m.summed:
                buf.line(f"acc = tl.zeros([BLOCK_T, BLOCK_{p}], tl.float32)  # summed over {', '.join(m.summed)}")
            with self.summed_heads(buf):
                self.outputs_of_head(buf, td, mask_d)
            buf.line(f"# the epilogue, [BLOCK_T, BLOCK_{p}] tiles")
            var = self.emit(buf, [x for x, _ in m.stores], p, "t_r", "mask_r", "y", bound={m.readout: "acc"})
            for node, names in m.stores:
                for name in names:
                    t = self.tensors[name]
                    terms = self.head_terms(t, node.dims) + self.time_terms(t, "t_r")
                    masks = ["mask_r[:, None]"]
                    if p in node.dims:
                        terms.append(f"offs_{p}[None, :] * {t.name}_s_{p}")
                        masks.append(f"mask_{p}[None, :]")
                    ptr = self.based(buf, t.name, terms, f"b_{t.name}")
                    value = var[node]  # [BLOCK_T, BLOCK_P], or [BLOCK_T, 1] lacking P
                    buf.line(f"tl.store({ptr}, {value}.to({t.name}.dtype.element_ty), mask={' & '.join(masks)})")

    @contextlib.contextmanager
    def summed_heads(self, buf: IndentedBuffer):
        """Where the result is summed over head dims (``MatrixForm.summed``): a loop over each,
        its counter as that head's program id, the head's rows added into ``acc`` (the
        innermost loop where a chunk is one tile: its loads pipelined, NUM_STAGES); values
        printed in it hold for the last head only, so none is remembered past it."""
        m = self.m
        with contextlib.ExitStack() as stack:
            for d in m.summed:
                buf.line(f"for h_{d} in tl.range(0, size_{d}, num_stages=NUM_STAGES):  # the heads summed, in order (no atomics)")
                stack.enter_context(buf.indent())
                buf.line(f"pid_{d} = pid * 0 + h_{d}  # 64-bit, as the program ids (the interpreter's counter is an int)")
            yield
        if m.summed:
            self.memo.clear()

    def outputs_of_head(self, buf: IndentedBuffer, td: str, mask_d: str) -> None:
        """One head's rows of the outputs kernel, added into ``acc``: the chunk's earlier tiles
        and its entry state."""
        k, m = self.k, self.m
        n, p = m.n, m.p
        self.log_decay(buf, "lr", td, mask_d, "d")
        self.tile(buf, "ct", m.c, n, "t_r", "mask_r", "c", f"c: the readout's {n} factor", raw=True)
        buf.line("if PREC != 'bf16split':")
        with buf.indent():
            buf.line("ct = ct.to(DT)")
        buf.line("# off: log2 of the decay from the end of column tile j to the start of the rows")
        buf.line("# (for j = the rows' own tile, minus the tile's total: its rows and columns coincide)")
        buf.line("off = -(tot_lr + tot2_lr)")
        if not m.summed:
            buf.line(f"acc = tl.zeros([BLOCK_T, BLOCK_{p}], tl.float32)")
        loop = "for jj in range(0, pid__RT - j_lo + 1):  # the chunk's tiles up to this one, last first"
        # chunks of one tile (a GPU's): the rows' own tile is the only column tile, its steps,
        # masks and decays the rows' (printed once); no loop, so in a kernel that sums heads
        # the heads' loop is the innermost (a loop of one trip inside it held ~70 more registers
        # a thread, sm_90)
        buf.line("if SUB == 1:  # the chunk is the rows' own tile")
        memo = {t: dict(v) for t, v in self.memo.items()}
        with buf.indent():
            buf.line("jj = 0")
            self.column_tile(buf, own=True)
        self.memo = memo  # what that branch printed, the other has not
        buf.line("else:")
        with buf.indent():
            buf.line(loop)
            with buf.indent():
                self.column_tile(buf)
        hin = self.tensors[next(t.source for t in k.tensors if t.name.startswith("hin_"))]
        ptr, mask = self.state_ptr(buf, hin, "c")
        buf.line("# the chunk's entry state, decayed to each row")
        buf.line(f"h_in = tl.load({ptr}, mask={mask}, other=0.0)")
        buf.if_else("PREC == 'bf16split'", "ch = _ssmc_dot_bf16x3(ct, h_in)", "ch = tl.dot(ct, h_in.to(DT), input_precision=IP)",
                    "  # c exact in bf16: h_in as three bf16 parts, three bf16 products")
        buf.line("acc += ch * tl.exp2((cum_lr + cum2_lr) + off)[:, None]")
        if m.side:
            self.side_sums(buf)

    def side_sums(self, buf: IndentedBuffer) -> None:
        """A decay gradient's sums per row (``MatrixForm.side``, lower_matrix.with_sides): the
        entry state's part of the rows (``ch``, decayed) times its factor, summed over this
        program's block of P, stored per head and step (one slot per block)."""
        m = self.m
        p = m.p
        t = next(x for x in self.k.tensors if x.name.startswith("side_"))
        self.tile(buf, "st", m.side, p, "t_r", "mask_r", "s", f"a decay gradient's factor along {p}")
        buf.line(f"sd = tl.sum(ch.to(tl.float32) * st, axis=1) * tl.exp2((cum_lr + cum2_lr) + off)  # summed over this block of {p}")
        s_t = f"{t.name}_s_{m.time}"
        terms = self.head_terms(t, t.dims) + [f"pid__PB * {t.name}_s__P{p}", f"t_r * {s_t}", f"idx * {'-' if m.reverse else ''}{s_t}"]
        buf.line(f"tl.store({t.name} + {' + '.join(terms)}, sd, mask=mask_r)")

    def column_tile(self, buf: IndentedBuffer, own: bool = False) -> None:
        """Column tile j = pid__RT - jj of the rows' chunk (jj = 0: the rows' own), added into
        ``acc``: (c[t] . k[s]) times the decay from s to t, times u[s]. ``own``: the rows' own
        tile, whose steps, masks and decays are the rows' (the same values, not printed again)."""
        m = self.m
        n, p = m.n, m.p
        if own:
            buf.line("mask_c = mask_r  # the rows' own tile: their steps and decays")
            buf.line("cum_lc, cum2_lc, tot_lc, tot2_lc = cum_lr, cum2_lr, tot_lr, tot2_lr")
            t_c = "t_r"
        else:
            buf.line("j = pid__RT - jj")
            buf.line(f"mask_c = {self.row_mask('j * BLOCK_T')}")
            td, mask_d = self.positions(buf, "t_c", "j * BLOCK_T", "mask_c")
            self.log_decay(buf, "lc", td, mask_d, "e")
            t_c = "t_c"
        self.tile(buf, "kt", m.k, n, t_c, "mask_c", "k", f"k: the input's {n} factor", raw=True)
        self.tile(buf, "ut", m.u, p, t_c, "mask_c", "u", f"u: the input's {p} factor")
        buf.if_else("PREC == 'bf16split'", "g = tl.dot(ct, tl.trans(kt))  # c[t] . k[s]",
                    "g = tl.dot(ct, tl.trans(kt.to(DT)), input_precision=IP)  # c[t] . k[s]",
                    "  # c and k exact in bf16: their product exact in one bf16 product")
        buf.line("# decay from step s to step t: 2^(cum[t] + off + tot - cum[s]); s <= t in the rows' own tile")
        buf.line("e = (cum_lr[:, None] - cum_lc[None, :]) + (cum2_lr[:, None] - cum2_lc[None, :]) + (off + (tot_lc + tot2_lc))")
        buf.line("keep = (jj > 0) | (idx[:, None] >= idx[None, :])")
        buf.line("g = g * tl.exp2(tl.where(keep, e, float('-inf')))")
        buf.line("acc += tl.dot(g.to(DT), ut.to(DT), input_precision=IP)")
        buf.line("off += tot_lc + tot2_lc")


__all__ = ["MatrixPrinter"]
