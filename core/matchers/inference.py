"""``for_inference(model)``: an eval-mode copy of a network arranged for fast CPU inference.

Every ``BatchNorm2d`` that directly follows a ``Conv2d`` inside an ``nn.Sequential`` is folded
into that convolution (torch's ``fuse_conv_bn_eval``) and the weights are stored channels-last,
which oneDNN's CPU convolutions run fastest. The copy computes what the original computes in
eval mode, to float rounding; the original (what training and the weights file use) is not
touched.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def for_inference(model: nn.Module) -> nn.Module:
    """A folded, channels-last, eval-mode deep copy of ``model`` (see the module doc)."""
    fast = copy.deepcopy(model).eval()
    for seq in [m for m in fast.modules() if isinstance(m, nn.Sequential)]:
        for k in range(len(seq) - 1):
            conv, bn = seq[k], seq[k + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq[k] = fuse_conv_bn_eval(conv, bn)
                seq[k + 1] = nn.Identity()
    return fast.to(memory_format=torch.channels_last)
