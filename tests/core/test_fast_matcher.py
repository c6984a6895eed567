"""The fast structural matcher: network shapes and size, the Matcher protocol in full-resolution
coordinates, weights that round-trip and refuse malformed files, and the shipped weights
recovering a known synthetic transform through the pipeline."""
import cv2
import numpy as np
import pytest
import torch

from retreg.core.errors import ModelLoadError
from retreg.core.matchers import FAST_WEIGHTS, Matcher, available_matchers, get_matcher
from retreg.core.matchers.fast import FastConfig, FastMatcher, FastNet
from retreg.core.matchers.fast.model import detect, keypoint_positions
from retreg.core.matchers.keypoints import Keypoints, mutual_nearest
from retreg.core.matchers.fast.weights import load_model, read_config, save_weights
from retreg.core.matchers.loftr import LoftrConfig, RetRegLoFTR
from retreg.core.matchers.loftr.weights import save_weights as save_loftr
from retreg.core.metrics import mean_corner_error
from retreg.core.modality import prepare
from retreg.core.types import Matches
from tests.helpers import fundus_like

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = FastConfig(working_side=96, widths=(8, 16, 32), descriptor_dim=16, top_k=64)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    return save_weights(FastNet(TINY).eval(), tmp_path_factory.mktemp("w") / "tiny.safetensors")


def test_the_network_gives_one_eighth_maps_and_is_xfeat_sized():
    net = FastNet().eval()
    assert 200_000 < sum(p.numel() for p in net.parameters()) < 800_000
    with torch.no_grad():
        out = net(torch.rand(2, 1, 96, 128))
    assert out.desc.shape == (2, 64, 12, 16)
    assert torch.allclose(out.desc.norm(dim=1), torch.ones(2, 12, 16), atol=1e-5)
    assert out.reliability.shape == (2, 1, 12, 16) and out.keypoint.shape == (2, 65, 12, 16)
    assert out.mid.shape == (2, 48, 12, 16)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.rand(1, 1, 90, 96))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.rand(1, 2, 96, 96))


def test_a_confident_junction_moves_the_keypoint_off_the_cell_centre():
    logits = torch.full((1, 65, 1, 2), -10.0)
    logits[0, 64, 0, 0] = 10.0  # cell 0: no junction -> centre
    logits[0, 8 * 2 + 5, 0, 1] = 10.0  # cell 1: junction at row 2, column 5 of the cell
    xy = keypoint_positions(logits, 0.5)[0, 0]
    assert xy[0].tolist() == [3.5, 3.5] and xy[1].tolist() == [8 + 5, 2]


def test_mutual_nearest_keeps_only_mutual_pairs_with_unit_interval_confidence():
    d0 = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1]]), dim=1)
    d1 = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05], [0.05, 1]]), dim=1)
    k = lambda d: Keypoints(torch.zeros(len(d), 2), d, torch.ones(len(d)))  # noqa: E731
    m = mutual_nearest(k(d0), k(d1), FastConfig().temperature)
    assert sorted(zip(m.i.tolist(), m.j.tolist())) == [(0, 0), (2, 1)]
    assert torch.all((m.conf >= 0) & (m.conf <= 1))


def test_detect_takes_top_k_keypoints_inside_the_field_only():
    net = FastNet(TINY).eval()
    valid = torch.zeros(1, 96, 96, dtype=torch.bool)
    valid[:, :48] = True  # upper half
    with torch.no_grad():
        k = detect(net(torch.rand(1, 1, 96, 96)), valid, TINY)
    assert len(k.xy) == min(TINY.top_k, 6 * 12) and k.xy[:, 1].max() < 48
    assert k.desc.shape == (len(k.xy), 16)


def test_the_matcher_follows_the_protocol_in_full_resolution(tiny_weights):
    matcher = FastMatcher.from_weights(tiny_weights)
    assert isinstance(matcher, Matcher)
    assert matcher.name == "fast" and matcher.working_side == 96
    fixed = prepare(fundus_like(300, 1), "cf", matcher.working_side)
    moving = prepare(fundus_like(240, 2), "fa", matcher.working_side)
    m = matcher.match(fixed, moving)
    assert isinstance(m, Matches) and len(m) > 0
    assert np.all((m.confidence >= 0) & (m.confidence <= 1))
    assert m.kpts_fixed.max() < 300 and m.kpts_moving.max() < 240
    assert m.kpts_fixed.max() > 110  # beyond the ~100 px working image: mapped to full res
    again = matcher.match(fixed, moving)  # the fixed image's keypoints are reused
    np.testing.assert_array_equal(again.kpts_fixed, m.kpts_fixed)


