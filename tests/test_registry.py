"""Every op in the registry has every rule this stage of the compiler needs."""

import numpy as np
import pytest

from ssmc.backends.triton.prelude import HELPERS
from ssmc.ops.registry import ELEMENTWISE, GROUPS, REGISTRY, OpDef

REQUIRED = ("shape", "numpy", "lowering", "doc", "derivative")

# Ops whose derivative is not a registry rule, and why (autodiff handles or refuses them).
NO_RULE = {
    "arg": "a leaf", "const": "a leaf",
    "sum": "autodiff broadcasts the cotangent back itself",
    "scan": "autodiff's scan rule (a reverse scan and prev)", "scan_final": "with its scan",
    "discretize": "expanded before autodiff", "gate": "expanded before autodiff",
    "mean": "not yet: needs the dim's size as a value; autodiff says so",
    "prev": "made by autodiff; second derivatives are not supported",
    "matrix_scan": "autodiff's matrix_vjp (more matrix scans and the decay's gradient)", "matrix_scan_final": "with its matrix scan",
    "matrix_scan_dl": "made by autodiff (a matrix scan's decay gradient); second derivatives are not supported",
    "exprel_grad": "made by autodiff; second derivatives are not supported",
    "conv_t": "made by autodiff (the conv's); second derivatives are not supported",
    "conv_final_t": "made by autodiff (the conv's final window's); second derivatives are not supported",
    "conv_dw": "made by autodiff (the conv weights'); second derivatives are not supported",
}


def missing_rules(op: OpDef) -> list[str]:
    out = []
    if not callable(op.shape):
        out.append("shape")
    if not callable(op.numpy):
        out.append("numpy")
    has_lowering = op.triton is not None or "lower" in op.extra
    # discretize and gate are expanded by passes before lowering: their lowering is the pass
    if not has_lowering and op.name not in ("discretize", "gate"):
        out.append("lowering")
    if not op.doc:
        out.append("doc")
    if op.derivative is None and op.name not in NO_RULE:
        out.append("derivative")
    return out


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_op_has_every_rule(name):
    assert missing_rules(REGISTRY[name]) == [], f"op `{name}` lacks rules"


def test_missing_rule_is_reported_by_name():
    broken = OpDef("frobnicate", ELEMENTWISE, 1, REGISTRY["exp"].shape, None, None, "")
    assert missing_rules(broken) == ["numpy", "lowering", "doc", "derivative"]


def test_groups_partition_the_registry():
    names = [n for g in GROUPS.values() for n in g]
    assert sorted(names) == sorted(REGISTRY)


def test_templates_name_only_known_helpers():
    import re

    for op in REGISTRY.values():
        if op.triton and op.triton != "structural":
            for h in re.findall(r"_ssmc_\w+", op.triton):
                assert h in HELPERS, f"op `{op.name}` uses unknown helper {h}"


def test_required_elementwise_set_is_registered():
    wanted = """add sub mul div neg exp log log1p expm1 softplus sigmoid silu tanh relu gelu
    square sqrt rsqrt abs maximum minimum where pow cast sum mean discretize scan gate""".split()
    assert [w for w in wanted if w not in REGISTRY] == []


@pytest.mark.parametrize("name", sorted(GROUPS[ELEMENTWISE] - {"where", "cast", "pow", "gt", "lt", "ge", "le", "eq"}))
def test_numpy_rule_is_float64_and_elementwise(name):
    op = REGISTRY[name]
    x = np.linspace(0.1, 3.0, 7)
    out = op.numpy(*([x] * op.arity))
    assert out.shape == x.shape and out.dtype == np.float64
