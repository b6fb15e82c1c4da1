"""One test per bug that random programs found (ssmc/testing/programs.py), each the shrunk case."""

import numpy as np
import pytest
import torch
from conftest import DEVICE

import ssmc
from ssmc import In
from ssmc.ops.interpret import run
from ssmc.ops.verify import verify
from ssmc.passes import run_passes
from ssmc.testing.check import check_compiled


def assert_ok(results):
    bad = [str(r) for r in results if not r.ok]
    assert not bad, "\n".join(bad)


@ssmc.layer
def chained_output(x0: In["B L D"]):
    h0 = ssmc.scan(ssmc.sigmoid(x0), x0, axis="L")
    h1 = ssmc.scan(ssmc.sigmoid(x0), h0, axis="L")
    return {"y0": h0, "y1": h1}


def test_value_that_is_an_output_and_read_by_a_later_kernel():
    """The first kernel stored h0 only as the output y0; the second kernel's input buffer was
    never bound and a placeholder tensor was read: a silent wrong answer."""
    for strategy in ("sequential", "tiled", "chunked"):
        c = ssmc.compile(chained_output, strategy=strategy, chunks=2, unroll=2, block_t=4)
        for dtype in ("f32", "bf16"):
            assert_ok(check_compiled(chained_output, c, dict(B=1, L=5, D=2), dtype, 0, DEVICE))


@ssmc.layer
def same_output_twice(x0: In["B L D"]):
    return {"y0": ssmc.scan(ssmc.sigmoid(x0), x0, axis="L"), "y1": ssmc.scan(ssmc.sigmoid(x0), x0, axis="L")}


def test_two_outputs_that_cse_makes_one_value():
    c = ssmc.compile(same_output_twice)
    out = c(x0=torch.randn(1, 4, 2, device=DEVICE))
    assert set(out) == {"y0", "y1"}
    assert torch.equal(out["y0"], out["y1"])


@ssmc.layer
def discretize_wide_B(x0: In["B L D"], x1: In["B L"], x2: In["B L"]):
    a, b = ssmc.discretize(-ssmc.softplus(x2) - 0.1, x0, ssmc.softplus(x1), "zoh")
    a2, b2 = ssmc.discretize(-ssmc.softplus(x2) - 0.1, x0, ssmc.softplus(x1), "zoh_euler")
    return {"y": ssmc.scan(a, b, axis="L"), "y2": ssmc.scan(a2, b2, axis="L")}


def test_discretize_parts_read_only_their_operands():
    """Abar has dims of (A, delta) only: the interpreter aligned B, which has D, to them."""
    sizes = dict(B=1, L=3, D=2)
    args = discretize_wide_B.random_inputs(sizes)
    out = discretize_wide_B(**args)
    assert out["y"].shape == (1, 3, 2) and np.isfinite(out["y"]).all()
    assert_ok(check_compiled(discretize_wide_B, ssmc.compile(discretize_wide_B), sizes, "f32", 0, DEVICE))


@ssmc.layer
def shared_prologue(x: In["B L D"]):
    g = ssmc.sigmoid(x)  # recurrence-free: recomputed in both kernels
    h1 = ssmc.scan(g, x, axis="L")
    h2 = ssmc.scan(g, h1 * g, axis="L", reverse=True)
    return h2


def test_verifier_accepts_prologue_recomputed_in_several_kernels():
    g = run_passes(shared_prologue.graph, verify_each=True)
    verify(g)
    assert len(g.groups) == 2
    args = shared_prologue.random_inputs(dict(B=1, L=4, D=3))
    np.testing.assert_allclose(run(g, args, dict(B=1, L=4, D=3))["y"], shared_prologue(**args)["y"])


@ssmc.layer
def optional_sequence_input(x: In["B L D"], bias: In["B L D"] = None):
    return ssmc.scan(0.5, x + bias, axis="L")


