"""Mamba-2's scan with the block's causal convolution fused in (the part of mamba-ssm's
`Mamba2` between `in_proj` and the gated norm): x, B and C are in_proj's `xBC` before the
depthwise conv + SiLU, which the scan kernel computes as it reads them, so the convolved
values never go to memory. The conv's windows (the K inputs before the first step) are part of
the layer's state next to h, in and out: chunked prefill and decoding continue all of them.
See `mamba2.py` for the scan's conventions (heads as groups G x R)."""

from ssmc import In, Param, conv, exp, gate, layer, scan, silu, softplus


@layer
def mamba2_conv(
    x: In["B L G R P"], B: In["B L G N"], C: In["B L G N"],   # in_proj's xBC, before the conv
    dt: In["B L G R"], z: In["B L G R P"],
    conv_x: Param["G R P K", "conv"], conv_x_bias: Param["G R P", "zeros"],
    conv_B: Param["G N K", "conv"], conv_B_bias: Param["G N", "zeros"],
    conv_C: Param["G N K", "conv"], conv_C_bias: Param["G N", "zeros"],
    A_log: Param["G R", "mamba2_a_log"], D: Param["G R", "ones"], dt_bias: Param["G R", "dt_bias"],
    h0: In["B G R P N"] = None,
    x_window: In["B G R P K"] = None, B_window: In["B G N K"] = None, C_window: In["B G N K"] = None,
):
    cx = conv(x, conv_x, axis="L", window0=x_window)
    cB = conv(B, conv_B, axis="L", window0=B_window)
    cC = conv(C, conv_C, axis="L", window0=C_window)
    xc, Bc, Cc = silu(cx + conv_x_bias), silu(cB + conv_B_bias), silu(cC + conv_C_bias)
    delta = softplus(dt + dt_bias)
    h = scan(exp(-exp(A_log) * delta), (delta * xc) * Bc, axis="L", h0=h0)
    y = (h * Cc).sum("N") + D * xc
    return {"y": gate(y, z, "silu"), "h_final": h.final,
            "x_window": cx.final, "B_window": cB.final, "C_window": cC.final}
