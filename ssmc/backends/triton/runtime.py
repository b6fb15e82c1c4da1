"""Fixed Triton kernels the generated ones rely on (not generated per layer)."""

import triton
import triton.language as tl


# the chunk count and the state's size vary with the length and batch: never specialized (a
# count of 47 chunks after 32 compiled a second binary, 100 ms, on an H100)
@triton.jit
def _combine(p1, s1, p2, s2):
    # chunk 1 then chunk 2: h -> p2 * (p1 * h + s1) + s2
    return p1 * p2, p2 * s1 + s2


@triton.jit(do_not_specialize=["n_states", "M"])
def chunk_combine(P, S, HIN, n_states, M, BLOCK: tl.constexpr, GROUP: tl.constexpr):
    """Pass states across the chunks of the chunked strategy, in order.

    P, S: [n_states, M] float32: each chunk's decay product and its end state when started
    from zero (the first chunk from the real initial state), for every chunk but the last (no
    chunk follows it; its own kernel stores the final state). Writes HIN[c + 1], the state
    entering chunk c + 1, for each of them (HIN[0] is not read: chunk 0 starts from h0).

    GROUP chunks at a time: one [GROUP, BLOCK] tile of each (a column per thread), combined
    along the chunks (the scan of the maps h -> p h + s), so one load latency per group, not
    per chunk (B2 L8192 D2048, 31 chunks on an H100: 33.6 us a chunk at a time, 7.7 with
    groups of 4). Rows past the last chunk load the identity map and store nothing."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    rows = tl.arange(0, GROUP)
    mask = offs < M
    m64 = M.to(tl.int64)
    h = tl.zeros([BLOCK], tl.float32)
    for c in range(0, n_states, GROUP):
        live = ((c + rows) < n_states)[:, None] & mask[None, :]
        at = (c + rows).to(tl.int64)[:, None] * m64 + offs[None, :]
        p = tl.load(P + at, mask=live, other=1.0)
        s = tl.load(S + at, mask=live, other=0.0)
        pp, ss = tl.associative_scan((p, s), 0, _combine)  # in order: the maps do not commute
        hs = pp * h[None, :] + ss
        tl.store(HIN + m64 + at, hs, mask=live)
        h = tl.sum(tl.where(rows[:, None] == GROUP - 1, hs, 0.0), axis=0)  # the last row (a sum of zeros and it)
