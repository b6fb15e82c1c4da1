"""A bidirectional selective scan in one layer (the BiMamba of Vision Mamba and Caduceus): a
forward and a reverse Mamba-1 scan over the same inputs, each direction with its own A, their
readouts summed with the skip term, then gated. Compiled, the state is never stored: the
forward scan's kernel stores its readout ([B, L, D]) and the reverse scan's kernel adds it;
the backward runs one recurrence's backward per direction and sums the gradients."""

from ssmc import In, Param, discretize, exp, gate, layer, scan, softplus


@layer
def bimamba(
    x: In["B L D"], dt: In["B L D"], B: In["B L N"], C: In["B L N"], z: In["B L D"],
    A_log: Param["D N", "s4d_real"],    # the forward direction's A = -exp(A_log)
    A_log_r: Param["D N", "s4d_real"],  # the reverse direction's
    D: Param["D", "ones"], dt_bias: Param["D", "dt_bias"],
):
    delta = softplus(dt + dt_bias)
    Af, Bbar = discretize(-exp(A_log), B, delta, "zoh_euler")
    Ar, _ = discretize(-exp(A_log_r), B, delta, "zoh_euler")
    u = Bbar * x
    y = (scan(Af, u, axis="L") * C).sum("N") + (scan(Ar, u, axis="L", reverse=True) * C).sum("N")
    return gate(y + D * x, z, "silu")
