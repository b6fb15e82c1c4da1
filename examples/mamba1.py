"""Mamba-1's selective SSM (S6), as in "Mamba: Linear-Time Sequence Modeling with Selective
State Spaces": an input-dependent step, zero-order-hold A with Euler B, a scan over L with a
[D, N] state per batch row, a readout with C over N, the D skip, and a SiLU gate."""

from ssmc import In, Param, discretize, exp, gate, layer, scan, softplus


@layer
def mamba1(
    x: In["B L D"],                    # the scan's input (after conv1d + SiLU in a full block)
    dt: In["B L D"],                   # the step, before dt_bias and softplus
    B: In["B L N"],                    # input-dependent B and C, shared across channels
    C: In["B L N"],
    z: In["B L D"],                    # the gate branch
    A_log: Param["D N", "s4d_real"],   # A = -exp(A_log)
    D: Param["D", "ones"],             # skip connection
    dt_bias: Param["D", "dt_bias"],
    h0: In["B D N"] = None,            # initial state (zeros if not given)
):
    delta = softplus(dt + dt_bias)
    Abar, Bbar = discretize(-exp(A_log), B, delta, "zoh_euler")
    h = scan(Abar, Bbar * x, axis="L", h0=h0)
    y = (h * C).sum("N") + D * x
    return {"y": gate(y, z, "silu"), "h_final": h.final}
