"""The bench's results as a markdown table and a plot (time against sequence length)."""

from __future__ import annotations

import re
from pathlib import Path


def _ssmc_row(rows: list[dict], r: dict) -> dict | None:
    """ssmc's row to set against peer row ``r``: the one run the same way (a CUDA graph against
    a CUDA graph), else plain ssmc."""
    how = re.search(r"\(([^)]*)\)$", r["impl"])
    same = [s for s in rows if s["workload"] == r["workload"] and s["shape"] == r["shape"] and s["impl"].startswith("ssmc")]
    for s in same:
        if how and s["impl"] == f"ssmc ({how.group(1)})":
            return s
    return next((s for s in same if s["impl"] == "ssmc"), None)


def _fmt(ms: float | None) -> str:
    return "-" if ms is None else (f"{ms:.4f}" if ms < 0.1 else f"{ms:.3f}" if ms < 100 else f"{ms:.0f}")


ORDER = ("mamba1 fwd", "mamba1 fwd+bwd", "decode", "hgrn", "mamba2", "simple gla")


def _order(r: dict) -> tuple:
    rank = next((i for i, w in enumerate(ORDER) if r["workload"].startswith(w)), len(ORDER))
    return rank, r["workload"], r.get("length") or 0


def summary(result: dict) -> list[dict]:
    """Per workload and shape: ssmc's time, its fraction of the floor, the fastest peer and the
    speed ratio to it (peer time / ssmc time: above 1, ssmc is faster)."""
    rows = sorted((r for r in result["rows"] if r["workload"] != "compile time"), key=_order)
    out = []
    seen = []
    for r in rows:
        key = (r["workload"], r["shape"])
        if key in seen:
            continue
        seen.append(key)
        group = [g for g in rows if (g["workload"], g["shape"]) == key]
        mine = [g for g in group if g["impl"].startswith("ssmc") and g["ms"] is not None]
        best_mine = min(mine, key=lambda g: g["ms"], default=None)
        others = [g for g in group if not g["impl"].startswith("ssmc") and g["ms"] is not None]
        best_peer = min(others, key=lambda g: g["ms"], default=None)
        out.append(dict(
            workload=key[0], shape=key[1], floor_ms=group[0].get("floor_ms"),
            bound=max(group[0]["floor_terms_ms"], key=group[0]["floor_terms_ms"].get) if group[0].get("floor_terms_ms") else None,
            ssmc=best_mine, peer=best_peer,
            fraction_of_floor=(group[0]["floor_ms"] / best_mine["ms"]) if best_mine else None,
            ratio=(best_peer["ms"] / best_mine["ms"]) if best_mine and best_peer else None,
            ssmc_status=next((g["status"] for g in group if g["impl"] == "ssmc"), ""),
        ))
    return out


def markdown(result: dict) -> str:
    c = result["ceilings"]
    lines = [
        f"# ssmc bench: {result['device']}, torch {result['torch']}, triton {result['triton']}, {result['date']}",
        "",
        f"Ceilings measured in this run: device copy {c['copy_gbs']:.0f} GB/s (read + write), fp32 exp2 "
        f"{c['exp2_per_s'] / 1e12:.2f} T/s, bf16 matrix product {c['matmul_tflops']:.0f} TFLOP/s. Times: "
        "`triton.testing.do_bench` medians after warm-up, random inputs, bf16 in, fp32 state. Floor: the largest of "
        "bytes that must move / copy rate, exponentials / exp2 rate, matrix flops / matrix rate. Ratio: fastest "
        "peer's time / ssmc's (above 1: ssmc is faster). Each candidate was checked against ssmc's output (and "
        "ssmc against the interpreter) before it was timed.",
        "",
        "| workload | shape | ssmc ms | floor ms (bound by) | ssmc / floor | fastest peer | peer ms | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summary(result):
        mine = s["ssmc"]
        lines.append(
            f"| {s['workload']} | {s['shape']} | {_fmt(mine['ms']) if mine else s['ssmc_status'] or '-'}"
            + (f" ({mine['impl'][5:].strip('()')})" if mine and mine["impl"] != "ssmc" else "")
            + f" | {_fmt(s['floor_ms'])} ({s['bound']}) | "
            + (f"{s['fraction_of_floor']:.2f}" if s["fraction_of_floor"] else "-")
            + f" | {s['peer']['impl'] if s['peer'] else '-'} | {_fmt(s['peer']['ms']) if s['peer'] else '-'} | "
            + (f"**{s['ratio']:.2f}**" if s["ratio"] else "-") + " |"
        )
    during = sorted({f"{r['workload']} {r['shape']}" for r in result["rows"] if r.get("during")})
    if during:
        lines += ["", "Measured while mamba-ssm's CUDA scan was compiling on the host (on 4 fewer cores than the "
                  "machine has; the kernels are device-bound): " + "; ".join(during) + "."]
    lines += ["", "## Every result", "",
              "| workload | shape | implementation | ms | of floor | ssmc speed ratio | check err | status |",
              "|---|---|---|---|---|---|---|---|"]
    rows = sorted(result["rows"], key=_order)
    for r in rows:
        if r["workload"] == "compile time":
            continue
        mine = _ssmc_row(rows, r)
        ratio = (r["ms"] / mine["ms"]) if (r["ms"] and mine and mine["ms"] and mine is not r) else None
        frac = (r["floor_ms"] / r["ms"]) if r["ms"] and r.get("floor_ms") else None
        lines.append(
            f"| {r['workload']} | {r['shape']} | {r['impl']} | {_fmt(r['ms'])} | {f'{frac:.2f}' if frac else '-'} | "
            f"{f'{ratio:.2f}' if ratio else '-'} | {'-' if r.get('err') is None else format(r['err'], '.1e')} | "
            f"{r['status'].replace('|', '/')} |"
        )
    comp = [r for r in rows if r["workload"] == "compile time"]
    if comp:
        lines += ["", "## Compile time (Mamba-1, first call in a new process)", "", "| | first call | imports | status |",
                  "|---|---|---|---|"]
        for r in comp:
            lines.append(f"| {r['impl']} | {r['ms'] / 1e3:.2f} s | {r.get('import_s', 0):.2f} s | {r['status']} |"
                         if r["ms"] is not None else f"| {r['impl']} | - | - | {r['status']} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path | None:
    """Mamba-1 forward at B8 D2048 N16: time against L, one line per implementation."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is not installed")
        return None
    pat = re.compile(r"B8 L(\d+) D2048 N16")
    lines: dict[str, list[tuple[int, float]]] = {}
    for r in result["rows"]:
        m = pat.fullmatch(r["shape"])
        if r["workload"] == "mamba1 fwd" and m and r["ms"] is not None:
            lines.setdefault(r["impl"], []).append((int(m.group(1)), r["ms"]))
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for impl, pts in sorted(lines.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=impl, linewidth=2.5 if impl == "ssmc" else 1.2)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length L")
    ax.set_ylabel("time (ms, median)")
    ax.set_title(f"Mamba-1 forward, B8 D2048 N16, bf16 ({result['device']})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
