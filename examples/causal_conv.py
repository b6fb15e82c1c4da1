"""The short causal convolution of Mamba's blocks (mamba-ssm's `causal_conv1d_fn` with SiLU,
Hugging Face's `conv1d` + activation): depthwise, K taps per channel, a bias, SiLU after.

`window0` is the K inputs before the first step (a cache's `conv_state`, [B, D, K], oldest
first; zeros when not given) and `window` the K inputs ending at the last step: a call from the
previous call's `window` continues it (chunked prefill, decoding). Compiled, this is one
generated kernel, so a Mamba block needs no separate convolution package; `mamba2_conv.py`
fuses the same convolution into the scan's kernel instead."""

from ssmc import In, Param, conv, layer, silu


@layer
def causal_conv(
    x: In["B L D"],
    weight: Param["D K", "conv"],        # K taps per channel (Mamba: K = 4)
    bias: Param["D", "zeros"],
    window0: In["B D K"] = None,         # the K inputs before the first step
):
    c = conv(x, weight, axis="L", window0=window0)
    return {"y": silu(c + bias), "window": c.final}
