"""Full mixer blocks against Hugging Face transformers' MambaMixer and Mamba2Mixer (their
PyTorch paths, on the CPU), given the same weights loaded from their state_dict: outputs,
final states and every parameter's gradient to float32 rounding."""

import pytest
import torch
from conftest import DEVICE

from ssmc.export import Mamba2Mixer, MambaMixer

transformers = pytest.importorskip("transformers")


def _randomize(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name == "A_log":
                p.copy_(torch.rand(p.shape, generator=g) * 2)  # A in [-e^2, -1]
            elif name in ("dt_bias", "dt_proj.bias"):
                p.copy_(torch.rand(p.shape, generator=g) * 3 - 4)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _compare(ours, theirs, hidden):
    """Outputs and parameter gradients of ``ours`` (on DEVICE) and ``theirs`` (CPU, float32)."""
    ours.load_state_dict(theirs.state_dict())
    ours = ours.to(DEVICE)
    h_ours = hidden.clone().to(DEVICE).requires_grad_()
    h_theirs = hidden.clone().requires_grad_()
    y_ours, y_theirs = ours(h_ours), theirs(h_theirs)
    scale = float(y_theirs.abs().max())
    torch.testing.assert_close(y_ours.cpu(), y_theirs.detach(), rtol=1e-4, atol=1e-5 * scale)
    w = torch.randn(y_theirs.shape, generator=torch.Generator().manual_seed(1))
    (y_ours * w.to(DEVICE)).sum().backward()
    (y_theirs * w).sum().backward()
    grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        if name.startswith("scan"):
            continue
        want = grads[name].grad
        torch.testing.assert_close(p.grad.cpu(), want, rtol=1e-4, atol=1e-5 * float(want.abs().max()) + 1e-7, msg=name)
    torch.testing.assert_close(h_ours.grad.cpu(), h_theirs.grad, rtol=1e-4, atol=1e-5 * float(h_theirs.grad.abs().max()))


@pytest.mark.parametrize("L", [1, 13])
def test_mamba_mixer_equals_transformers(L):
    from transformers.models.mamba.modeling_mamba import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaMixer as HFMambaMixer

    cfg = MambaConfig(hidden_size=12, state_size=5, expand=2, conv_kernel=4, time_step_rank=3, use_conv_bias=True,
                      use_bias=False, hidden_act="silu", use_mambapy=False)
    theirs = HFMambaMixer(cfg, layer_idx=0)
    _randomize(theirs, 0)
    ours = MambaMixer(d_model=12, d_inner=24, d_state=5, d_conv=4, dt_rank=3)
    hidden = torch.randn(2, L, 12, generator=torch.Generator().manual_seed(2))
    _compare(ours, theirs, hidden)


@pytest.mark.parametrize("fuse_conv", [False, True])
@pytest.mark.parametrize("L", [1, 11])
def test_mamba2_mixer_equals_transformers(L, fuse_conv):
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Config
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer as HFMamba2Mixer

    cfg = Mamba2Config(hidden_size=12, num_heads=6, head_dim=4, expand=2, n_groups=2, state_size=5, conv_kernel=4,
                       chunk_size=4, use_conv_bias=True, use_bias=False, hidden_act="silu", layer_norm_epsilon=1e-5)
    theirs = HFMamba2Mixer(cfg, layer_idx=0)
    _randomize(theirs, 3)
    ours = Mamba2Mixer(d_model=12, d_inner=24, d_state=5, head_dim=4, n_groups=2, d_conv=4, eps=1e-5, fuse_conv=fuse_conv)
    hidden = torch.randn(2, L, 12, generator=torch.Generator().manual_seed(4))
    _compare(ours, theirs, hidden)


def test_state_dict_names_are_transformers_names():
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Config
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer as HFMamba2Mixer

    cfg = Mamba2Config(hidden_size=8, num_heads=4, head_dim=4, expand=2, n_groups=1, state_size=3)
    ours = Mamba2Mixer(d_model=8, d_inner=16, d_state=3, head_dim=4, n_groups=1)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in HFMamba2Mixer(cfg, 0).state_dict().items()}
