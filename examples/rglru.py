"""Griffin's RG-LRU ("Griffin: Mixing Gated Linear Recurrences with Local Attention", De et
al. 2024): a diagonal recurrence whose decay a_t = sigmoid(Lambda)^(8 r_t) is gated by the
input, h[t] = a_t * h[t-1] + sqrt(1 - a_t^2) * (i_t * x[t]). The gates' linear maps (W_a, W_x)
run outside, as Mamba's in_proj does; sqrt(1 - a^2) is computed as sqrt(-expm1(2 log a)), exact
for a near 1."""

from ssmc import In, Param, exp, expm1, layer, scan, sigmoid, softplus, sqrt


@layer
def rglru(
    x: In["B L D"],                       # the input
    gate_a: In["B L D"],                  # recurrence gate, before the sigmoid (W_a x + b_a)
    gate_x: In["B L D"],                  # input gate, before the sigmoid (W_x x + b_x)
    Lambda: Param["D", "rglru_lambda"],   # a = sigmoid(Lambda)
    h0: In["B D"] = None,
):
    log_a = -8.0 * sigmoid(gate_a) * softplus(-Lambda)  # 8 r log sigmoid(Lambda)
    a = exp(log_a)
    h = scan(a, sqrt(-expm1(2.0 * log_a)) * (sigmoid(gate_x) * x), axis="L", h0=h0)
    return {"y": h, "h_final": h.final}
