"""LRU, the Linear Recurrent Unit ("Resurrecting Recurrent Neural Networks for Long
Sequences", Orvieto et al. 2023): a diagonal recurrence with a complex decay lambda,
h[t] = lambda * h[t-1] + gamma * (B u)[t], |lambda| = exp(-exp(nu_log)), arg lambda =
exp(theta_log), gamma = sqrt(1 - |lambda|^2). Complex values are a dim R of two parts (real,
imaginary), the layout of torch.view_as_real. The projections B u and Re(C h) are dense maps
and run outside, as Mamba's in_proj and out_proj do."""

from ssmc import In, Param, cos, exp, expm1, layer, scan, sin, sqrt, stack


@layer(sizes={"RI": 2})
def lru(
    bu: In["B L D RI"],                      # (B u)[t], complex: the input projection's output
    nu_log: Param["D", "lru_nu_log"],        # |lambda| = exp(-exp(nu_log))
    theta_log: Param["D", "lru_theta_log"],  # arg lambda = exp(theta_log)
    h0: In["B D RI"] = None,                 # initial state, complex
):
    nu, phase = exp(nu_log), exp(theta_log)
    mag = exp(-nu)
    lam = stack(mag * cos(phase), mag * sin(phase), dim="RI")
    gamma = sqrt(-expm1(-2.0 * nu))  # sqrt(1 - |lambda|^2), exact for |lambda| near 1
    h = scan(lam, gamma * bu, axis="L", h0=h0, complex="RI")
    return {"y": h, "h_final": h.final}
