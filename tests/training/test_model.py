"""The LoFTR-style network, its losses, the curriculum and the weights format, on fabricated
tensors (no data set needed)."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from retreg.core.errors import ModelLoadError
from retreg.core.matchers import get_matcher
from retreg.core.matchers.loftr.coarse import CoarseMatching, mutual_nearest
from retreg.core.matchers.loftr.fine import sample_windows
from retreg.core.geometry import cell_centres
from retreg.core.matchers.loftr.model import COARSE_STRIDE, LoftrConfig, RetRegLoFTR, coarse_cell_centres
from retreg.core.matchers.loftr.weights import (card_path, load_all, load_backbone, load_model,
                                                read_config, save_weights)
from retreg.training.api import build_train_dataset
from retreg.training.augment import AugmentConfig
from retreg.training.callbacks import curriculum_values
from retreg.training.config import CurriculumConfig, TrainConfig
from retreg.training.losses import coarse_loss, fine_targets, loftr_loss, unmatched_loss, vessel_weight
from retreg.training.supervision import coarse_fine_gt, unmatched_cells

TINY = LoftrConfig(channels=("vessels",), initial_dim=8, block_dims=(8, 16, 32), nhead=2,
                   n_layers=1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _vessel_like(size: int, seed: int = 0) -> np.ndarray:
    """A random smooth ridge pattern: enough texture to match on."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.float32)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(12):
        a, b, c = rng.normal(size=3)
        d = np.abs(a * (xx - size / 2) + b * (yy - size / 2) + c * size / 4) / math.hypot(a, b)
        img += np.exp(-(d / 1.5) ** 2)
    return np.clip(img, 0, 1)


def _shift_pair(size: int = 64, dx: int = 8, dy: int = 8) -> dict:
    """A batch of one pair where image1 is image0 shifted by (dx, dy), with LoFTR labels."""
    img0 = _vessel_like(size + 2 * max(dx, dy))
    crop0 = img0[:size, :size]
    crop1 = np.roll(np.roll(img0, dy, 0), dx, 1)[:size, :size]
    T = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]])
    mask0 = np.ones((size, size), bool)
    mask1 = np.zeros((size, size), bool)
    mask1[dy:, dx:] = True
    gt_j, gt_xy1 = coarse_fine_gt(T, mask0, mask1)
    un0, un1 = unmatched_cells(T, mask0, mask1)
    return {"image0": torch.from_numpy(crop0)[None, None], "image1": torch.from_numpy(crop1)[None, None],
            "vessel0": torch.from_numpy(crop0 > 0.5).float()[None],
            "gt_j": torch.from_numpy(gt_j)[None], "gt_xy1": torch.from_numpy(gt_xy1)[None],
            "unmatched0": torch.from_numpy(un0)[None], "unmatched1": torch.from_numpy(un1)[None]}


def test_forward_gives_log_dual_softmax_over_all_cell_pairs():
    model = RetRegLoFTR(TINY)
    out = model.forward_coarse(torch.randn(2, 1, 64, 48), torch.randn(2, 1, 32, 64))
    assert out.log_conf.shape == (2, 8 * 6, 4 * 8)
    conf = out.log_conf.exp()
    # product of a row- and a column-softmax: every row and column sums to at most 1
    assert torch.all(conf.sum(2) <= 1 + 1e-5) and torch.all(conf.sum(1) <= 1 + 1e-5)
    assert out.fine0.shape[2:] == (32, 24)


def test_forward_rejects_wrong_channels_and_sizes():
    model = RetRegLoFTR(TINY)
    with pytest.raises(ValueError, match="image0 must be"):
        model.forward_coarse(torch.randn(1, 2, 64, 64), torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="multiples of 8"):
        model.forward_coarse(torch.randn(1, 1, 60, 64), torch.randn(1, 1, 64, 64))


def test_vessel_prior_raises_scores_of_vessel_cell_pairs_only():
    cm = CoarseMatching(temperature=0.1)
    tok0, tok1 = torch.randn(1, 4, 8), torch.randn(1, 4, 8)
    v0 = torch.tensor([[1.0, 0, 0, 0]])
    v1 = torch.tensor([[0, 1.0, 0, 0]])
    plain = cm(tok0, tok1, v0, v1)
    cm.vessel_soft_lambda = 2.0
    biased = cm(tok0, tok1, v0, v1)
    gain = (biased - plain)[0]
    assert gain[0, 1] == gain.max() and gain[0, 1] > 0
    assert torch.allclose(plain, cm(tok0, tok1))  # no masks given: no prior


