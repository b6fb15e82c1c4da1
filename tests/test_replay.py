"""Calls after the first with the same signature replay its recorded launches (replay.py): the
results equal a planned call's, a new signature (shape, dtype, alignment, optional argument)
is planned afresh, and buffers are new on every call."""

import numpy as np
import torch
from conftest import DEVICE
from mamba1 import mamba1

import ssmc
from ssmc.testing.check import arg_dtypes, make_inputs, to_torch


def _inputs(sizes, seed, dtype="f32", optional=False):
    values = make_inputs(mamba1, sizes, dtype, seed, with_optional=optional)
    return to_torch(values, arg_dtypes(mamba1, dtype), DEVICE)


def test_replayed_calls_equal_planned_calls():
    sizes = dict(B=2, L=9, D=5, N=3)
    c = ssmc.compile(mamba1)
    first = c.raw_call(**_inputs(sizes, 1))
    assert c.stats.get("replays", 0) == 0
    for seed in (2, 3):
        ins = _inputs(sizes, seed)
        got = c.raw_call(**ins)
        want = ssmc.compile(mamba1).raw_call(**ins)  # a fresh compile plans the call
        for k in want:
            assert torch.equal(got[k], want[k]), k
            assert got[k].data_ptr() != first[k].data_ptr()  # new buffers every call
    assert c.stats["replays"] == 2


def test_a_new_signature_is_planned():
    c = ssmc.compile(mamba1)
    c.raw_call(**_inputs(dict(B=2, L=9, D=5, N=3), 1))
    c.raw_call(**_inputs(dict(B=2, L=10, D=5, N=3), 1))  # another length
    c.raw_call(**_inputs(dict(B=2, L=9, D=5, N=3), 1, optional=True))  # h0 given
    c.raw_call(**_inputs(dict(B=2, L=9, D=5, N=3), 1, dtype="bf16"))  # another dtype
    assert c.stats.get("replays", 0) == 0 and len(c._recipes) == 4
    # an input starting one element past an aligned address: Triton specializes on alignment
    ins = _inputs(dict(B=2, L=9, D=5, N=3), 1)
    wide = torch.zeros(ins["x"].numel() + 1, dtype=ins["x"].dtype, device=DEVICE)
    wide[1:] = ins["x"].reshape(-1)
    shifted = dict(ins, x=wide[1:].view(ins["x"].shape))
    got = c.raw_call(**shifted)
    want = ssmc.compile(mamba1).raw_call(**ins)
    assert c.stats.get("replays", 0) == 0 and len(c._recipes) == 5
    np.testing.assert_array_equal(got["y"].cpu().numpy(), want["y"].cpu().numpy())


def test_gradients_through_replayed_calls():
    sizes = dict(B=2, L=7, D=4, N=3)
    c = ssmc.compile(mamba1)
    grads = []
    for _ in range(2):  # the second forward and backward replay the first's
        ins = {k: v.requires_grad_() for k, v in _inputs(sizes, 5).items()}
        c(**ins)["y"].sum().backward()
        grads.append({k: v.grad.clone() for k, v in ins.items()})
    assert c.stats.get("replays", 0) >= 1
    for k in grads[0]:
        assert torch.equal(grads[0][k], grads[1][k]), k
