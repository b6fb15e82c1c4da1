"""Printing a matrix scan's decay gradient (``lower_matrix_dl``: the ``matrix_scan_dl`` op), one
program per chunk of steps. A mixin of ``print_matrix.MatrixPrinter``, whose helpers (``tile``,
``log_decay``, ``state_ptr``, ``offsets``, ``hoist``) it uses."""

from __future__ import annotations

from ssmc.backends.triton.buffer import IndentedBuffer


class DecayGradientPrinting:
    """The decay gradient's kernel body."""

    def dl_body(self, buf: IndentedBuffer) -> None:
        """A matrix scan's decay gradient (the ``matrix_scan_dl`` op) for one chunk of steps:
        dl[i] = sum of w(s, t) = (decay from s to t) (q[t] . k[s]) (dy[t] . v[s]) over the
        pairs s < i <= t, split by where s and t lie: both in the chunk (a masked [BLOCK_T,
        BLOCK_T] sum); s before it (the entry state's part of y[t], times dy[t], for t >= i);
        t after it (the exit cotangent's part of dv[s], times v[s], for s < i); both outside
        (the two states' inner product). Every term is a sum of the pairs it holds: nothing
        cancels, so 16-bit products serve (the scans whose results it would otherwise add up,
        y and dv, need no float32 accuracy)."""
        k, m = self.k, self.m
        n, p = m.n, m.p
        own, cot = [t for t in k.tensors if t.name.startswith("hin_")]
        sides = {t.dims[0]: t for t in k.tensors if t.name.startswith("side_")}  # lower_matrix.with_sides
        self.operand_dtype(buf, ip=True)
        self.hoist(buf, [m.log_decay, *m.u, *m.k, *m.c, *m.dy])
        buf.line("c = pid__C  # the chunk: BLOCK_T steps, the chunk states' span")
        buf.line("r0 = c * BLOCK_T")
        buf.line("if r0 < n_steps:")
        with buf.indent():
            self.offsets(buf, n, None)  # N whole
            buf.line("mask_r = r0 + idx < n_steps")
            buf.line("t_r = t_lo + r0")
            self.log_decay(buf, "lr", "t_r", "mask_r", "d")
            buf.line("# the decay of the step after the chunk: the cotangent's chunk state is the one it decays")
            buf.line("t_n = t_lo + r0 + BLOCK_T")
            buf.line("mask_n = (idx == 0) & (r0 + BLOCK_T + idx < n_steps)")
            self.log_decay(buf, "ln", "t_n", "mask_n", "f")
            self.tile(buf, "kt", m.k, n, "t_r", "mask_r", "k", f"k: the input's {n} factor", raw=True)
            self.tile(buf, "qt", m.c, n, "t_r", "mask_r", "q", f"q: the readout's {n} factor", raw=True)
            buf.line("# (q[t] . k[s]) (decay from s to t) for the pairs s < t of the chunk")
            buf.line("g = tl.dot(qt.to(DT), tl.trans(kt.to(DT)), input_precision=IP)")
            buf.line("e = (cum_lr[:, None] - cum_lr[None, :]) + (cum2_lr[:, None] - cum2_lr[None, :])")
            buf.line("g = g * tl.exp2(tl.where(idx[:, None] > idx[None, :], e, float('-inf')))")
            buf.line("dyv = tl.zeros([BLOCK_T, BLOCK_T], tl.float32)  # dy[t] . v[s]")
            buf.line("a_in = tl.zeros([BLOCK_T], tl.float32)  # dy[t] . (the entry state's part of y[t])")
            buf.line("a_out = tl.zeros([BLOCK_T], tl.float32)  # v[s] . (the exit cotangent's part of dv[s])")
            buf.line(f"across = tl.zeros([BLOCK_{n}], tl.float32)  # <entry state, exit cotangent>, summed over {p}")
            buf.line("n_cs = tl.cdiv(n_steps, BLOCK_T)  # this sequence's chunks (a reverse scan's from the end)")
            buf.line(f"for pb in tl.range(0, tl.cdiv(size_{p}, BLOCK_{p}), num_stages=NUM_STAGES):  # blocks of {p} (loads pipelined where NUM_STAGES > 1)")
            with buf.indent():
                self.offsets(buf, p, "pb", cast=False)
                self.tile(buf, "vt", m.u, p, "t_r", "mask_r", "u", f"v: the input's {p} factor")
                self.tile(buf, "dyt", m.dy, p, "t_r", "mask_r", "w", "dy: the outputs' cotangent")
                buf.line("dyv += tl.dot(dyt.to(DT), tl.trans(vt.to(DT)), input_precision=IP)")
                ptr, mask = self.state_ptr(buf, own, "c")
                buf.line(f"h_in = tl.load({ptr}, mask={mask}, other=0.0)  # the state entering the chunk")
                ptr, mask = self.state_ptr(buf, cot, "(n_cs - 1 - c)")
                buf.line(f"g_out = tl.load({ptr}, mask={mask}, other=0.0)  # the cotangent of the step after it, undecayed")
                if not sides:
                    buf.line("y_in = tl.dot(qt.to(DT), h_in.to(DT), input_precision=IP) * tl.exp2(cum_lr + cum2_lr)[:, None]")
                    buf.line("a_in += tl.sum(dyt * y_in, axis=1)")
                    buf.line("dv_out = tl.dot(kt.to(DT), g_out.to(DT), input_precision=IP)")
                    buf.line("a_out += tl.sum(vt * dv_out, axis=1) * tl.exp2((tot_lr - cum_lr) + (tot2_lr - cum2_lr))")
                buf.line("across += tl.sum(h_in.to(tl.float32) * g_out.to(tl.float32), axis=1)  # (16-bit where stored so)")
            if sides:  # a_in and a_out (the latter decayed through the step after the chunk) as dq's and dk's kernels stored them
                for var, d, what in (("a_in", "_SO", "dq's"), ("a_out", "_SC", "dk's")):
                    t = sides[d]
                    terms = self.head_terms(t, t.dims) + [f"sb * {t.name}_s_{d}", f"(t_r + idx) * {t.name}_s_{m.time}"]
                    buf.line(f"for sb in range(0, size_{d}):  # {what} blocks of {n}")
                    with buf.indent():
                        buf.line(f"{var} += tl.load({t.name} + {' + '.join(terms)}, mask=mask_r, other=0.0)")
            buf.line("w = g * dyv")
            buf.line("# both in the chunk: for each i the rows t >= i of the sums over s < i")
            buf.line("pre = tl.cumsum(w, axis=1) - w")
            buf.line("inner = tl.sum(tl.where(idx[:, None] >= idx[None, :], pre, 0.0), axis=0)")
            buf.line("from_in = tl.sum(a_in, axis=0) - tl.cumsum(a_in, axis=0) + a_in  # t >= i")
            buf.line("from_out = tl.cumsum(a_out, axis=0) - a_out  # s < i")
            buf.line("outside = tl.sum(across, axis=0) * tl.exp2(tot_lr + tot2_lr)")
            if sides:
                buf.line("dl = inner + from_in + from_out + outside * tl.exp2(tot_ln + tot2_ln)")
            else:
                buf.line("dl = inner + from_in + (from_out + outside) * tl.exp2(tot_ln + tot2_ln)")
            for node, names in m.stores:
                for name in names:
                    t = self.tensors[name]
                    terms = self.head_terms(t, node.dims) + [f"t_r * {t.name}_s_{m.time}"]
                    buf.line(f"b_{t.name} = " + " + ".join(terms))
                    ptr = f"{t.name} + b_{t.name} + idx * {t.name}_s_{m.time}"
                    buf.line(f"tl.store({ptr}, dl.to({t.name}.dtype.element_ty), mask=mask_r)")


__all__ = ["DecayGradientPrinting"]