def test_weights_round_trip_with_their_config(tiny_weights, tmp_path):
    model = load_model(tiny_weights)
    assert read_config(tiny_weights) == TINY
    again = load_model(save_weights(model, tmp_path / "again.safetensors", card={"x": 1}))
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x).desc, again(x).desc)
    assert (tmp_path / "again.card.json").is_file()


def test_malformed_weights_are_refused_with_the_reason(tmp_path, tiny_weights):
    with pytest.raises(ModelLoadError, match="does not exist"):
        FastMatcher.from_weights(tmp_path / "absent.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a tensor file at all")
    with pytest.raises(ModelLoadError, match="not a safetensors file"):
        load_model(junk)
    loftr = save_loftr(RetRegLoFTR(LoftrConfig(initial_dim=8, block_dims=(8, 16, 32), nhead=2,
                                               n_layers=1)), tmp_path / "loftr.safetensors")
    with pytest.raises(ModelLoadError, match="no RetReg fast matcher config"):
        get_matcher("fast", weights=loftr)
    # the right header with tensors of another architecture
    from safetensors.torch import load_file, save_file
    wrong = tmp_path / "wrong.safetensors"
    from retreg.core.matchers.fast.weights import CONFIG_KEY
    import json
    save_file(load_file(str(tiny_weights)), str(wrong),
              metadata={CONFIG_KEY: json.dumps(FastConfig().to_dict())})
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_model(wrong)
    bad_cfg = tmp_path / "badcfg.safetensors"
    save_file(load_file(str(tiny_weights)), str(bad_cfg),
              metadata={CONFIG_KEY: json.dumps({**TINY.to_dict(), "colour": 3})})
    with pytest.raises(ModelLoadError, match="unknown fast matcher config keys"):
        load_model(bad_cfg)


def test_the_registry_offers_fast_and_builds_it_from_given_weights(tiny_weights):
    assert "fast" in available_matchers()
    assert isinstance(get_matcher("fast", weights=tiny_weights), FastMatcher)


@pytest.mark.skipif(not FAST_WEIGHTS.is_file(), reason="fast matcher weights not exported yet")
def test_the_shipped_fast_matcher_recovers_a_known_synthetic_transform():
    from retreg.core.pipeline import register
    from retreg.training.synth import render_case

    case = render_case(10_200_040, size=512)  # unseen: training seeds 0-199, validation 10,000,000+
    T = np.vstack([cv2.getRotationMatrix2D((255.5, 255.5), 40.0, 1.05), [0, 0, 1]])
    T[:2, 2] += (12, -8)
    warped = cv2.warpAffine(case["fa"], T[:2], (512, 512))
    result = register(case["cf"], warped, "cffa", matcher=get_matcher("fast"))
    assert result.ok, result.reason
    assert mean_corner_error(result.matrix, np.linalg.inv(T), 512, 512) < 5.0


def test_mutual_nearest_confidence_is_the_dual_softmax_probability():
    torch.manual_seed(3)
    k = lambda n: Keypoints(torch.zeros(n, 2), torch.nn.functional.normalize(  # noqa: E731
        torch.randn(n, 16), dim=1), torch.ones(n))
    k0, k1, cfg = k(40), k(30), FastConfig(temperature=0.05)
    m = mutual_nearest(k0, k1, cfg.temperature)
    s = k0.desc @ k1.desc.T / cfg.temperature
    dual = s.softmax(1) * s.softmax(0)
    assert len(m.i) > 0
    assert torch.allclose(m.conf, dual[m.i, m.j], rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="temperature"):
        FastConfig(temperature=0.01)


def test_the_matcher_finds_the_keypoints_of_the_plain_network(tiny_weights):
    matcher = FastMatcher.from_weights(tiny_weights)
    net = load_model(tiny_weights)
    x = torch.rand(1, 1, 96, 96)
    with torch.no_grad():
        expected = detect(net(x), None, TINY)
    got = matcher.detect(x, None)
    assert torch.equal(got.xy, expected.xy)
    assert torch.allclose(got.desc, expected.desc, atol=1e-5)
