"""The libraries people would otherwise use, loaded only where they can be, each with the reason
when it cannot.

mamba-ssm's top-level package imports its CUDA extension and every model (with dependencies
such as tilelang); its Triton kernels need none of that, so its modules are imported with the
package ``__init__`` files skipped. Its CUDA selective scan (the Mamba-1 reference) is built from
the sources of its sdist with ``torch.utils.cpp_extension`` (about two minutes for sm_90 with 16
jobs), in a background process started first so that the build overlaps the other set-up."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path


class Unavailable(Exception):
    """A peer that cannot run here; the message says why."""


def import_skipping_inits(module: str, packages: tuple[str, ...]):
    """Import ``module`` with the ``__init__`` of each package in ``packages`` not executed (an
    empty package object on the same path stands in). Raises Unavailable with the reason."""
    for pkg in packages:
        if pkg in sys.modules:
            continue
        parent, _, leaf = pkg.rpartition(".")
        try:
            base = importlib.import_module(parent).__path__ if parent else None
        except Exception as e:  # noqa: BLE001
            raise Unavailable(f"import {parent}: {type(e).__name__}: {e}") from e
        spec = importlib.util.find_spec(pkg) if not parent else importlib.machinery.PathFinder.find_spec(pkg, base)
        if spec is None or not spec.submodule_search_locations:
            raise Unavailable(f"{pkg} is not installed")
        stub = types.ModuleType(pkg)
        stub.__path__ = list(spec.submodule_search_locations)
        sys.modules[pkg] = stub
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001  (any import failure: the peer is skipped with it)
        raise Unavailable(f"import {module}: {type(e).__name__}: {e}") from e


def mamba_triton(name: str):
    """A function from mamba-ssm's Triton kernels: 'mamba_chunk_scan_combined' or
    'selective_state_update'."""
    where = {"mamba_chunk_scan_combined": "mamba_ssm.ops.triton.ssd_combined",
             "selective_state_update": "mamba_ssm.ops.triton.selective_state_update"}[name]
    mod = import_skipping_inits(where, ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.triton"))
    return getattr(mod, name)


def fla_op(module: str, name: str):
    """A function from flash-linear-attention's kernels, e.g. ('fla.ops.hgrn', 'chunk_hgrn')."""
    mod = import_skipping_inits(module, ("fla.ops",))
    return getattr(mod, name)


# -- mamba-ssm's CUDA selective scan -------------------------------------------------------------

SOURCES_ENV = "SSMC_MAMBA_CSRC"  # the sdist's csrc/selective_scan folder
BUILD_ENV = "SSMC_PEER_BUILD"  # where the extension is built (reused when it is already there)

_NVCC = ["-O3", "-std=c++17", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
         "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
         "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
         "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math", "-lineinfo",
         "-gencode", "arch=compute_90,code=sm_90"]


def _selective_scan_sources() -> list[str]:
    src = os.environ.get(SOURCES_ENV)
    if not src:
        raise Unavailable(f"{SOURCES_ENV} is not set (mamba-ssm's csrc/selective_scan sources)")
    d = Path(src)
    files = [d / "selective_scan.cpp", *sorted(d.glob("selective_scan_*.cu"))]
    if not files[0].exists() or len(files) < 2:
        raise Unavailable(f"{d}: no selective_scan.cpp and .cu sources there")
    return [str(f) for f in files]


def _prebuilt(build: Path):
    """The extension already built into ``build`` (by an earlier run on the same image), or None."""
    so = build / "selective_scan_cuda.so"
    if not so.exists():
        return None
    import importlib.machinery

    import torch  # noqa: F401  (the extension links against torch's libraries)

    loader = importlib.machinery.ExtensionFileLoader("selective_scan_cuda", str(so))
    spec = importlib.util.spec_from_file_location("selective_scan_cuda", so, loader=loader)
    try:
        mod = importlib.util.module_from_spec(spec)
        loader.exec_module(mod)
        return mod
    except ImportError:  # built against another torch: build again
        return None


def _load_selective_scan(verbose: bool = False):
    from torch.utils import cpp_extension

    build = Path(os.environ.get(BUILD_ENV, "/tmp/ssmc-peer-build"))
    done = _prebuilt(build)
    if done is not None:
        return done
    build.mkdir(parents=True, exist_ok=True)
    src = _selective_scan_sources()
    return cpp_extension.load(name="selective_scan_cuda", sources=src, build_directory=str(build),
                              extra_cflags=["-O3", "-std=c++17"], extra_cuda_cflags=_NVCC,
                              extra_include_paths=[str(Path(src[0]).parent)], verbose=verbose)


def start_selective_scan_build() -> subprocess.Popen | None:
    """Start building the extension in a background process (None where there are no sources
    or it is built already)."""
    try:
        _selective_scan_sources()
    except Unavailable:
        return None
    if (Path(os.environ.get(BUILD_ENV, "/tmp/ssmc-peer-build")) / "selective_scan_cuda.so").exists():
        return None
    # leave cores to the measurements that run meanwhile
    env = dict(os.environ, MAX_JOBS=os.environ.get("MAX_JOBS", str(max(1, (os.cpu_count() or 4) - 4))))
    code = "from ssmc.benchmark.peers import _load_selective_scan; _load_selective_scan(verbose=False)"
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def selective_scan_fn(build: subprocess.Popen | None):
    """mamba-ssm's ``selective_scan_fn`` on its CUDA kernel, once the build has finished."""
    if build is not None:
        out, _ = build.communicate()
        if build.returncode != 0:
            raise Unavailable("building mamba-ssm's selective_scan_cuda failed:\n" + out[-3000:])
    try:
        sys.modules["selective_scan_cuda"] = _load_selective_scan()
    except Unavailable:
        raise
    except Exception as e:  # noqa: BLE001
        raise Unavailable(f"loading mamba-ssm's selective_scan_cuda: {type(e).__name__}: {e}") from e
    mod = import_skipping_inits("mamba_ssm.ops.selective_scan_interface", ("mamba_ssm", "mamba_ssm.ops"))
    return mod.selective_scan_fn
