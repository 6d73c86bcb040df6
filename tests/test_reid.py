"""The learned re-identifier (``reid``): Siamese 3D verification network, seed 003 in 3D."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

from conftest import make_blob_volume
from inversion_audit.errors import CheckpointError, ConfigError
from inversion_audit.matching.ranking import ScoreMatrix, rank_of_true_match
from inversion_audit.matching.reid import (
    ReidConfig,
    build_reid_network,
    cross_fit_reconstructions,
    reid_scores,
    train_reid,
)
from inversion_audit.matching.reid_io import load_reid, save_reid

S = 24


def _blurred(img: np.ndarray, seed: int) -> np.ndarray:
    """A stand-in reconstruction: blurred, noisy copy of the original."""
    r = np.random.default_rng(seed)
    noisy = gaussian_filter(img, 1.5) + r.normal(0, 0.05, img.shape)
    return np.clip(noisy, 0, 1).astype(np.float32)


@pytest.fixture
def one_thread():
    """Training on one thread is several times faster on a shared, loaded CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_reid_beats_chance_on_unseen_subjects(one_thread):
    train = [make_blob_volume((S,) * 3, seed=s)[0] for s in range(10)]
    test = [make_blob_volume((S,) * 3, seed=100 + s)[0] for s in range(6)]
    cfg = ReidConfig(
        epochs=20, lr=2e-3, base_filters=4, embed_dim=32, input_size=S, negatives_per_positive=2
    )
    net, history = train_reid(
        [_blurred(x, 1000 + i) for i, x in enumerate(train)], train, cfg, device="cpu"
    )
    assert history["epoch_loss"][-1] < history["epoch_loss"][0]
    ids = [f"s{i}" for i in range(6)]
    recon = [_blurred(x, 2000 + i) for i, x in enumerate(test)]
    mat = ScoreMatrix("reid", reid_scores(net, recon, test, S, "cpu"), ids, ids, True)
    ranks = rank_of_true_match(mat)
    # chance finds 1 of 6 at rank 1 and a mean rank of 3.5 (here: 3 of 6, mean rank 1.7)
    assert (ranks == 1).sum() >= 2 and ranks.mean() < 2.5
    auc = roc_auc_score(np.eye(6, dtype=bool).ravel(), mat.values.ravel())
    assert auc > 0.75


def test_reid_scores_follow_the_siamese_formula():
    torch.manual_seed(0)
    net = build_reid_network(2, 8).eval()
    a = [np.random.default_rng(i).random((16, 16, 16), dtype=np.float32) for i in range(3)]
    b = [np.random.default_rng(9 + i).random((12, 12, 12), dtype=np.float32) for i in range(2)]
    got = reid_scores(net, a, b, input_size=16, device="cpu")
    with torch.no_grad():
        ea = net["encoder"](torch.from_numpy(np.stack(a))[:, None])
        bb = torch.nn.functional.interpolate(
            torch.from_numpy(np.stack(b))[:, None], size=(16, 16, 16), mode="trilinear"
        )
        eb = net["encoder"](bb)
        want = net["head"]((ea[:, None] - eb[None]).abs()).squeeze(-1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # symmetric in its two inputs (a shared encoder and |a - b|)
    np.testing.assert_allclose(reid_scores(net, b, a, 16, "cpu"), got.T, rtol=1e-4, atol=1e-5)


def test_save_load_roundtrip_and_refusals(tmp_path):
    torch.manual_seed(0)
    net = build_reid_network(2, 8)
    weights, sidecar = save_reid(tmp_path / "reid", net, {"n_train": 4})
    loaded = load_reid(tmp_path / "reid")
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert loaded.metadata["n_train"] == 4
    with pytest.raises(ValueError, match="subject ids"):
        save_reid(tmp_path / "bad", net, {"train_ids": ["a"]})
    meta = json.loads(sidecar.read_text())
    meta["arch_args"]["base_filters"] = 10**9
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="arch_args"):
        load_reid(weights)
    meta["arch_args"]["base_filters"] = 2
    sidecar.write_text(json.dumps(meta))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CheckpointError, match="hash differs"):
        load_reid(weights)