def test_mutual_nearest_keeps_only_mutual_confident_pairs_inside_the_fov():
    conf = torch.full((1, 3, 3), 0.01)
    conf[0, 0, 1] = 0.9  # mutual
    conf[0, 1, 1] = 0.5  # row 1's best, but column 1 prefers row 0
    conf[0, 2, 2] = 0.6  # mutual, but its image0 cell is outside the FOV below
    m = mutual_nearest(conf.log(), 0.1, valid0=torch.tensor([[True, True, False]]))
    assert list(zip(m.i.tolist(), m.j.tolist())) == [(0, 1)]
    assert m.conf.tolist() == pytest.approx([0.9])


def test_coarse_matches_stand_at_the_geometry_cell_centres():
    ours = coarse_cell_centres((4, 5), torch.device("cpu"))
    assert ours.dtype == torch.float32
    np.testing.assert_array_equal(ours.numpy(), cell_centres(4, 5, COARSE_STRIDE))


def test_window_sampling_reads_features_at_exact_pixel_positions():
    # feature value = x pixel coordinate of the feature cell centre (cell k spans pixels 2k, 2k+1)
    hf, wf = 8, 8
    xs = torch.arange(wf).float() * 2 + 0.5
    fine = xs.view(1, 1, 1, wf).expand(1, 1, hf, wf).contiguous()
    centres = torch.tensor([[7.0, 7.0]])
    win = sample_windows(fine, torch.tensor([0]), centres, 5)
    assert win.shape == (1, 25, 1)
    assert torch.allclose(win[0, :5, 0], torch.tensor([3.0, 5.0, 7.0, 9.0, 11.0]))


def test_fine_stage_moves_points_within_its_window():
    model = RetRegLoFTR(TINY)
    out = model.forward_coarse(torch.randn(1, 1, 64, 64), torch.randn(1, 1, 64, 64))
    b, i, j = torch.zeros(5, dtype=torch.long), torch.arange(5), torch.arange(5) + 3
    fine = model.refine(out, b, i, j)
    start = coarse_cell_centres((8, 8), torch.device("cpu"))[j]
    assert torch.allclose(fine.kpts1, start + fine.expec[:, :2] * 4, atol=1e-5)
    assert torch.all((fine.kpts1 - start).abs() <= 4 + 1e-5)


def test_coarse_loss_is_weighted_nll_at_ground_truth():
    log_conf = torch.log(torch.tensor([[[0.5, 0.25], [0.125, 0.5]]]))
    gt = torch.tensor([[0, -1]])
    assert coarse_loss(log_conf, gt, torch.ones(1, 2)).item() == pytest.approx(math.log(2))
    none = coarse_loss(log_conf.requires_grad_(), torch.tensor([[-1, -1]]), torch.ones(1, 2))
    assert none.item() == 0.0 and none.requires_grad


def test_vessel_weight_is_one_plus_mask_times_scaler_minus_one():
    vessel = torch.zeros(1, 16, 16)
    vessel[0, :8, :8] = 1.0
    w = vessel_weight(vessel, 10.0, 4, 1, torch.device("cpu"))
    assert w.tolist() == [[10.0, 1.0, 1.0, 1.0]]
    assert torch.all(vessel_weight(vessel, 1.0, 4, 1, torch.device("cpu")) == 1.0)


def test_fine_targets_are_offsets_from_the_matched_cell_centre():
    model = RetRegLoFTR(TINY)
    out = model.forward_coarse(torch.randn(1, 1, 64, 64), torch.randn(1, 1, 64, 64))
    gt_xy1 = torch.zeros(1, 64, 2)
    gt_xy1[0, 0] = torch.tensor([3.5 + 2.0, 3.5 - 4.0])  # cell 0 centre + (2, -4)
    gt_xy1[0, 1] = torch.tensor([3.5 + 6.0, 3.5])
    target, inside = fine_targets(out, gt_xy1, torch.tensor([0, 0]), torch.tensor([0, 1]),
                                  torch.tensor([0, 0]), 5)
    assert target[0].tolist() == pytest.approx([0.5, -1.0]) and not inside[0]
    assert target[1].tolist() == pytest.approx([1.5, 0.0]) and not inside[1]


