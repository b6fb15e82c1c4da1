"""S4D: a time-invariant diagonal SSM ("On the Parameterization and Initialization of
Diagonal State Space Models"). The step, A, B and C are parameters, not functions of the input;
A is real and negative (S4D-real). Two discretizations: exact ZOH and bilinear."""

from ssmc import In, Param, discretize, exp, layer, scan


def _s4d(method: str):
    @layer(name=f"s4d_{method}")
    def s4d(
        u: In["B L H"],
        log_dt: Param["H", "log_dt"],       # the step, log-parameterised
        A_log: Param["H N", "s4d_real"],    # A = -exp(A_log)
        B: Param["H N", "normal"],
        C: Param["H N", "normal"],
        D: Param["H", "ones"],
        h0: In["B H N"] = None,
    ):
        Abar, Bbar = discretize(-exp(A_log), B, exp(log_dt), method)
        h = scan(Abar, Bbar * u, axis="L", h0=h0)
        return {"y": (h * C).sum("N") + D * u, "h_final": h.final}

    return s4d


s4d_zoh = _s4d("zoh")
s4d_bilinear = _s4d("bilinear")