def test_config_checks():
    assert ReidConfig.from_dict({"epochs": 3}).epochs == 3
    with pytest.raises(ConfigError, match="reid.cross_fit_folds"):
        ReidConfig(cross_fit_folds=1)
    with pytest.raises(ConfigError, match="unknown reid key"):
        ReidConfig.from_dict({"epoch": 3})


def test_cross_fit_reconstructs_each_image_with_a_decoder_that_never_saw_it(
    one_thread, monkeypatch
):
    import inversion_audit.attack.inversion as inv
    from inversion_audit.attack import InversionConfig
    from inversion_audit.models import build_target_network

    torch.manual_seed(0)
    target = build_target_network("unet", n_classes=2, depth=2, base_filters=4).eval()
    images = [make_blob_volume((16,) * 3, seed=s)[0] for s in range(4)]
    ids = ["a", "b", "c", "d"]
    seen: list[list[str]] = []
    real = inv.train_inversion

    def recording(target_model, imgs, config, device, progress, train_ids):
        seen.append(list(train_ids))
        return real(target_model, imgs, config, device, progress, train_ids)

    monkeypatch.setattr(inv, "train_inversion", recording)
    out = cross_fit_reconstructions(
        target, images, InversionConfig(epochs=1, batch_size=2), folds=2, device="cpu", ids=ids
    )
    # two decoders, each trained on one half: every image is reconstructed by the other one
    assert [len(s) for s in seen] == [2, 2] and sorted(seen[0] + seen[1]) == ids
    assert len(out) == 4 and all(o.shape == (16, 16, 16) for o in out)
    assert all(np.isfinite(o).all() and 0 <= o.min() and o.max() <= 1 for o in out)
    with pytest.raises(ValueError, match="cross-fitting"):
        cross_fit_reconstructions(target, images[:2], InversionConfig(), folds=2, device="cpu")


def test_reid_is_a_pipeline_metric_ranked_higher_is_better():
    from inversion_audit.data.preprocess import Preprocessed
    from inversion_audit.matching import METRIC_DIRECTIONS
    from inversion_audit.matching.pipeline import MatchOptions, score_reconstructions

    torch.manual_seed(0)
    net = build_reid_network(2, 8).eval()
    imgs = [make_blob_volume((16,) * 3, seed=s)[0] for s in range(3)]
    eye = np.eye(4)
    cands = {
        f"s{i}": Preprocessed(f"s{i}", im, eye, im > 0.1, None, eye, im.shape)
        for i, im in enumerate(imgs)
    }
    recs = {f"s{i}": _blurred(im, i) for i, im in enumerate(imgs)}
    opts = MatchOptions(metrics=("ssim", "reid"))
    out = score_reconstructions(
        recs,
        cands,
        opts,
        device="cpu",
        reid_fn=lambda r, c, brains: reid_scores(net, list(r), list(c), 16, "cpu"),
    )
    got = {(a, b): v for a, b, m, v in out.rows if m == "reid"}
    want = reid_scores(net, list(recs.values()), imgs, 16, "cpu")
    for i in range(3):
        for j in range(3):
            assert got[(f"s{i}", f"s{j}")] == pytest.approx(want[i, j], rel=1e-5)
    assert METRIC_DIRECTIONS["reid"] is True
    with pytest.raises(ConfigError, match="'reid' needs a trained re-identifier"):
        score_reconstructions(recs, cands, opts, device="cpu")


@pytest.mark.gpu
def test_reid_trains_and_scores_on_cuda_like_on_cpu():
    train = [make_blob_volume((16,) * 3, seed=s)[0] for s in range(4)]
    recon = [_blurred(x, i) for i, x in enumerate(train)]
    cfg = ReidConfig(epochs=2, base_filters=2, embed_dim=8, input_size=16, batch_size=4)
    net, history = train_reid(recon, train, cfg, device="cuda")
    assert history["device"].startswith("cuda") and np.isfinite(history["epoch_loss"]).all()
    on_gpu = reid_scores(net, recon, train, 16, "cuda")  # float16 autocast on CUDA
    on_cpu = reid_scores(net, recon, train, 16, "cpu")
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=2e-2, atol=2e-2)
