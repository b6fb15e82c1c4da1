"""``Kernel.aligned_bases``: a kernel says its tiles' grid offsets are multiples of 8 elements
(``tl.multiple_of``, so Triton may load a tile in 16-byte vectors) only for the tensors whose
strides along grid dims the host found to be multiples of 8 (a bit each of the constexpr
``ALIGNED``); a tensor with other strides (a slice, a view) clears its bit and gives the same
results. Triton's interpreter ignores the hint, so here the flags are what is checked. The
hint is off by default (``run.ALIGN_BASES``; ``SSMC_ALIGN_BASES=1``): with it off every bit is
clear."""

import torch
from conftest import DEVICE
from mamba1 import mamba1
from mamba2 import mamba2

import ssmc
from ssmc.backends.triton import run as R
from ssmc.testing.check import make_inputs


def _record(monkeypatch) -> list:
    seen = []
    plain = R.bases_aligned
    monkeypatch.setattr(R, "ALIGN_BASES", True)  # (off by default until the GPU suite passes with it)

    def recorded(kernel, call):
        bits = plain(kernel, call)
        seen.append((kernel, bits))
        return bits

    monkeypatch.setattr(R, "bases_aligned", recorded)
    return seen


def _sources(kernel) -> dict[str, str]:
    return {t.name: t.source for t in kernel.tensors}


def _mamba1_inputs(x_padded: bool) -> dict:
    B, L, D, N = 2, 5, 16, 8  # batch strides 80 and 40 (multiples of 8)
    g = torch.Generator().manual_seed(0)
    t = {k: torch.randn(B, L, D, generator=g) for k in ("dt", "z")}
    t.update({k: torch.randn(B, L, N, generator=g) for k in ("B", "C")})
    x = torch.randn(B, L, D + 1, generator=g)  # batch stride 85, step stride 17: not multiples of 8
    t["x"] = x[..., :D] if x_padded else x[..., :D].contiguous()
    t["A_log"] = torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(D, 1)
    t["D"] = torch.ones(D)
    t["dt_bias"] = torch.full((D,), -2.0)
    return {k: v.to(DEVICE) for k, v in t.items()}


def test_contiguous_inputs_set_every_bit_and_a_slice_clears_its_own(monkeypatch):
    seen = _record(monkeypatch)
    c = ssmc.compile(mamba1)
    dense = c(**_mamba1_inputs(False))
    assert seen, "no kernel of Mamba-1's forward took ALIGNED"
    for kernel, bits in seen:
        assert bits == (1 << len(kernel.aligned_bases)) - 1, kernel.name
    seen.clear()
    sliced = c(**_mamba1_inputs(True))
    checked = 0
    for kernel, bits in seen:
        names = _sources(kernel)
        for name, bit in kernel.aligned_bases.items():
            want = names[name] != "x"
            assert bool(bits & (1 << bit)) == want, (kernel.name, name)
            checked += not want
    assert checked, "no kernel read x at a tile"
    for k in dense:
        torch.testing.assert_close(sliced[k], dense[k], rtol=0, atol=0)


def test_mamba2_backward_rest_loads_aligned_tiles(monkeypatch):
    """The backward of Mamba-2 in the matrix form: its rest (the chain rule's elementwise work,
    P-contiguous tiles) is told every one of its tiles is aligned for contiguous inputs, the
    matrix scans' results it reads included (their buffers are the host's)."""
    seen = _record(monkeypatch)
    sizes = {"B": 2, "L": 9, "G": 1, "R": 8, "P": 8, "N": 4}  # [B, L, G, R] strides: multiples of 8
    c = ssmc.compile(mamba2, block_t=8)
    c.backward_compiled().force = True
    ins = {k: torch.tensor(v, dtype=torch.float32, device=DEVICE, requires_grad=True)
           for k, v in make_inputs(mamba2, sizes, "f32", seed=1, with_optional=False).items()}
    out = c(**ins)
    (out["y"].square().sum() + out["h_final"].sum()).backward()
    rest = [(k, b) for k, b in seen if k.name == "mamba2_backward_k0_bidir"]
    assert rest, [k.name for k, _ in seen]
    for kernel, bits in rest:
        srcs = {_sources(kernel)[n] for n in kernel.aligned_bases}
        assert {"x", "z", "grad_y", "grad_x", "grad_z"} <= srcs, srcs
        assert bits == (1 << len(kernel.aligned_bases)) - 1, kernel.name


def test_the_hint_off_clears_every_bit(monkeypatch):
    seen = _record(monkeypatch)
    monkeypatch.setattr(R, "ALIGN_BASES", False)
    ssmc.compile(mamba1)(**_mamba1_inputs(False))
    assert seen and all(bits == 0 for _, bits in seen)
