"""examples/train_selective_copy.py, tiny: a model of ssmc layers trains (every forward and
backward through generated kernels) and its loss falls."""

from conftest import DEVICE
from train_selective_copy import TINY, train


def test_selective_copy_loss_falls():
    losses = train(device=DEVICE, log=lambda _: None, **TINY)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last, losses)
