"""minGRU ("Were RNNs All We Needed?"): a gated recurrence with state size 1 per channel,
h[t] = (1 - a[t]) * h[t-1] + a[t] * x_tilde[t], a = sigmoid(k + b). The projections producing k
and x_tilde from the layer's input happen outside, as Mamba's in_proj does."""

from ssmc import In, Param, layer, scan, sigmoid


@layer
def mingru(
    k: In["B L D"],              # gate pre-activation
    x_tilde: In["B L D"],        # candidate state
    b: Param["D", "zeros"],      # gate bias
    h0: In["B D"] = None,
):
    a = sigmoid(k + b)
    h = scan(1 - a, a * x_tilde, axis="L", h0=h0)
    return {"y": h, "h_final": h.final}
