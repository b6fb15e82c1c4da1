"""The benchmark harness's own logic, on the CPU: floors, the report's ratios and pairing, the
peers' loader, and a clear refusal without a GPU. (The measuring runs on a GPU: `make bench`.)"""

import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import HAS_GPU

from ssmc.benchmark import peers, report
from ssmc.benchmark.measure import Ceilings, Floor


def test_floor_is_the_largest_term():
    c = Ceilings(copy=1e12, exp2=1e12, matmul=1e15)
    f = Floor(bytes=2e9, exps=1e9, flops=1e12)
    assert f.terms_ms(c) == {"bytes": 2.0, "exp": 1.0, "matmul": 1.0}
    assert f.ms(c) == 2.0 and f.bound(c) == "bytes"


def _row(workload, impl, ms, shape="S", status="ok"):
    return dict(workload=workload, shape=shape, impl=impl, ms=ms, status=status, err=None, floor_ms=0.5,
                floor_terms_ms={"bytes": 0.5, "exp": 0.1, "matmul": 0.0})


RESULT = dict(
    device="GPU", torch="t", triton="tr", date="d", ceilings=dict(copy_gbs=3000, exp2_per_s=4e12, matmul_tflops=700),
    rows=[
        _row("fwd", "ssmc", 2.0), _row("fwd", "peer A", 3.0), _row("fwd", "peer B", 5.0),
        _row("decode", "ssmc", 0.2), _row("decode", "ssmc (CUDA graph)", 0.05),
        _row("decode", "peer", 0.1), _row("decode", "peer (CUDA graph)", 0.04),
        _row("fwd2", "ssmc", None, status="skipped: no example"), _row("fwd2", "peer", 1.0),
        dict(workload="compile time", shape="x", impl="ssmc cold", ms=1500.0, status="ok", import_s=1.0),
    ],
)


def test_summary_sets_ssmc_against_the_fastest_peer():
    s = {(r["workload"]): r for r in report.summary(RESULT)}
    assert s["fwd"]["peer"]["impl"] == "peer A" and s["fwd"]["ratio"] == pytest.approx(1.5)
    assert s["fwd"]["fraction_of_floor"] == pytest.approx(0.25)
    assert s["decode"]["ssmc"]["impl"] == "ssmc (CUDA graph)" and s["decode"]["ratio"] == pytest.approx(0.8)
    assert s["fwd2"]["ratio"] is None and s["fwd2"]["ssmc_status"].startswith("skipped")


def test_each_peer_row_is_compared_with_ssmc_run_the_same_way():
    md = report.markdown(RESULT)
    assert "| decode | S | peer (CUDA graph) | 0.0400 | 12.50 | 0.80 |" in md  # graph against graph
    assert "| decode | S | peer | 0.100 | 5.00 | 0.50 |" in md  # eager against eager
    assert "| ssmc cold | 1.50 s | 1.00 s | ok |" in md


def test_loader_skips_a_package_init_that_cannot_run(tmp_path, monkeypatch):
    pkg = tmp_path / "heavy_pkg"
    (pkg / "ops").mkdir(parents=True)
    (pkg / "__init__.py").write_text("import a_module_that_does_not_exist\n")
    (pkg / "ops" / "__init__.py").write_text("")
    (pkg / "ops" / "kernel.py").write_text("def f():\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = peers.import_skipping_inits("heavy_pkg.ops.kernel", ("heavy_pkg",))
    assert mod.f() == 42
    with pytest.raises(peers.Unavailable, match="not installed"):
        peers.import_skipping_inits("no_such_pkg.x", ("no_such_pkg",))


def test_selective_scan_without_sources_says_why(monkeypatch):
    monkeypatch.delenv(peers.SOURCES_ENV, raising=False)
    monkeypatch.setenv(peers.BUILD_ENV, "/nonexistent-ssmc-build")
    assert peers.start_selective_scan_build() is None
    with pytest.raises(peers.Unavailable, match=peers.SOURCES_ENV):
        peers.selective_scan_fn(None)


@pytest.mark.skipif(HAS_GPU, reason="checks the refusal where there is no GPU")
def test_bench_refuses_without_a_gpu():
    code = textwrap.dedent("""
        import sys
        from ssmc.cli import main
        sys.exit(main(["bench", "--out", sys.argv[1]]))
    """)
    r = subprocess.run([sys.executable, "-c", code, "/tmp/ssmc-bench-none"], capture_output=True, text=True,
                       env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})
    assert r.returncode != 0 and "no CUDA GPU" in r.stderr


def test_a_gradient_candidate_checks_fresh_gradients_in_ssmc_order():
    from ssmc.benchmark.workloads import _grad_candidate

    w = torch.tensor([1.0, 2.0], requires_grad=True)
    v = torch.tensor([3.0], requires_grad=True)
    c = _grad_candidate("peer", lambda w, v: w * v, {"w": w, "v": v}, torch.tensor([1.0, 1.0]),
                        order=lambda g: [g["v"], g["w"]])
    for _ in range(2):  # gradients do not accumulate across checks
        gv, gw = c.outputs()
        assert gv.tolist() == [3.0] and gw.tolist() == [3.0, 3.0]
    assert c.grads == [w, v]


def test_a_peer_is_judged_against_float32_outputs_by_the_table_rule():
    """Where a case has float32 outputs, a peer may err up to the table's ratio times ssmc's
    error plus its slack, output by output (two 16-bit results can differ by more than either
    errs); ssmc's own errors are what the bounds come from."""
    from ssmc.benchmark.workloads import Candidate, check_against_truth
    from ssmc.testing.tolerances import TOLERANCES

    tol = TOLERANCES["bf16"]
    truth = [torch.ones(4), torch.full((2,), 2.0)]
    out = lambda e0, e1: Candidate("x", outputs=lambda: [truth[0] + e0, truth[1] + 2 * e1])  # noqa: E731
    ssmc_like = out(0.01, 0.001)
    ssmc_like.impl = "ssmc"
    errs, why = check_against_truth(ssmc_like, truth, None)
    assert why == "" and errs == pytest.approx([0.01, 0.001], rel=1e-4)  # float32 sums
    assert check_against_truth(out(0.0, 0.0), truth, None)[1].startswith("not checked")  # no ssmc errors: no bound
    bounds = [tol.ratio * 0.01 + tol.atol, tol.ratio * 0.001 + tol.atol]
    assert check_against_truth(out(bounds[0] * 0.99, bounds[1] * 0.99), truth, errs)[1] == ""
    errs_p, why = check_against_truth(out(0.0, bounds[1] * 1.01), truth, errs)
    assert why.startswith("mismatch against the float32 outputs") and errs_p[1] > bounds[1]
