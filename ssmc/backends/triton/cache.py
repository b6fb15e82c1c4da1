"""The on-disk cache of generated kernel sources.

A cache is a way into the process (its files are imported), so: a per-user directory created
with mode 0700; a directory owned by someone else or writable by group/others is refused; files
are written under a private temporary name and renamed into place (atomic, so processes
compiling at once never see half a file); a file is named by the hash of its content and that
hash is checked on load, so a truncated or altered entry is rejected and regenerated, never
imported. If the directory cannot be used (read-only, full, refused), we compile in memory
with a warning."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
import sys
import tempfile
import types
import warnings
from pathlib import Path

from ssmc.errors import LoweringError

ENV_VAR = "SSMC_CACHE_DIR"


def cache_dir() -> Path:
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ssmc"


def content_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


class UnsafeCacheDir(Exception):
    pass


def _checked_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise UnsafeCacheDir(f"{path} is owned by uid {st.st_uid}, not by this user")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeCacheDir(f"{path} is writable by group or others (mode {oct(st.st_mode & 0o777)})")
    return path


def _import_file(path: Path, module_name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # triton reads the source through the module's file
    try:
        spec.loader.exec_module(module)
    except BaseException as e:
        sys.modules.pop(module_name, None)  # a failed import must not be found, empty, next time
        if isinstance(e, SyntaxError):
            raise LoweringError(
                f"ssmc generated Python that does not parse ({e.msg}, line {e.lineno} of {path}): "
                "a bug in ssmc's code generation; please report it with that file"
            ) from e
        raise
    return module


_MEMORY_DIR: Path | None = None


def _memory_dir() -> Path:
    """A private temporary directory, for when the cache directory cannot be used."""
    global _MEMORY_DIR
    if _MEMORY_DIR is None:
        _MEMORY_DIR = Path(tempfile.mkdtemp(prefix="ssmc-"))
    return _MEMORY_DIR


def load_source(source: str, stats: dict[str, int] | None = None) -> types.ModuleType:
    """Import ``source`` as a module, through the disk cache."""
    digest = content_hash(source)
    name = f"ssmc_generated_{digest[:24]}"
    if name in sys.modules:
        return sys.modules[name]
    try:
        directory = _checked_dir(cache_dir())
        path = directory / f"{digest}.py"
        if path.exists():
            if content_hash(path.read_text()) == digest:
                if stats is not None:
                    stats["disk_hits"] = stats.get("disk_hits", 0) + 1
                return _import_file(path, name)
            warnings.warn(f"ssmc: cache entry {path} does not match its hash; regenerating", stacklevel=3)
        _write_atomic(directory, path, source)
        if stats is not None:
            stats["disk_writes"] = stats.get("disk_writes", 0) + 1
        return _import_file(path, name)
    except (OSError, UnsafeCacheDir) as e:
        warnings.warn(f"ssmc: kernel cache unusable ({e}); compiling in memory", stacklevel=3)
        path = _memory_dir() / f"{digest}.py"
        _write_atomic(path.parent, path, source)
        return _import_file(path, name)


def _write_atomic(directory: Path, path: Path, source: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(source)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