def test_a_few_optimisation_steps_reduce_the_loss_on_a_shifted_pair():
    model = RetRegLoFTR(TINY)
    batch = _shift_pair()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    losses = []
    for _ in range(25):
        out = model.forward_coarse(batch["image0"], batch["image1"])
        terms = loftr_loss(model, out, batch["gt_j"], batch["gt_xy1"], batch["vessel0"], 1.0)
        opt.zero_grad()
        terms.total.backward()
        opt.step()
        losses.append(terms.total.item())
    assert terms.n_gt > 20 and terms.n_fine > 0
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3])


@pytest.mark.parametrize("epoch,expected", [(0, (2.0, 10.0)), (9, (2.0, 10.0)),
                                            (10, (2.0, 10.0)), (14, (1.2, 6.4)),
                                            (20, (0.0, 1.0)), (90, (0.0, 1.0))])
def test_curriculum_teaches_then_weans_linearly_then_lets_go(epoch, expected):
    cfg = CurriculumConfig(lambda_start=2.0, scaler_start=10.0, teach_until=10, wean_until=20)
    assert curriculum_values(epoch, cfg) == pytest.approx(expected)


def test_a_curriculum_that_starts_without_priors_never_adds_them():
    cfg = CurriculumConfig(lambda_start=0.0, scaler_start=1.0, teach_until=10, wean_until=20)
    assert all(curriculum_values(e, cfg) == (0.0, 1.0) for e in (0, 15, 60))


def test_weights_round_trip_through_safetensors_with_config_and_card(tmp_path):
    model = RetRegLoFTR(TINY).eval()
    path = save_weights(model, tmp_path / "m.safetensors", {"name": "m"})
    assert read_config(path) == TINY
    loaded = load_model(path)
    x0, x1 = torch.randn(1, 1, 64, 64), torch.randn(1, 1, 64, 64)
    assert torch.allclose(model.forward_coarse(x0, x1).log_conf,
                          loaded.forward_coarse(x0, x1).log_conf)
    card = card_path(path).read_text()
    assert '"architecture"' in card and '"name": "m"' in card


def test_hybrid_init_copies_backbone_only(tmp_path):
    donor = RetRegLoFTR(TINY)
    path = save_weights(donor, tmp_path / "donor.safetensors")
    model = RetRegLoFTR(TINY)
    n = load_backbone(model, path)
    assert n == sum(1 for k in donor.state_dict() if k.startswith("backbone."))
    for k, v in model.state_dict().items():
        same = torch.equal(v, donor.state_dict()[k])
        if k.startswith("backbone."):
            assert same
        elif k.endswith("weight") and v.ndim > 1:
            assert not same


def test_loading_rejects_missing_foreign_and_mismatched_files(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="not a safetensors file"):
        load_model(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ModelLoadError, match="no RetReg LoFTR config"):
        load_model(tmp_path / "foreign.safetensors")


def test_config_rejects_unknown_keys_and_modes():
    with pytest.raises(ValueError, match="unknown keys"):
        TrainConfig.from_dict({"data": {"sise": 256}})
    with pytest.raises(ValueError, match="modes"):
        TrainConfig.from_dict({"data": {"modes": ["cfxx"]}})
    with pytest.raises(ValueError, match="aug: unknown keys"):
        TrainConfig.from_dict({"data": {"aug": {"flip": 0.5}}})
    with pytest.raises(ValueError, match="exclude each other"):
        TrainConfig.from_dict({"init_weights": "a.safetensors", "init_backbone": "b.safetensors"})
    cfg = TrainConfig.from_dict({"model": {"channels": ["intensity", "vessels"]}})
    assert cfg.model.channels == ("intensity", "vessels")


def test_config_augmentation_overrides_reach_the_augment_config():
    cfg = TrainConfig.from_dict({"data": {"aug": {"hflip_p": 0.0, "scale_range": [0.9, 1.1]}}})
    aug = cfg.augment()
    assert aug.hflip_p == 0.0 and aug.scale_range == (0.9, 1.1)
    assert aug.rotation_deg == AugmentConfig().rotation_deg  # what was not overridden stays


