"""Load Triton kernels from source text (a bench script's own kernels beside ssmc's prelude):
``triton.jit`` needs a real file to read the source from."""

import importlib.util
import os
import sys
import tempfile


def load(src: str, name: str):
    """The module ``name`` made of ``src``, written to a temporary file and imported."""
    path = os.path.join(tempfile.mkdtemp(), f"{name}.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
