"""The fusion-mask net: any image size in, a mask of that size out; the shifted windows keep
rolled-in pixels apart; weights round-trip through safetensors and foreign files are refused."""
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from retreg.core.errors import ModelLoadError
from retreg.core.fusion_net import (FusionNet, FusionNetConfig, SwinBlock, load_fusion_net,
                                    predict_mask, save_fusion_net)
from retreg.resources import bundled_fusion_weights


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("h, w", [(37, 50), (64, 64), (8, 100)])
def test_the_mask_has_the_input_size_and_lies_in_0_1(h, w):
    torch.manual_seed(0)
    m = FusionNet().eval()(torch.rand(1, 2, h, w))
    assert m.shape == (1, 1, h, w)
    assert 0.0 <= float(m.min()) and float(m.max()) <= 1.0


def test_the_shifted_block_keeps_pixels_the_roll_brings_together_apart():
    torch.manual_seed(0)
    block = SwinBlock(dim=8, heads=2, window=8, shift=4, mlp_ratio=2.0).eval()
    x = torch.rand(1, 24, 24, 8)
    bottom, middle = x.clone(), x.clone()
    bottom[:, -4:] = torch.rand(1, 4, 24, 8)  # the bottom rows, rolled next to the top rows
    middle[:, 12:16] = torch.rand(1, 4, 24, 8)  # shifted window: rows 12-19
    with torch.no_grad():
        out_x, out_bottom, out_middle = block(x), block(bottom), block(middle)
    torch.testing.assert_close(out_x[:, :4], out_bottom[:, :4])
    assert not torch.allclose(out_x[:, 16:20], out_middle[:, 16:20])  # real neighbours do


def test_weights_round_trip_through_safetensors(tmp_path):
    torch.manual_seed(0)
    net = FusionNet(FusionNetConfig(stem=4, dim=16)).eval()
    path = save_fusion_net(net, tmp_path / "f.safetensors", card={"name": "t"})
    again = load_fusion_net(path)
    x = torch.rand(1, 2, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x))
    assert again.config == net.config and (tmp_path / "f.card.json").is_file()


def test_a_file_that_is_not_fusion_weights_is_refused(tmp_path):
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    for name in ("other", "junk", "missing"):
        with pytest.raises(ModelLoadError):
            load_fusion_net(tmp_path / f"{name}.safetensors")


def test_the_bundled_net_prefers_the_input_that_has_the_detail():
    load_fusion_net(bundled_fusion_weights())  # shipped and loadable
    rng = np.random.default_rng(0)
    flat = np.full((128, 128), 0.5, np.float32)
    textured = np.zeros((128, 128), np.float32)
    textured[:, ::6] = 1.0  # thin bright lines
    textured += rng.normal(0, 0.02, textured.shape).astype(np.float32)
    assert predict_mask(flat, textured).mean() > 0.7  # the moving image's detail
    assert predict_mask(textured, flat).mean() < 0.3  # the fixed image's detail
