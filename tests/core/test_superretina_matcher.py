"""The SuperRetina-style matcher: network shapes and size, detection (NMS, threshold, field of
view), mutual nearest neighbours with the ratio test, the Matcher protocol in full-resolution
coordinates, and weights that round-trip and refuse malformed files."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from retreg.core.errors import ModelLoadError
from retreg.core.matchers import Matcher, available_matchers, get_matcher
from retreg.core.matchers.fast import FastNet
from retreg.core.matchers.fast.weights import save_weights as save_fast
from retreg.core.matchers.superretina import (SuperRetinaConfig, SuperRetinaMatcher,
                                              SuperRetinaNet)
from retreg.core.matchers.keypoints import Keypoints, mutual_nearest
from retreg.core.matchers.superretina.model import (SuperRetinaOutput, detect, local_maxima,
                                                    sample_descriptors)
from retreg.core.matchers.superretina.weights import (CONFIG_KEY, load_model, read_config,
                                                      save_weights)
from retreg.core.modality import prepare
from retreg.core.types import Matches
from tests.helpers import fundus_like

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = SuperRetinaConfig(working_side=96, widths=(4, 8, 8, 16), descriptor_dim=16, top_k=64,
                         det_threshold=0.0, ratio=1.0)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    return save_weights(SuperRetinaNet(TINY).eval(), tmp_path_factory.mktemp("w") / "t.safetensors")


@pytest.mark.parametrize("streams", [1, 2])
def test_full_resolution_heatmap_and_one_eighth_descriptors(streams):
    net = SuperRetinaNet(SuperRetinaConfig(streams=streams)).eval()
    n = sum(p.numel() for p in net.parameters())
    assert 100_000 * streams < n < 400_000 * streams
    with torch.no_grad():
        out = net(torch.rand(2, 1, 96, 128), side=1)
    assert out.heatmap.shape == (2, 1, 96, 128)
    assert float(out.heatmap.min()) >= 0 and float(out.heatmap.max()) <= 1
    assert out.desc.shape == (2, 64, 12, 16)
    assert torch.allclose(out.desc.norm(dim=1), torch.ones(2, 12, 16), atol=1e-5)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.rand(1, 1, 90, 96))
    with pytest.raises(ValueError, match="side must be"):
        net(torch.rand(1, 1, 96, 96), side=2)


def test_two_streams_see_each_side_with_their_own_weights():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 64, 64)
    one, two = SuperRetinaNet(SuperRetinaConfig(streams=1)).eval(), \
        SuperRetinaNet(SuperRetinaConfig(streams=2)).eval()
    with torch.no_grad():
        assert torch.equal(one(x, 0).heatmap, one(x, 1).heatmap)
        assert not torch.equal(two(x, 0).heatmap, two(x, 1).heatmap)


def test_local_maxima_keep_one_peak_per_window_above_the_threshold():
    heat = torch.zeros(1, 1, 20, 20)
    heat[0, 0, 5, 5], heat[0, 0, 5, 7] = 0.9, 0.8  # 0.8 lies inside 0.9's window
    heat[0, 0, 15, 15] = 0.2  # below the threshold
    peaks = local_maxima(heat, radius=3, threshold=0.3)
    assert torch.nonzero(peaks[0]).tolist() == [[5, 5]]


def test_detect_keeps_maxima_inside_the_field_strongest_first():
    cfg = SuperRetinaConfig(top_k=2, det_threshold=0.3, nms_radius=2)
    heat = torch.zeros(1, 1, 32, 32)
    for (y, x), v in {(4, 4): 0.5, (4, 20): 0.9, (20, 4): 0.7, (28, 28): 0.95}.items():
        heat[0, 0, y, x] = v
    valid = torch.ones(1, 32, 32, dtype=torch.bool)
    valid[:, 24:] = False  # (28, 28) lies outside the field
    out = SuperRetinaOutput(heat, torch.nn.functional.normalize(torch.rand(1, 8, 4, 4), dim=1))
    k = detect(out, valid, cfg)
    assert k.xy.tolist() == [[20.0, 4.0], [4.0, 20.0]] and k.desc.shape == (2, 8)
    assert torch.allclose(k.score, torch.tensor([0.9, 0.7]))


def test_descriptors_are_sampled_at_the_cell_centres_exactly():
    desc = torch.nn.functional.normalize(torch.rand(1, 8, 3, 3), dim=1)
    d = sample_descriptors(desc, torch.tensor([[[8 + 3.5, 16 + 3.5]]]))
    assert torch.allclose(d[0, 0], desc[0, :, 2, 1], atol=1e-6)


def test_mutual_nearest_applies_the_ratio_test():
    d0 = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [0, 1.0]]), dim=1)
    d1 = torch.nn.functional.normalize(torch.tensor([[1.0, 0.02], [0.05, 1], [0.06, 1]]), dim=1)
    k = lambda d: Keypoints(torch.zeros(len(d), 2), d, torch.ones(len(d)))  # noqa: E731
    loose = mutual_nearest(k(d0), k(d1), 0.1, ratio=1.0)
    assert sorted(zip(loose.i.tolist(), loose.j.tolist())) == [(0, 0), (1, 1)]
    strict = mutual_nearest(k(d0), k(d1), 0.1, ratio=0.8)
    assert list(zip(strict.i.tolist(), strict.j.tolist())) == [(0, 0)]  # (1, 1) is ambiguous
    assert torch.all((strict.conf >= 0) & (strict.conf <= 1))


def test_the_matcher_follows_the_protocol_in_full_resolution(tiny_weights):
    matcher = get_matcher("superretina", weights=tiny_weights)
    assert isinstance(matcher, SuperRetinaMatcher) and isinstance(matcher, Matcher)
    assert matcher.name == "superretina" and matcher.working_side == 96
    assert "superretina" in available_matchers()
    fixed = prepare(fundus_like(300, 1), "cf", matcher.working_side)
    moving = prepare(fundus_like(240, 2), "fa", matcher.working_side)
    m = matcher.match(fixed, moving)
    assert isinstance(m, Matches) and len(m) > 0
    assert np.all((m.confidence >= 0) & (m.confidence <= 1))
    assert m.kpts_fixed.max() < 300 and m.kpts_moving.max() < 240
    assert m.kpts_fixed.max() > 110  # beyond the ~100 px working image: mapped to full res
    again = matcher.match(fixed, moving)  # the fixed image's keypoints are reused
    np.testing.assert_array_equal(again.kpts_fixed, m.kpts_fixed)
    shown = matcher.detections(fixed, 0)
    assert shown.shape[1] == 2 and len(shown) >= len(m) and shown.max() < 300


def test_weights_round_trip_and_malformed_files_are_refused(tiny_weights, tmp_path):
    model = load_model(tiny_weights)
    assert read_config(tiny_weights) == TINY
    again = load_model(save_weights(model, tmp_path / "again.safetensors", card={"x": 1}))
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x).heatmap, again(x).heatmap)
    assert json.loads((tmp_path / "again.card.json").read_text())["architecture"]["streams"] == 1
    with pytest.raises(ModelLoadError, match="does not exist"):
        SuperRetinaMatcher.from_weights(tmp_path / "absent.safetensors")
    fast = save_fast(FastNet(), tmp_path / "fast.safetensors")
    with pytest.raises(ModelLoadError, match="no RetReg superretina matcher config"):
        get_matcher("superretina", weights=fast)
    wrong = tmp_path / "wrong.safetensors"
    save_file(load_file(str(tiny_weights)), str(wrong),
              metadata={CONFIG_KEY: json.dumps(SuperRetinaConfig().to_dict())})
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_model(wrong)
