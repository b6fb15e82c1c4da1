"""HGRN's recurrence ("Hierarchically Gated Recurrent Neural Network"), in the form of
flash-linear-attention's `chunk_hgrn`: h[t] = exp(g[t]) * h[t-1] + x[t], one state element per
channel, g the log of the forget gate (g <= 0). The gates and the input's (1 - forget) scaling
happen outside, in the block."""

from ssmc import In, exp, layer, scan


@layer
def hgrn(
    x: In["B L D"],                 # input, already scaled by (1 - forget gate)
    g: In["B L D", "log_sigmoid"],  # log forget gate (<= 0)
    h0: In["B D"] = None,           # initial state
):
    h = scan(exp(g), x, axis="L", h0=h0)
    return {"y": h, "h_final": h.final}
