"""Mamba-2's SSD scan ("Transformers are SSMs", Dao & Gu 2024), the operation of mamba-ssm's
`mamba_chunk_scan_combined`: H heads of head dim P, a scalar decay per head and step
exp(dt * A), a state of N per head channel, B and C shared by the heads of a group.

Heads are named by (group G, head within group R): H = G * R, and head h = g * R + r is in group
g, as in mamba-ssm. A [B, L, H, P] tensor is `x.view(B, L, G, H // G, P)` (no copy); B and C are
[B, L, G, N] and broadcast over R and P by name. The gate is mamba_chunk_scan_combined's `z`."""

from ssmc import In, Param, exp, gate, layer, scan, softplus


@layer
def mamba2(
    x: In["B L G R P"],                  # [B, L, H, P] viewed as [B, L, G, H/G, P]
    dt: In["B L G R"],                   # the step per head, before dt_bias and softplus
    B: In["B L G N"],                    # one B and C per group of heads
    C: In["B L G N"],
    z: In["B L G R P"],                  # the gate
    A_log: Param["G R", "mamba2_a_log"],  # A = -exp(A_log), a scalar per head
    D: Param["G R", "ones"],
    dt_bias: Param["G R", "dt_bias"],
    h0: In["B G R P N"] = None,
):
    delta = softplus(dt + dt_bias)
    h = scan(exp(-exp(A_log) * delta), (delta * x) * B, axis="L", h0=h0)
    y = (h * C).sum("N") + D * x
    return {"y": gate(y, z, "silu"), "h_final": h.final}