def test_optional_sequence_input_left_out_reads_zeros():
    """Found in review, not by the fuzzer: the unrolled loop printed its own loads and skipped
    the HAS_<input> branch, so a missing optional input with the sequence axis was read from
    a placeholder tensor (sequential and chunked strategies)."""
    for strategy in ("sequential", "tiled", "chunked"):
        c = ssmc.compile(optional_sequence_input, strategy=strategy, chunks=2, unroll=2, block_t=4)
        assert_ok(check_compiled(optional_sequence_input, c, dict(B=1, L=6, D=3), "f32", 0, DEVICE, with_optional=False))
        assert_ok(check_compiled(optional_sequence_input, c, dict(B=1, L=6, D=3), "f32", 0, DEVICE, with_optional=True))


# --- the backward (random programs through ssmc.autodiff and the bidir kernels) -------------


def check_backward(layer, sizes):
    from ssmc.backends.triton.backward import CompiledBackward

    c = CompiledBackward(layer, unroll=2, block=4, sub=2, verify=True)
    for seed in (0, 1):
        assert_ok(check_compiled(c.layer, c, sizes, "f32", seed, DEVICE))


@ssmc.layer
def final_state_wider_than_readout(x1: In["B L D N"], x2: In["B L"]):
    h0 = ssmc.scan(ssmc.sigmoid(x2), x1, axis="L")
    return {"y0": h0.sum("N"), "h0_final": h0.final}


def test_final_state_cotangent_with_dims_the_readout_sums():
    """The reverse scan's state took its dims from a and the readout's cotangent (no N), and
    the final state's cotangent (with N) did not fit as its initial state: autodiff raised."""
    check_backward(final_state_wider_than_readout, dict(B=2, L=5, D=3, N=2))


@ssmc.layer
def decay_per_row(x1: In["B L"], x2: In["B L D"]):
    return {"y0": ssmc.scan(ssmc.sigmoid(x2), x1, axis="L")}


def test_sum_across_blocks_into_a_value_without_block_dims():
    """grad_x1 [B, L] sums over the tiled D: an atomic add through a scalar pointer of a
    size-1 block value, which tl.atomic_add refused (broadcast to the pointer's rank)."""
    check_backward(decay_per_row, dict(B=2, L=5, D=6))


@ssmc.layer
def zoh_with_a_row_decay(x0: In["B L N"], x2: In["B L"], p0: ssmc.Param["D", "small_normal"]):
    a0, b0 = ssmc.discretize(-ssmc.softplus(p0) - 0.1, ssmc.abs(x0), ssmc.softplus(x2), "zoh")
    h0 = ssmc.scan(a0, b0, axis="L")
    return {"y0": h0, "y1": h0.sum("D")}


def test_sum_across_programs_in_the_middle_of_the_chain():
    """The forward tiles N, and the cotangent of delta*A [B, L, D] is a sum over N across
    programs that later values (summed over time) read: those went to an epilogue kernel that
    could not sum over time (an error), and a value without block dims was stored from a
    block (an error). Now every level after a sum across programs is a bidir kernel."""
    check_backward(zoh_with_a_row_decay, dict(B=2, L=5, N=3, D=2))


@ssmc.layer
def decay_from_a_parameter_over_a_grid_dim(x0: In["B L N"], x1: In["B L D"], p0: ssmc.Param["N", "small_normal"]):
    return {"y0": ssmc.scan(ssmc.sigmoid(p0), x1, axis="L")}


def test_sum_across_programs_with_no_mask():
    """grad_p0 [N] with N a grid dim: each program adds one scalar, with no mask at all; the
    generated `mask=tl.broadcast_to(True, ...)` did not compile."""
    check_backward(decay_from_a_parameter_over_a_grid_dim, dict(B=2, L=5, N=3, D=2))


@ssmc.layer
def decay_from_a_summed_parameter(x0: In["B L D"], p0: ssmc.Param["D", "small_normal"]):
    a0, b0 = ssmc.discretize(-ssmc.softplus(p0.sum("D")) - 0.1, ssmc.abs(x0), ssmc.softplus(x0), "zoh")
    return {"y0": ssmc.scan(a0, b0, axis="L")}


