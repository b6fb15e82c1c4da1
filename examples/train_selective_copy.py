"""Train a small model of ssmc Mamba-1 layers on selective copying (the Mamba paper, 4.1.1).

The input is a sequence of blank tokens with a few data tokens at random positions, followed by
as many marker tokens; at the markers the model must output the data tokens in order. A
time-invariant SSM cannot solve it (the positions are random); a selective one can. Every
forward and backward of the SSM runs ssmc's generated kernels (on the CPU under
TRITON_INTERPRET=1, where a tiny run takes a minute).

    python examples/train_selective_copy.py --steps 2000 --device cuda
    TRITON_INTERPRET=1 python examples/train_selective_copy.py --tiny
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn

BLANK, MARKER = 0, 1  # data tokens are 2 .. vocab - 1


def make_batch(batch: int, length: int, n_data: int, vocab: int, gen: torch.Generator, device: str):
    """(tokens [batch, length + n_data], targets [batch, n_data]): data tokens at random
    positions among ``length`` blanks, then ``n_data`` markers."""
    data = torch.randint(2, vocab, (batch, n_data), generator=gen)
    pos = torch.rand(batch, length, generator=gen).argsort(1)[:, :n_data].sort(1).values
    tokens = torch.full((batch, length + n_data), BLANK, dtype=torch.long)
    tokens.scatter_(1, pos, data)
    tokens[:, length:] = MARKER
    return tokens.to(device), data.to(device)


class MambaLayer(nn.Module):
    """in_proj -> ssmc's Mamba-1 selective scan (examples/mamba1.py) -> out_proj, pre-norm and
    residual. (No short convolution: Mamba's block has one; ssmc does not fuse it yet.)"""

    def __init__(self, d_model: int, d_inner: int, d_state: int, seed: int) -> None:
        super().__init__()
        from mamba1 import mamba1

        import ssmc

        self.d_inner, self.d_state = d_inner, d_state
        self.norm = nn.LayerNorm(d_model)
        self.in_proj = nn.Linear(d_model, 3 * d_inner + 2 * d_state)
        self.ssm = ssmc.to_module(mamba1, dict(D=d_inner, N=d_state), seed=seed)
        self.out_proj = nn.Linear(d_inner, d_model)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        D, N = self.d_inner, self.d_state
        x, dt, z, B, C = self.in_proj(self.norm(u)).split([D, D, D, N, N], dim=-1)
        return u + self.out_proj(self.ssm(x=x, dt=dt, B=B, C=C, z=z)["y"])


class Model(nn.Module):
    def __init__(self, vocab: int, d_model: int, d_inner: int, d_state: int, n_layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList(MambaLayer(d_model, d_inner, d_state, seed=i) for i in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm(h))


def train(steps: int, batch: int, length: int, n_data: int, vocab: int, d_model: int, d_inner: int,
          d_state: int, n_layers: int, lr: float, device: str, seed: int = 0, log=print) -> list[float]:
    """Train; returns the loss of every step (cross-entropy at the marker positions)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Model(vocab, d_model, d_inner, d_state, n_layers).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for step in range(steps):
        tokens, targets = make_batch(batch, length, n_data, vocab, gen, device)
        logits = model(tokens)[:, length:]
        loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            acc = (logits.argmax(-1) == targets).float().mean().item()
            log(f"step {step:5d}  loss {loss.item():.4f}  accuracy {acc:.3f}")
    return losses


# batch 4: 105 s in Triton's interpreter on a 2-core machine (session 17; batch 8 took 179 s,
# past the two minutes the tiny run must take); its loss falls to 0.41 of the first steps'
TINY = dict(steps=30, batch=4, length=6, n_data=2, vocab=4, d_model=16, d_inner=16, d_state=4, n_layers=1, lr=2e-2)
FULL = dict(steps=2000, batch=64, length=256, n_data=16, vocab=18, d_model=64, d_inner=128, d_state=16, n_layers=2, lr=2e-3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="the CPU-sized run the tests use")
    p.add_argument("--steps", type=int)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    cfg = dict(TINY if a.tiny else FULL)
    if a.steps:
        cfg["steps"] = a.steps
    if a.device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")
    losses = train(device=a.device, **cfg)
    print(f"loss {sum(losses[:5]) / 5:.4f} (first 5 steps) -> {sum(losses[-5:]) / 5:.4f} (last 5)")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
