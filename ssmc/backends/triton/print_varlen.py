"""How every generated kernel finds its steps: the whole row of batch slot pid_B, or, in a
packed batch (VARLEN), the sequence that slot takes (longest first, binding.Packed.order) within
row 0. One definition for the tensor-form and matrix-form printers."""

from __future__ import annotations

from ssmc.backends.triton.buffer import IndentedBuffer

# the kernel parameters of a packed batch, after the sizes
VARLEN_PARAMS = "cu_seqlens, seq_order,  # int32: a packed batch's offsets [S + 1], its sequences longest first [S] (VARLEN)"


def print_steps(buf: IndentedBuffer, batch: str | None, time_dim: str) -> None:
    """``t_lo`` and ``n_steps`` (this program's first step and number of steps) and, with a
    batch dim, ``row_<batch>`` (the row its tensors are read at)."""
    if not batch:
        buf.line("t_lo = 0")
        buf.line(f"n_steps = size_{time_dim}")
        return
    b = batch
    buf.line(f"if VARLEN:  # a packed batch, in row 0: slot pid_{b} takes a sequence, longest first")
    with buf.indent():
        buf.line(f"pid_{b} = tl.load(seq_order + pid_{b}).to(tl.int64)")
        buf.line(f"t_lo = tl.load(cu_seqlens + pid_{b}).to(tl.int64)")
        buf.line(f"n_steps = tl.load(cu_seqlens + pid_{b} + 1).to(tl.int64) - t_lo")
        buf.line(f"row_{b} = 0")
    buf.line("else:")
    with buf.indent():
        buf.line("t_lo = 0")
        buf.line(f"n_steps = size_{time_dim}")
        buf.line(f"row_{b} = pid_{b}")