def test_gradient_without_dims_stored_from_a_block():
    """grad_p0 is constant along D (p0 enters through its sum): a value without dims, stored
    through a scalar pointer from a size-1 block, which tl.store refused."""
    check_backward(decay_from_a_summed_parameter, dict(B=2, L=5, D=3))


@ssmc.layer
def summed_over_the_held_dim(x: In["B L D"], k: In["B L D"]):
    h = ssmc.scan(ssmc.sigmoid(k), x, axis="L")
    return {"y": h.sum("D")}


def test_forward_output_without_block_dims():
    for strategy in ("sequential", "tiled", "chunked"):
        c = ssmc.compile(summed_over_the_held_dim, strategy=strategy, chunks=2, unroll=2, block_t=4, verify=True)
        assert_ok(check_compiled(summed_over_the_held_dim, c, dict(B=2, L=7, D=3), "f32", 0, DEVICE))


@ssmc.layer
def row_input_through_a_channel_decay(x0: In["B L D"], x1: In["B L"], p0: ssmc.Param["D", "small_normal"]):
    a0, b0 = ssmc.discretize(-ssmc.softplus(x1) - 0.1, x1, ssmc.softplus(p0), "zoh")
    return {"y0": ssmc.scan(a0, b0, axis="L")}


def test_gradient_of_a_row_computed_from_scalar_loads_only():
    """grad_x1 [B, L] in an epilogue kernel reads only [B, L] values, loaded through scalar
    pointers: the value is a scalar, and the store's `tl.sum(value)` compiled in Triton's
    interpreter but not on the GPU (found by the random programs on an H100)."""
    check_backward(row_input_through_a_channel_decay, dict(B=1, L=1, D=1))
    check_backward(row_input_through_a_channel_decay, dict(B=2, L=5, D=3))


@ssmc.layer
def decay_exponent_with_every_state_dim(x0: In["B L D N"], x1: In["B L"], p0: ssmc.Param["D N", "small_normal"]):
    a0, b0 = ssmc.discretize(-ssmc.softplus(x0 + x1) - 0.1, x1, ssmc.softplus(ssmc.abs(p0)), "zoh")
    h0 = ssmc.scan(a0, b0, axis="L")
    return {"y0": h0.sum("N"), "h0_final": h0.final}


def test_chunk_decay_product_when_the_exponent_has_the_held_dim():
    """The chunk-states pass sums the decay's exponent (exp2(u * c), c loop-invariant) over the
    chunk; here u has the state's every dim, N held as registers. The sum s<n> was one variable
    for all N indices (the held printer suffixed only v/h/p names): each chunk's decay product
    was wrong, so the final state was (20 % off), the outputs not (found by the random
    programs, fuzz profile)."""
    c = ssmc.compile(decay_exponent_with_every_state_dim, strategy="chunked", chunks=2, unroll=2, block_t=4, verify=True)
    assert_ok(check_compiled(decay_exponent_with_every_state_dim, c, dict(B=2, L=8, D=2, N=3), "f32", 0, DEVICE))


@ssmc.layer
def scalar_parameter_in_the_decay(x: In["B L D"], p0: ssmc.Param["", "small_normal"]):
    a = ssmc.exp(-ssmc.softplus(p0 * p0 + 1.0) * ssmc.sigmoid(x))
    return {"y": ssmc.scan(a, x, axis="L")}


def test_gradient_of_a_scalar_parameter():
    """grad_p0 has no dims: its epilogue kernel has no sizes, and the generated signature had
    an empty line (`,`), a SyntaxError; the half-imported module was then found empty by the
    next compile (found by the random programs, fuzz profile)."""
    check_backward(scalar_parameter_in_the_decay, dict(B=2, L=5, D=3))


def test_generated_source_that_does_not_parse_is_a_clear_error_every_time():
    from ssmc.backends.triton.cache import load_source
    from ssmc.errors import LoweringError

    bad = "import triton\n\ndef k(\n    a,\n    ,\n):\n    pass\n"
    for _ in range(2):  # the second time too: not an empty module left from the first
        with pytest.raises(LoweringError, match="does not parse"):
            load_source(bad)