def test_per_mode_augmentation_overrides_apply_to_their_mode_only():
    cfg = TrainConfig.from_dict({"data": {"modes": ["cffa", "cfocta"],
                              "aug": {"translate_frac": 0.3, "fixed_translate_frac": 0.2},
                              "aug_by_mode": {"cfocta": {"fixed_translate_frac": 0.0}}}})
    assert cfg.augment("cffa").fixed_translate_frac == 0.2
    assert cfg.augment("cfocta").fixed_translate_frac == 0.0
    assert cfg.augment("cfocta").translate_frac == 0.3  # the shared value stays
    with pytest.raises(ValueError, match="not one of data.modes"):
        TrainConfig.from_dict({"data": {"modes": ["cffa"], "aug_by_mode": {"cfocta": {}}}})
    with pytest.raises(ValueError, match="aug_by_mode.cffa: unknown keys"):
        TrainConfig.from_dict({"data": {"modes": ["cffa"],
                                        "aug_by_mode": {"cffa": {"flip": 1}}}})
    datasets = build_train_dataset(cfg).datasets  # nothing is rendered before an item is read
    assert [d.aug.fixed_translate_frac for d in datasets] == [0.2, 0.0]


def test_init_weights_loads_every_tensor_and_rejects_another_architecture(tmp_path):
    donor = RetRegLoFTR(TINY)
    path = save_weights(donor, tmp_path / "donor.safetensors")
    model = RetRegLoFTR(TINY)
    load_all(model, path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, donor.state_dict()[k]), k
    bigger = RetRegLoFTR(replace(TINY, block_dims=(8, 16, 48)))
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_all(bigger, path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_all(model, tmp_path / "missing.safetensors")


def test_unmatched_loss_grows_with_the_match_mass_of_cells_without_a_counterpart():
    log_conf = torch.full((1, 4, 4), math.log(0.01))
    un0 = torch.tensor([[True, False, False, False]])
    un1 = torch.zeros(1, 4, dtype=torch.bool)
    low = unmatched_loss(log_conf, un0, un1)
    log_conf[0, 0, 2] = math.log(0.6)  # row 0's mass rises from 0.04 to 0.63
    high = unmatched_loss(log_conf, un0, un1)
    assert low.item() == pytest.approx(-math.log(1 - 0.04), rel=1e-4)
    assert high.item() == pytest.approx(-math.log(1 - 0.63), rel=1e-4)
    # columns count for image1 cells
    col = unmatched_loss(log_conf, torch.zeros_like(un0),
                         torch.tensor([[False, False, True, False]]))
    assert col.item() == pytest.approx(-math.log(1 - 0.63), rel=1e-4)
    none = unmatched_loss(log_conf, torch.zeros_like(un0), un1)
    assert none.item() == 0.0


def test_loftr_loss_adds_the_unmatched_term_only_with_labels_and_a_weight():
    model = RetRegLoFTR(TINY)
    batch = _shift_pair(dx=24, dy=16)
    out = model.forward_coarse(batch["image0"], batch["image1"])
    un = (batch["unmatched0"], batch["unmatched1"])
    assert batch["unmatched0"].any()
    plain = loftr_loss(model, out, batch["gt_j"], batch["gt_xy1"], batch["vessel0"], 1.0)
    off = loftr_loss(model, out, batch["gt_j"], batch["gt_xy1"], batch["vessel0"], 1.0,
                     unmatched=un, unmatched_weight=0.0)
    on = loftr_loss(model, out, batch["gt_j"], batch["gt_xy1"], batch["vessel0"], 1.0,
                    unmatched=un, unmatched_weight=2.0)
    expected = unmatched_loss(out.log_conf, *un)
    assert plain.unmatched.item() == 0.0 and off.total.item() == pytest.approx(plain.total.item())
    assert on.unmatched.item() == pytest.approx(expected.item())
    assert on.total.item() == pytest.approx(plain.total.item() + 2.0 * expected.item(), rel=1e-5)


class _Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_renamed_safetensors_is_refused_and_never_executed(tmp_path):
    import pickle

    marker = tmp_path / "executed"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"state": _Payload(marker)}))
    with pytest.raises(ModelLoadError, match="not a safetensors file"):
        load_model(path)
    with pytest.raises(ModelLoadError):
        get_matcher("loftr", weights=path)
    assert not marker.exists()
