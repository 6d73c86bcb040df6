"""The re-identifier on brain patches (``[reid] mode = "patches"``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

from conftest import make_blob_volume
from inversion_audit.errors import ConfigError
from inversion_audit.matching.reid import ReidConfig, build_reid_network
from inversion_audit.matching.reid_patches import (
    inside_fraction,
    patch_corners,
    patch_reid_scores,
    train_patch_reid,
)


def _blurred(img: np.ndarray, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    return np.clip(gaussian_filter(img, 1.2) + r.normal(0, 0.05, img.shape), 0, 1).astype(
        np.float32
    )


def test_corners_cover_the_volume_and_inside_fraction_matches_slicing():
    corners = patch_corners((20, 17, 9), 8, 5)
    # every corner keeps its patch inside, and the last patch of each axis reaches the edge
    assert (corners >= 0).all() and (corners + 8 <= [20, 17, 9]).all()
    assert corners.max(0).tolist() == [12, 9, 1]
    assert len({tuple(c) for c in corners}) == len(corners)
    masks = np.random.default_rng(0).random((3, 20, 17, 9)) < 0.4
    got = inside_fraction(masks, corners, 8)
    for m in range(3):
        for k, (x, y, z) in enumerate(corners):
            assert got[m, k] == pytest.approx(masks[m, x : x + 8, y : y + 8, z : z + 8].mean())
    with pytest.raises(ValueError, match="exceeds"):
        patch_corners((20, 7, 9), 8, 5)


def test_scores_are_the_mean_logit_over_the_candidates_brain_patches():
    torch.manual_seed(0)
    net = build_reid_network(2, 8).eval()
    cfg = ReidConfig(patch_size=16, patch_stride=16, min_inside=0.5)
    rng = np.random.default_rng(1)
    R = rng.random((2, 32, 32, 32), dtype=np.float32)
    C = rng.random((3, 32, 32, 32), dtype=np.float32)
    brains = np.zeros((3, 32, 32, 32), bool)
    brains[0] = True  # all 8 patches
    brains[1, :16, :16, :] = True  # the 2 patches at x = y = 0
    got = patch_reid_scores(net, R, C, brains, cfg, "cpu")  # candidate 2 has no brain
    assert np.isnan(got[:, 2]).all()

    def logit(r, c, x, y, z):
        a = torch.from_numpy(r[None, None, x : x + 16, y : y + 16, z : z + 16].copy())
        b = torch.from_numpy(c[None, None, x : x + 16, y : y + 16, z : z + 16].copy())
        with torch.no_grad():
            return float(net["head"]((net["encoder"](a) - net["encoder"](b)).abs()))

    all8 = [(x, y, z) for x in (0, 16) for y in (0, 16) for z in (0, 16)]
    for i in range(2):
        want0 = np.mean([logit(R[i], C[0], *p) for p in all8])
        want1 = np.mean([logit(R[i], C[1], 0, 0, z) for z in (0, 16)])
        assert got[i, 0] == pytest.approx(want0, rel=1e-4, abs=1e-5)
        assert got[i, 1] == pytest.approx(want1, rel=1e-4, abs=1e-5)


def test_config_checks_the_mode_and_patch_settings():
    assert ReidConfig.from_dict({"mode": "volume"}).mode == "volume"
    assert ReidConfig().mode == "patches"
    with pytest.raises(ConfigError, match="reid.mode"):
        ReidConfig(mode="slices")
    with pytest.raises(ConfigError, match="reid.min_inside"):
        ReidConfig(min_inside=0)
    with pytest.raises(ConfigError, match="reid.patch_size"):
        ReidConfig(patch_size=8)


@pytest.mark.slow
def test_patch_reid_beats_chance_on_unseen_subjects():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = [make_blob_volume(seed=s) for s in range(8)]
        test = [make_blob_volume(seed=100 + s) for s in range(6)]
        cfg = ReidConfig(
            epochs=8,
            lr=2e-3,
            batch_size=16,
            base_filters=4,
            embed_dim=16,
            patch_size=16,
            patch_stride=8,
            patches_per_subject=8,
            negatives_per_positive=1,
        )
        net, history = train_patch_reid(
            [_blurred(x, 1000 + i) for i, (x, _) in enumerate(train)],
            [x for x, _ in train],
            [lab > 0 for _, lab in train],
            cfg,
            device="cpu",
        )
    finally:
        torch.set_num_threads(before)
    assert history["epoch_loss"][-1] < history["epoch_loss"][0]
    R = np.stack([_blurred(x, 2000 + i) for i, (x, _) in enumerate(test)])
    C = np.stack([x for x, _ in test])
    S = patch_reid_scores(net, R, C, np.stack([lab > 0 for _, lab in test]), cfg, "cpu")
    ranks = 1 + (S > np.diag(S)[:, None]).sum(1)
    # chance: 1 of 6 at rank 1, mean rank 3.5, AUC 0.5
    assert (ranks == 1).sum() >= 3 and ranks.mean() < 2.5
    assert roc_auc_score(np.eye(6, dtype=bool).ravel(), S.ravel()) > 0.75


@pytest.mark.gpu
def test_patch_reid_trains_and_scores_on_cuda_like_on_cpu():
    vols = [make_blob_volume(seed=s) for s in range(3)]
    images = [x for x, _ in vols]
    brains = [lab > 0 for _, lab in vols]
    recon = [_blurred(x, i) for i, x in enumerate(images)]
    cfg = ReidConfig(
        epochs=1, base_filters=2, embed_dim=8, patch_size=16, patch_stride=8, batch_size=4
    )
    net, history = train_patch_reid(recon, images, brains, cfg, device="cuda")
    assert history["device"].startswith("cuda") and np.isfinite(history["epoch_loss"]).all()
    args = (np.stack(recon), np.stack(images), np.stack(brains), cfg)
    on_gpu = patch_reid_scores(net, *args, device="cuda")  # float16 autocast on CUDA
    on_cpu = patch_reid_scores(net, *args, device="cpu")
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=2e-2, atol=2e-2)
