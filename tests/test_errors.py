"""Errors a user can act on: each names the layer, the argument and the dim."""

import numpy as np
import pytest
from mamba1 import mamba1

import ssmc
from ssmc import ArgumentError, DefinitionError, In, Param

SIZES = dict(B=2, L=5, D=3, N=4)


def args(**over):
    a = mamba1.random_inputs(SIZES)
    a.update(over)
    return a


def test_missing_argument():
    a = args()
    del a["z"]
    with pytest.raises(ArgumentError, match=r"mamba1: missing argument `z` \['B', 'L', 'D'\]"):
        mamba1(**a)


def test_unexpected_argument():
    with pytest.raises(ArgumentError, match=r"mamba1: unexpected argument `w`"):
        mamba1(**args(w=np.zeros(3)))


def test_wrong_rank():
    with pytest.raises(ArgumentError, match=r"mamba1: argument `x` has rank 2 .* declared \['B', 'L', 'D'\]"):
        mamba1(**args(x=np.zeros((2, 5))))


def test_contradicting_size_names_both_arguments():
    a = mamba1.random_inputs(dict(B=2, L=5, D=3, N=16))
    a["B"] = np.zeros((2, 5, 17))
    with pytest.raises(ArgumentError) as e:
        mamba1(**a)
    assert str(e.value) == "mamba1: argument `B` has N=17 but `A_log` has N=16"


def test_bad_dtype():
    with pytest.raises(ArgumentError, match=r"mamba1: argument `x` has dtype int64; accepted: float64"):
        mamba1(**args(x=np.zeros((2, 5, 3), dtype=np.int64)))


def test_not_an_array():
    with pytest.raises(ArgumentError, match=r"argument `x` is a list"):
        mamba1(**args(x=[1.0, 2.0]))


def test_fixed_size():
    @ssmc.layer(sizes={"N": 16})
    def f(x: In["B L N"]):
        return x * 2.0

    with pytest.raises(ArgumentError, match=r"f: argument `x` has N=5 but the layer's fixed sizes has N=16"):
        f(np.zeros((1, 2, 5)))


def test_missing_annotation():
    with pytest.raises(DefinitionError, match=r"g: argument `x` needs an annotation"):

        @ssmc.layer
        def g(x):
            return x


def test_reduce_over_absent_dim():
    with pytest.raises(DefinitionError, match=r"h: `sum` over 'N': the value's dims are \['B', 'L', 'D'\]"):

        @ssmc.layer
        def h(x: In["B L D"]):
            return x.sum("N")


def test_scan_axis_absent():
    with pytest.raises(DefinitionError, match=r"k: `scan` along 'T'"):

        @ssmc.layer
        def k(x: In["B L D"]):
            return ssmc.scan(x, x, axis="T")


def test_bool_used_as_value():
    with pytest.raises(DefinitionError, match=r"m: `add` operand 0 is bool"):

        @ssmc.layer
        def m(x: In["B L D"]):
            return (x > 0.0) + x


def test_python_if_on_traced_value():
    with pytest.raises(DefinitionError, match=r"no truth value; use ssmc.where"):

        @ssmc.layer
        def n(x: In["B L D"]):
            return x if x > 0.0 else -x


def test_unknown_initializer():
    @ssmc.layer
    def p(x: In["B L D"], w: Param["D", "nope"]):
        return x * w

    with pytest.raises(ValueError, match=r"unknown initializer 'nope'"):
        p.init_params(dict(D=3))


def test_discretize_method_checked():
    with pytest.raises(DefinitionError, match=r"q: discretize method 'rk4'"):

        @ssmc.layer
        def q(x: In["B L D"], A: Param["D"]):
            return ssmc.discretize(A, x, x, "rk4")[0]


def test_final_only_on_scan():
    with pytest.raises(DefinitionError, match=r"`.final` is only defined on a scan"):

        @ssmc.layer
        def r(x: In["B L D"]):
            return (x * 2.0).final


def test_compiled_layer_checks_device_and_dtype():
    torch = pytest.importorskip("torch")
    c = ssmc.compile(mamba1)
    a = {k: torch.tensor(v, dtype=torch.float32) for k, v in args().items()}
    a["x"] = a["x"].double()
    with pytest.raises(ArgumentError, match=r"argument `x` has dtype torch.float64; accepted: float32, bfloat16, float16"):
        c(**a)
    a["x"] = np.zeros((2, 5, 3))
    with pytest.raises(ArgumentError, match=r"argument `x` is a ndarray; compiled layers take torch tensors"):
        c(**a)
