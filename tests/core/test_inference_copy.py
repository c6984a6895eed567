"""``for_inference``: the folded channels-last copy computes what the original computes in eval
mode, and leaves the original as it was."""
import torch
from torch import nn

from retreg.core.matchers.inference import for_inference


def _net_with_learned_statistics() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8, affine=False),
                        nn.ReLU(),
                        nn.Sequential(nn.Conv2d(8, 4, 3, stride=2, padding=1),
                                      nn.BatchNorm2d(4), nn.ReLU()))
    net.train()
    with torch.no_grad():
        for _ in range(5):  # non-trivial running mean and variance
            net(torch.randn(4, 2, 16, 16) * 3 + 1)
    net[3][1].weight.data.uniform_(0.5, 2.0)
    net[3][1].bias.data.uniform_(-1.0, 1.0)
    return net


def test_the_copy_equals_the_original_in_eval_mode_with_every_batchnorm_folded():
    net = _net_with_learned_statistics()
    fast = for_inference(net)
    x = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        expected = net.eval()(x)
        got = fast(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert not fast.training


def test_the_original_keeps_its_batchnorm_and_training_mode():
    net = _net_with_learned_statistics()
    for_inference(net)
    assert net.training
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 2
