"""The sequential strategy with the dims held whole as registers (one variable per element,
Kernel.held): chosen by size, against the interpreter and against the tensor form, with 16-bit
rows loaded in pairs only where that is safe, and the next tile's loads issued ahead."""

import pytest
import torch
from conftest import DEVICE
from mamba1 import mamba1

import ssmc
from ssmc import In, Param, layer, scan, sigmoid
from ssmc.testing.check import arg_dtypes, check_compiled, make_inputs, to_torch


def assert_ok(results):
    bad = [str(r) for r in results if not r.ok]
    assert not bad, "\n".join(bad)


def _kernels(c, sizes, tensors, strategy="sequential"):
    from ssmc.backends.triton.binding import pairable as _pairable

    return c.kernels(strategy, sizes, _pairable(c.layer, tensors))


def test_chosen_by_size():
    c = ssmc.compile(mamba1)
    small = {"B": 1, "L": 8, "D": 4, "N": 16}
    big = dict(small, N=17)
    short = dict(small, L=7)  # a decode step or a few tokens: the tensor form
    assert [k.held for k in c.kernels("sequential", small)] == [(("N", 16),)]
    assert [k.held for k in c.kernels("sequential", big)] == [()]
    assert [k.held for k in c.kernels("sequential", short)] == [()]
    assert ssmc.compile(mamba1, held="registers").kernels("sequential", big)[0].held == (("N", 17),)
    assert ssmc.compile(mamba1, held="tensor").kernels("sequential", small)[0].held == ()


@pytest.mark.parametrize("dtype", ["bf16", "f16", "f32"])
@pytest.mark.parametrize("noncontiguous", [False, True])
def test_pairs_only_where_safe(dtype, noncontiguous):
    """Contiguous rows of B and C load in pairs (16-bit ones as int32, fp32 ones as int64);
    strided ones do not; the results match the interpreter either way."""
    sizes = {"B": 2, "L": 11, "D": 5, "N": 16}
    c = ssmc.compile(mamba1, strategy="sequential")
    inputs = make_inputs(mamba1, sizes, dtype, seed=3)
    tensors = to_torch(inputs, arg_dtypes(mamba1, dtype), "cpu", noncontiguous)
    (k,) = _kernels(c, sizes, tensors)
    expect = ("a_B", "a_C") if not noncontiguous else ()
    assert k.pairs == expect and k.prefetch
    assert_ok(check_compiled(mamba1, c, sizes, dtype, 3, DEVICE, noncontiguous=noncontiguous))


def test_misaligned_rows_are_not_paired():
    """A B whose rows start 2 bytes past a 4-byte boundary: single loads, the right answer."""
    sizes = {"B": 1, "L": 9, "D": 3, "N": 8}
    inputs = to_torch(make_inputs(mamba1, sizes, "bf16", seed=1), arg_dtypes(mamba1, "bf16"), "cpu")
    buf = torch.zeros(1 + 9 * 8, dtype=torch.bfloat16)
    buf[1:] = inputs["B"].reshape(-1)
    shifted = dict(inputs, B=buf[1:].view(1, 9, 8))
    c = ssmc.compile(mamba1, strategy="sequential")
    (k,) = _kernels(c, sizes, shifted)
    assert k.pairs == ("a_C",)
    ref = ssmc.compile(mamba1, strategy="sequential", held="tensor")
    dev = {k_: v.to(DEVICE) for k_, v in shifted.items()}
    for name, v in c(**dev).items():
        assert torch.allclose(v.float(), ref(**dev)[name].float(), rtol=1e-2, atol=1e-3), name


@pytest.mark.parametrize("L", [1, 3, 4, 5, 8, 9, 13])
@pytest.mark.parametrize("strategy,chunks", [("sequential", None), ("chunked", 3)])
def test_lengths_around_the_prefetched_tile(L, strategy, chunks):
    """Fewer steps than a tile, exactly one or two tiles, and tails: the prefetch never reads
    past a chunk's end and the last full tile is not run twice."""
    c = ssmc.compile(mamba1, strategy=strategy, chunks=chunks, unroll=4, held="registers")
    assert_ok(check_compiled(mamba1, c, {"B": 2, "L": L, "D": 3, "N": 4}, "bf16", L, DEVICE))


@layer
def reverse_state(x: In["B L D"], a: In["B L N"], c: In["B L N"]):
    h = scan(sigmoid(a), x * c, axis="L", reverse=True)
    return {"y": (h * c).sum("N"), "h_first": h.final}


@pytest.mark.parametrize("L", [1, 6, 11])
@pytest.mark.parametrize("strategy,chunks", [("sequential", None), ("chunked", 2)])
def test_reverse_scan_in_registers(L, strategy, chunks):
    c = ssmc.compile(reverse_state, strategy=strategy, chunks=chunks, unroll=4, held="registers")
    sizes = {"B": 2, "L": L, "D": 5, "N": 6}
    assert [k.held for k in c.kernels("sequential", sizes)] == [(("N", 6),)]
    assert_ok(check_compiled(reverse_state, c, sizes, "bf16", L, DEVICE))


@layer
def mean_readout(x: In["B L D"], a: In["B L N"], c: Param["D N"]):
    h = scan(a, c * x, axis="L")
    return {"y": (h * c).mean("N"), "h_final": h.final}


@pytest.mark.parametrize("N", [1, 3, 16])
def test_mean_over_a_held_dim(N):
    c = ssmc.compile(mean_readout, strategy="chunked", chunks=2, held="registers")
    assert_ok(check_compiled(mean_readout, c, {"B": 2, "L": 10, "D": 3, "N": N}, "f32", N, DEVICE))


def test_packed_batch_in_registers():
    """cu_seqlens through the register form: each sequence equals its own call."""
    sizes = {"B": 1, "L": 13, "D": 4, "N": 16}
    tensors = to_torch(make_inputs(mamba1, sizes, "bf16", seed=5, with_optional=False), arg_dtypes(mamba1, "bf16"), DEVICE)
    cu = torch.tensor([0, 1, 6, 13], dtype=torch.int32, device=DEVICE)
    c = ssmc.compile(mamba1, strategy="sequential")
    packed = c(**tensors, cu_seqlens=cu)
    for i in range(3):
        a, b = int(cu[i]), int(cu[i + 1])
        one = {k: (v[:, a:b] if v.dim() == 3 and v.shape[1] == 13 else v) for k, v in tensors.items()}
        alone = c(**one)
        assert torch.equal(packed["y"][:, a:b], alone["y"])
        assert torch.equal(packed["h_final"][i], alone["h_final"][0])
