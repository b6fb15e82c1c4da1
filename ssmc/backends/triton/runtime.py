"""Fixed Triton kernels the generated ones rely on (not generated per layer)."""

import triton
import triton.language as tl


# the chunk count and the state's size vary with the length and batch: never specialized (a
# count of 47 chunks after 32 compiled a second binary, 100 ms, on an H100)
@triton.jit(do_not_specialize=["n_chunks", "M"])
def chunk_combine(P, S, HIN, HFIN, n_chunks, M, HAS_FINAL: tl.constexpr, BLOCK: tl.constexpr):
    """Pass states across the chunks of the chunked strategy, in order.

    P, S: [n_chunks, M] float32: each chunk's decay product and its end state when started
    from zero (the first chunk from the real initial state). Writes HIN[c] (the state entering
    chunk c, for c >= 1) and, if HAS_FINAL, HFIN (the state after the last chunk)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    h = tl.zeros([BLOCK], tl.float32)
    for c in range(n_chunks):
        row = c * M.to(tl.int64)
        h = tl.load(P + row + offs, mask=mask, other=1.0) * h + tl.load(S + row + offs, mask=mask, other=0.0)
        if c + 1 < n_chunks:
            tl.store(HIN + row + M + offs, h, mask=mask)
    if HAS_FINAL:
        tl.store(HFIN + offs, h, mask=mask)
