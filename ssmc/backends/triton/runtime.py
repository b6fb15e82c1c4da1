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


@triton.jit
def _combine_complex(pr1, pi1, sr1, si1, pr2, pi2, sr2, si2):
    # chunk 1 then chunk 2, complex: h -> p2 * (p1 * h + s1) + s2
    return (pr1 * pr2 - pi1 * pi2, pr1 * pi2 + pi1 * pr2,
            pr2 * sr1 - pi2 * si1 + sr2, pr2 * si1 + pi2 * sr1 + si2)


@triton.jit(do_not_specialize=["n_states", "M", "INNER"])
def chunk_combine_complex(P, S, HIN, n_states, M, INNER, BLOCK: tl.constexpr, GROUP: tl.constexpr):
    """``chunk_combine`` for a complex state: P, S, HIN hold 2 M floats a chunk, each complex
    element's real and imaginary parts INNER apart (the parts' dim followed by dims of INNER
    elements in all)."""
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = e < M
    inner = INNER.to(tl.int64)
    offs = (e // inner) * 2 * inner + e % inner  # the real part; the imaginary one INNER on
    rows = tl.arange(0, GROUP)
    m2 = 2 * M.to(tl.int64)
    hr = tl.zeros([BLOCK], tl.float32)
    hi = tl.zeros([BLOCK], tl.float32)
    for c in range(0, n_states, GROUP):
        live = ((c + rows) < n_states)[:, None] & mask[None, :]
        at = (c + rows).to(tl.int64)[:, None] * m2 + offs[None, :]
        pr = tl.load(P + at, mask=live, other=1.0)
        pi = tl.load(P + at + inner, mask=live, other=0.0)
        sr = tl.load(S + at, mask=live, other=0.0)
        si = tl.load(S + at + inner, mask=live, other=0.0)
        ppr, ppi, ssr, ssi = tl.associative_scan((pr, pi, sr, si), 0, _combine_complex)
        outr = ppr * hr[None, :] - ppi * hi[None, :] + ssr
        outi = ppr * hi[None, :] + ppi * hr[None, :] + ssi
        tl.store(HIN + m2 + at, outr, mask=live)
        tl.store(HIN + m2 + at + inner, outi, mask=live)
        last = rows[:, None] == GROUP - 1
        hr = tl.sum(tl.where(last, outr, 0.0), axis=0)
        hi = tl.sum(tl.where(last, outi, 0.0), axis=0)
