"""No recompiles for new lengths (issue 9): after a warm-up, calls at new lengths, batch sizes
and packed batches generate no new kernel source (here and on the GPU) and compile no new
Triton binary (on the GPU, counted through Triton's compile hook); the first call at a new
length then costs about what a warm call does."""

import time

import pytest
import torch
from conftest import DEVICE
from mamba1 import mamba1

import ssmc


def _inputs(B, L, D, N, dtype, grad=False, seed=0):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    t = {k: torch.randn(B, L, D, device=DEVICE, generator=g, dtype=dtype) for k in ("x", "dt", "z")}
    t.update({k: torch.randn(B, L, N, device=DEVICE, generator=g, dtype=dtype) for k in ("B", "C")})
    t["A_log"] = torch.log(torch.arange(1, N + 1, device=DEVICE, dtype=torch.float32)).repeat(D, 1)
    t["D"] = torch.ones(D, device=DEVICE)
    t["dt_bias"] = torch.full((D,), -2.0, device=DEVICE)
    if grad:
        for v in t.values():
            v.requires_grad_(True)
    return t


def _sources(c) -> int:
    n = c.stats["sources"]
    if c._backward is not None:
        n += c._backward.stats["sources"]
    return n


class _CountCompiles:
    """Counts Triton compilations (its post-compile hook) while active."""

    def __enter__(self):
        import triton

        self.knobs = triton.knobs.runtime
        self.saved = self.knobs.jit_post_compile_hook
        self.n = 0

        def hook(**kw):
            self.n += 1

        self.knobs.jit_post_compile_hook = hook
        return self

    def __exit__(self, *exc):
        self.knobs.jit_post_compile_hook = self.saved


def _run(c, t, grad):
    out = c(**t)
    if grad:
        (out["y"].float().sum() + out["h_final"].sum()).backward()
    return out


def _timed(c, t, grad) -> float:
    """Wall seconds of one call of ``c`` on ``t``, synchronized (a GPU's)."""
    t0 = time.perf_counter()
    _run(c, t, grad)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def _warm(c, t, grad) -> float:
    """The median of three warm calls' wall seconds."""
    return sorted(_timed(c, t, grad) for _ in range(3))[1]


@pytest.mark.parametrize("grad", [False, True])
def test_new_lengths_and_batches_generate_no_source(grad):
    """Warm-up at one long and one short length (the register-held form starts at
    schedule.REGISTER_MIN_STEPS steps) and one packed batch; then other lengths (1, odd, past
    the warm-up's, not multiples of any block), batch sizes and packings add no source."""
    c = ssmc.compile(mamba1)
    D, N = 5, 4
    for B, L in ((2, 9), (2, 3)):
        _run(c, _inputs(B, L, D, N, torch.float32, grad), grad)
    cu = torch.tensor([0, 4, 13], dtype=torch.int32, device=DEVICE)
    c(**{k: v for k, v in _inputs(1, 13, D, N, torch.float32).items()}, cu_seqlens=cu)
    warm = _sources(c)
    assert warm > 0
    for B, L in ((1, 1), (3, 2), (2, 7), (1, 17), (3, 40), (1, 129)):
        _run(c, _inputs(B, L, D, N, torch.float32, grad, seed=L), grad)
    for lens in ((1,), (5, 1, 30), (2, 2, 2, 2, 9)):
        offs = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
        c(**_inputs(1, int(offs[-1]), D, N, torch.float32, seed=len(lens)), cu_seqlens=offs)
    assert _sources(c) == warm


@pytest.mark.gpu
@pytest.mark.parametrize("grad", [False, True])
def test_new_length_compiles_nothing_on_gpu(grad):
    """On the GPU: after warm-up (L 2048, and 4 for the short form), calls at new lengths and
    a new batch size compile no Triton binary, and the first call at a new length (wall clock,
    synchronized) takes under 2x a warm call at that length, at the bench's B8 D2048 around L
    2048. (A first call's planning costs ~0.45 ms of host time more than a replayed call, H100
    host: at L 1000 a forward alone took 0.85 ms first and 0.40 ms warm, bench/NOTES.md.)"""
    c = ssmc.compile(mamba1)
    B, D, N = 8, 2048, 16
    for L in (2048, 4):
        _run(c, _inputs(B, L, D, N, torch.bfloat16, grad), grad)
    torch.cuda.synchronize()
    sources = _sources(c)
    with _CountCompiles() as count:
        for b, L in ((B, 1900), (B, 3001), (6, 2500)):
            t = _inputs(b, L, D, N, torch.bfloat16, grad, seed=L)
            first = _timed(c, t, grad)
            warm_s = _warm(c, t, grad)
            print(f"B{b} L{L} grad={grad}: first call {first * 1e3:.3f} ms, warm {warm_s * 1e3:.3f} ms")
            assert first < 2 * warm_s, (L, first, warm_s)
    assert count.n == 0
    assert _sources(c) == sources


def _unspecialized(fn) -> set:
    """The parameters ``fn`` (a Triton JIT or interpreted function) does not specialize on."""
    names = getattr(fn, "do_not_specialize", None)
    if names is None:
        names = (getattr(fn, "kwargs", None) or {}).get("do_not_specialize") or ()
    return {fn.arg_names[i] if isinstance(i, int) else i for i in names}


@pytest.mark.parametrize("grad", [False, True])
def test_every_int_that_varies_with_sizes_is_unspecialized(grad):
    """Triton compiles a new binary for an int argument that becomes 1 or a multiple of 16 (its
    specialization); every int argument that differs between calls at other lengths and batch
    sizes must be one it does not specialize on (found: the chunk count of chunk_combine)."""
    c = ssmc.compile(mamba1, chunks=3)
    for B, L in ((2, 9), (1, 16), (3, 47), (2, 33), (1, 100)):
        _run(c, _inputs(B, L, 5, 4, torch.float32, grad, seed=L), grad)
    compiled = [c] + ([c._backward] if grad else [])
    checked = 0
    for cl in compiled:
        by_fn: dict = {}
        for recipe in cl._recipes.values():
            for fn, _, _, template, _, _ in recipe.launches:
                if callable(getattr(fn, "__getitem__", None)):
                    by_fn.setdefault(fn, []).append(template)
        for fn, templates in by_fn.items():
            params = getattr(fn, "params", None)
            for i in range(len(templates[0])):
                if params is not None and params[i].is_constexpr:
                    continue
                values = {t[i] for t in templates if isinstance(t[i], int) and not isinstance(t[i], bool)}
                if len(values) > 1:
                    checked += 1
                    assert fn.arg_names[i] in _unspecialized(fn), (fn.arg_names[i], sorted(values))
    assert checked > 3
