"""Gated linear attention (GLA, "Gated Linear Attention Transformers with Hardware-Efficient
Training", Yang et al. 2024): per head a matrix-valued state S [K, V] with a data-dependent decay
per key, S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T, read out as o_t = S_t^T q_t. The operation of
flash-linear-attention's `chunk_gla` / `fused_recurrent_gla` (scale q by K^-1/2 first, as they
do by default). A scalar decay per head (simple GLA, RetNet-like) is `g: In["B L H"]`."""

from ssmc import In, exp, layer, scan


@layer
def gla(
    q: In["B L H K"],
    k: In["B L H K"],
    v: In["B L H V"],
    g: In["B L H K", "log_sigmoid"],   # log of the decay per key, <= 0
    h0: In["B H K V"] = None,
):
    S = scan(exp(g), k * v, axis="L", h0=h0)
    return {"o": (S * q).sum("K"), "h_final": S.final}


@layer
def simple_gla(
    q: In["B L H K"],
    k: In["B L H K"],
    v: In["B L H V"],
    g: In["B L H", "log_sigmoid"],     # one decay per head and step (fla's chunk_simple_gla)
    h0: In["B H K V"] = None,
):
    S = scan(exp(g), k * v, axis="L", h0=h0)
    return {"o": (S * q).sum("K"), "h_final": S.final}
