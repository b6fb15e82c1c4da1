"""``run.WIDEN_ROWS``: a 16-bit input whose rows a register-held kernel reads two elements per
load (``Kernel.pairs``: Mamba-1's B and C, one row a step shared by every channel of a program)
is passed to that kernel in float32, converted once a call and recorded for replay
(``Recorder.convert``). Widening bf16 or fp16 to float32 is exact, so outputs and gradients
equal the unwidened call's bit for bit, first call and replays alike. Off by default until timed
on a GPU (``SSMC_WIDEN_ROWS=1``)."""

import torch
from conftest import DEVICE
from mamba1 import mamba1

import ssmc
from ssmc.backends.triton import replay
from ssmc.backends.triton import run as R


def _inputs(seed: int, dtype=torch.bfloat16) -> dict:
    B, L, D, N = 2, 19, 16, 8  # 19 steps: held as registers, a tail past the unrolled steps
    g = torch.Generator().manual_seed(seed)
    t = {k: torch.randn(B, L, D, generator=g).to(dtype) for k in ("x", "dt", "z")}
    t.update({k: torch.randn(B, L, N, generator=g).to(dtype) for k in ("B", "C")})
    t["A_log"] = torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(D, 1)
    t["D"] = torch.randn(D, generator=g)
    t["dt_bias"] = torch.full((D,), -2.0)
    return {k: v.to(DEVICE) for k, v in t.items()}


def _spy(monkeypatch, owner, attr: str, record) -> list:
    """``owner.attr`` (a method) wrapped to append ``record(*args)`` to the returned list."""
    plain = getattr(owner, attr)
    seen = []

    def wrapped(self, *args):
        seen.append(record(*args))
        return plain(self, *args)

    monkeypatch.setattr(owner, attr, wrapped)
    return seen


def _converted(c) -> list:
    """The conversions the layer's recorded calls make: (source slot, dtype)."""
    return [(holes[0][1], grid) for r in c._recipes.values() if r is not None
            for fn, _, grid, _, holes, _ in r.launches if fn is replay._CONVERT]


def test_widened_rows_give_identical_outputs_and_replay(monkeypatch):
    plain = ssmc.compile(mamba1)
    want = [plain(**_inputs(s)) for s in (0, 1)]
    monkeypatch.setattr(R, "WIDEN_ROWS", True)
    c = ssmc.compile(mamba1)
    for s, w in zip((0, 1), want):  # the first call plans and records; the second replays
        got = c(**_inputs(s))
        for k in w:
            torch.testing.assert_close(got[k], w[k], rtol=0, atol=0)
    assert c.stats.get("replays", 0) >= 1
    names = {slot for (kind, slot), dt in _converted(c) if kind == "in" and dt == torch.float32}
    assert names == {"B", "C"}, names


def test_float32_rows_are_left_alone(monkeypatch):
    monkeypatch.setattr(R, "WIDEN_ROWS", True)
    c = ssmc.compile(mamba1)
    c(**_inputs(0, torch.float32))
    assert _converted(c) == []


def test_widened_rows_give_identical_gradients(monkeypatch):
    def grads(c):
        ins = {k: v.detach().clone().requires_grad_(v.is_floating_point()) for k, v in _inputs(2).items()}
        y = c(**ins)["y"]
        y.backward(torch.ones_like(y))
        return {k: v.grad for k, v in ins.items()}

    want = grads(ssmc.compile(mamba1))
    monkeypatch.setattr(R, "WIDEN_ROWS", True)
    got = grads(ssmc.compile(mamba1))
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)


def test_widened_rows_in_a_packed_batch(monkeypatch):
    """A packed batch (cu_seqlens) with a sequence of one step and one cut by the unrolled
    steps: its rows widened once for the call, outputs and final states unchanged."""
    t = _inputs(3)
    packed = {k: (v.reshape(1, -1, v.shape[-1]) if v.dim() == 3 else v) for k, v in t.items()}
    cu = torch.tensor([0, 1, 13, 38], dtype=torch.int32, device=DEVICE)
    want = ssmc.compile(mamba1)(**packed, cu_seqlens=cu)
    monkeypatch.setattr(R, "WIDEN_ROWS", True)
    widened = _spy(monkeypatch, replay.Recorder, "convert", lambda src, dtype: dtype)
    got = ssmc.compile(mamba1)(**packed, cu_seqlens=cu)
    assert widened == [torch.float32, torch.float32]  # B and C, once each
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)


def test_widened_rows_for_the_states_kernels_alone(monkeypatch):
    """``WIDEN_ROWS = "states"``: only the chunk-states kernels take float32 rows (the chunked
    kernel keeps its bf16 pairs); outputs unchanged."""
    want = ssmc.compile(mamba1, strategy="chunked", chunks=3)(**_inputs(4))
    monkeypatch.setattr(R, "WIDEN_ROWS", "states")
    seen = _spy(monkeypatch, replay.Recorder, "convert", lambda src, dtype: src.data_ptr())
    ins = _inputs(4)
    got = ssmc.compile(mamba1, strategy="chunked", chunks=3)(**ins)
    assert seen == [ins["B"].data_ptr()], seen  # the states pass reads B alone; the chunked kernel widened none
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
