"""Printing the conv ops' statements (``WindowLoad``, ``TapAt``, ``TapsShift``, ``WindowHead``:
see ``lower_conv``): a conv's inputs read at the K steps up to the current one along the taps
axis, the window before the sequence's start. A mixin of ``codegen._Printer``: it uses the
printer's addressing and the current step's position in every strategy (sequential, tiled,
bidir)."""

from __future__ import annotations

from ssmc.backends.triton.buffer import IndentedBuffer
from ssmc.backends.triton.kernel_ir import TapAt, TapsShift, Tensor, WindowHead, WindowLoad
from ssmc.ir.dims import Dims


class ConvPrinting:
    """Positions in the sequence, and the conv ops' loads."""

    def position(self, step: int) -> str:
        """The current step's position in its sequence (counted from its start whichever way
        the loop walks): ``t0`` and the unrolled step, or the tile's steps (tiled)."""
        k = self.k
        if k.strategy == "bidir":  # chunks start at t0 in time order
            return f"(t0 + {step})"
        at = self.expand("idx_T", 0) if k.strategy == "tiled" else str(step)
        return f"(n_steps - 1 - t0 - {at})" if k.reverse else f"(t0 + {at})"

    def at_positions(self, t: Tensor, dims: Dims, p: str) -> tuple[str, str | None]:
        """Pointer and mask of ``t`` (with the time dim) at positions ``p`` of this program's
        sequence, outside the time loop's pointers."""
        k = self.k
        terms = [f"{'row' if d == k.batch_dim else 'pid'}_{d} * {t.name}_s_{d}" for d in dims if d in k.grid_dims]
        terms.append(f"(t_lo + {p}) * {t.name}_s_{k.time_dim}")
        masks = []
        for d in dims:
            if d in k.block_dims:
                ax = self.axes.index(d)
                terms.append(f"{self.expand('offs_' + d, ax)} * {t.name}_s_{d}")
                masks.append(self.expand("mask_" + d, ax))
        return f"{t.name} + " + " + ".join(terms), " & ".join(masks) or None

    def taps(self, d: str) -> tuple[str, str, int]:
        ax = self.axes.index(d)
        return self.expand(f"offs_{d}", ax), self.expand(f"mask_{d}", ax), ax

    def window_load(self, buf: IndentedBuffer, s: WindowLoad, step: int) -> None:
        """A conv's inputs at positions p = t-(K-1) .. t of the sequence (``end``: n-K .. n-1;
        ``ahead``: t+(K-1) .. t) along the taps axis: from the tensor where 0 <= p < n, else
        (before the start) from the window at index K + p."""
        k, K = self.k, s.taps
        t = self.tensors[s.tensor]
        offs, mask_k, _ = self.taps(K)
        if s.end:
            p = f"(n_steps - size_{K} + {offs})"
            ptr, mask = self.at_positions(t, s.dims, p)
        else:
            shift = f"(size_{K} - 1 - {offs})" if s.ahead else f"({offs} - (size_{K} - 1))"
            p = f"({self.position(step)} + {shift})"
            ptr, mask = self.address(t, s.dims, step)
            ptr += f" + {shift} * {t.name}_s_{k.time_dim}"
        inside = f"({p} < n_steps)" if s.ahead else f"({p} >= 0)"
        mask = " & ".join(x for x in (mask, inside, mask_k) if x)
        buf.line(f"# {s.comment}")
        buf.line(f"{s.target} = tl.load({ptr}, mask={mask}, other=0.0).to(tl.float32)")
        if s.window is None:
            return
        w = self.tensors[s.window]
        wptr, wmask = self.address(w, tuple(d for d in s.window_dims if d != K))
        wptr += f" + ({p} + size_{K}) * {w.name}_s_{K}"
        wmask = " & ".join(x for x in (wmask, f"({p} < 0)", mask_k) if x)
        load = f"{s.target} + tl.load({wptr}, mask={wmask}, other=0.0).to(tl.float32)"
        if w.optional:
            buf.line(f"if HAS_{w.name}:  # steps before the start: the window")
            with buf.indent():
                buf.line(f"{s.target} = {load}")
        else:
            buf.line(f"{s.target} = {load}  # steps before the start: the window")

    def tap_at(self, buf: IndentedBuffer, s: TapAt, step: int) -> None:
        offs, _, ax = self.taps(s.taps)
        slot = f"({self.position(step)} - n_steps + size_{s.taps})"
        buf.line(f"{s.target} = tl.sum(tl.where({offs} == {slot}, {s.source}, 0.0), axis={ax}, keep_dims=True)  # {s.comment}")

    def taps_shift(self, buf: IndentedBuffer, s: TapsShift) -> None:
        t = self.tensors[s.tensor]
        offs, mask_k, _ = self.taps(s.taps)
        ptr, mask = self.address(t, tuple(d for d in s.dims if d != s.taps))
        idx = f"({offs} + {s.shift})"
        ptr += f" + {idx} * {t.name}_s_{s.taps}"
        mask = " & ".join(x for x in (mask, f"({idx} >= 0)", f"({idx} < size_{s.taps})", mask_k) if x)
        buf.line(f"# {s.comment}")
        load = f"tl.load({ptr}, mask={mask}, other=0.0).to(tl.float32)"
        if t.optional:
            buf.line(f"{s.target} = tl.zeros({self.shape(s.dims, False)}, tl.float32)")
            buf.line(f"if HAS_{t.name}:")
            with buf.indent():
                buf.line(f"{s.target} = {load}")
        else:
            buf.line(f"{s.target} = {load}")

    def window_head(self, buf: IndentedBuffer, s: WindowHead) -> None:
        K = s.taps
        offs, mask_k, _ = self.taps(K)
        g, w = self.tensors[s.tensor], self.tensors[s.weights]
        buf.line(f"# {s.comment}: lane j sums w[k] g[j-1-k] over the taps k")
        buf.line(f"{s.target} = tl.zeros({self.shape(s.out_dims, False)}, tl.float32)")
        buf.line(f"for kk in range(0, size_{K}):")
        with buf.indent():
            wptr, wmask = self.address(w, tuple(d for d in s.weight_dims if d != K))
            wm = f", mask={wmask}, other=0.0" if wmask else ""
            buf.line(f"w_kk = tl.load({wptr} + kk * {w.name}_s_{K}{wm}).to(tl.float32)")
            p = f"({offs} - 1 - kk)"
            gptr, gmask = self.at_positions(g, s.dims, p)
            gmask = " & ".join(x for x in (gmask, f"({p} >= 0)", f"({p} < n_steps)", mask_k) if x)
            buf.line(f"{s.target} += w_kk * tl.load({gptr}, mask={gmask}, other=0.0).to(tl.float32)")
