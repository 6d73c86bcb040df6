"""One scorer: the re-identifier is a scoring function of the one pipeline call (one SSIM
matrix), and ``match --metrics ...,reid --reid CKPT`` scores with a trained one."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from conftest import make_blob_volume
from inversion_audit.cli.main import main
from inversion_audit.data import PreprocessConfig, load_cohort, preprocess_subject
from inversion_audit.io import read_volume, write_volume
from inversion_audit.study.layout import StudyPaths

torch = pytest.importorskip("torch")

PRE = PreprocessConfig(spacing=(2.0, 2.0, 2.0), shape=(32, 32, 32), bias_correction=False)
RUN = "unknown_with-skull_unknown"


@pytest.fixture
def ssim_calls(monkeypatch) -> list[bool]:
    """A spy around the real SSIM matrix: one entry per call, ``True`` for an unmasked one."""
    import inversion_audit.metrics as metrics

    calls: list[bool] = []
    real = metrics.ssim_matrix

    def spy(*args, **kwargs):
        calls.append(kwargs.get("mask") is None)
        return real(*args, **kwargs)

    monkeypatch.setattr(metrics, "ssim_matrix", spy)
    return calls


@pytest.fixture
def one_thread():
    """Torch on one thread: several times faster on a shared, loaded CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _blurred(img: np.ndarray, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    return np.clip(gaussian_filter(img, 1.0) + r.normal(0, 0.05, img.shape), 0, 1).astype(
        np.float32
    )


def _reid_config(**kw):
    from inversion_audit.matching.reid import ReidConfig

    base = dict(
        epochs=1, batch_size=4, base_filters=2, embed_dim=8, input_size=16, patch_size=16,
        patch_stride=8, patches_per_subject=2, min_inside=0.5,
    )  # fmt: skip
    return ReidConfig(**{**base, **kw})


@pytest.mark.parametrize("mode", ["patches", "volume"])
def test_reid_is_scored_in_the_one_call_with_one_ssim_matrix(ssim_calls, one_thread, mode):
    from inversion_audit.data.preprocess import Preprocessed
    from inversion_audit.matching.pipeline import MatchOptions, brain_mask, score_reconstructions
    from inversion_audit.matching.reid import build_reid_network, reid_scores
    from inversion_audit.matching.reid_patches import patch_reid_scores
    from inversion_audit.matching.reid_scorer import ReidScorer

    torch.manual_seed(0)
    net = build_reid_network(2, 8).eval()
    cfg = _reid_config(mode=mode)
    pairs = [make_blob_volume(seed=s) for s in range(3)]
    eye = np.eye(4)
    cands = {
        f"s{i}": Preprocessed(f"s{i}", im, eye, im > 0.1, lab, eye, im.shape)
        for i, (im, lab) in enumerate(pairs)
    }
    recs = {f"s{i}": _blurred(im, i) for i, (im, _) in enumerate(pairs)}
    opts = MatchOptions(metrics=("ssim", "correlation", "reid"))
    out = score_reconstructions(
        recs, cands, opts, device="cpu", reid_fn=ReidScorer(net, cfg, "cpu")
    )
    assert ssim_calls == [True]  # the one SSIM matrix, computed once
    got = {(a, b): v for a, b, m, v in out.rows if m == "reid"}
    R, C = np.stack(list(recs.values())), np.stack([p.image for p in cands.values()])
    if mode == "patches":
        brains = np.stack([brain_mask(p) for p in cands.values()])
        want = patch_reid_scores(net, R, C, brains, cfg, "cpu")
    else:
        want = reid_scores(net, list(R), list(C), cfg.input_size, "cpu")
    assert len(got) == 9
    for (a, b), v in got.items():
        assert v == pytest.approx(want[int(a[1]), int(b[1])], rel=1e-5, abs=1e-6)
    assert {m for *_, m, _ in out.rows} == {"ssim", "correlation", "reid"}
    with pytest.raises(ValueError, match="reid_fn returned shape"):
        score_reconstructions(recs, cands, opts, device="cpu", reid_fn=lambda r, c, b: np.zeros(3))


def _snapshot(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def trained_reid(tiny_cohort, tmp_path, one_thread):
    """A re-identifier trained by the project's own patch training on three tiny subjects,
    saved with its config as the study saves it; and stand-in reconstructions of two others."""
    from inversion_audit.matching.pipeline import brain_mask
    from inversion_audit.matching.reid_io import save_reid
    from inversion_audit.matching.reid_patches import train_patch_reid

    cohort = load_cohort(tiny_cohort)
    pres = {sid: preprocess_subject(cohort[sid], PRE) for sid in cohort.ids}
    train = ["sub00", "sub01", "sub02"]
    cfg = _reid_config()
    net, _ = train_patch_reid(
        [_blurred(pres[s].image, k) for k, s in enumerate(train)],
        [pres[s].image for s in train],
        [brain_mask(pres[s]) for s in train],
        cfg,
        device="cpu",
    )
    weights, _ = save_reid(tmp_path / "ckpt" / "reid", net, {"config": cfg.to_dict()})
    recon = tmp_path / "recon"
    for k, sid in enumerate(["sub03", "sub04"]):
        write_volume(
            recon / f"{sid}_recon_pre.nii.gz", _blurred(pres[sid].image, 10 + k), pres[sid].affine
        )
    return weights, net, cfg, recon


def _argv(cohort, recon, out, *extra):
    return [
        "match", "--reconstructions", str(recon), "--candidates", str(cohort), "--out", str(out),
        "--no-bias-correction", "--device", "cpu", "--threads", "1", "--quiet", *extra,
    ]  # fmt: skip


def test_match_scores_reid_with_a_trained_reidentifier(
    tiny_cohort, tmp_path, trained_reid, ssim_calls
):
    from inversion_audit.matching.reid_patches import patch_reid_scores

    weights, net, cfg, recon = trained_reid
    out = tmp_path / "match"
    assert (
        main(_argv(tiny_cohort, recon, out, "--metrics", "ssim,reid", "--reid", str(weights))) == 0
    )
    assert ssim_calls == [True]
    paths = StudyPaths(out)
    with open(paths.scores, newline="") as fh:
        rows = list(csv.DictReader(fh))
    got = {
        (r["reconstruction_id"], r["candidate_id"]): float(r["value"])
        for r in rows
        if r["metric"] == "reid"
    }
    # the independent reference: the trained network called directly on what match wrote
    rids, cids = ["sub03", "sub04"], sorted(load_cohort(tiny_cohort).ids)
    R = np.stack([read_volume(paths.reconstruction(RUN, r, "preprocessed")).array for r in rids])
    C = np.stack([read_volume(paths.preprocessed("with-skull", c)).array for c in cids])
    brains = np.stack(
        [read_volume(paths.preprocessed_labels("with-skull", c)).array > 0 for c in cids]
    )
    want = patch_reid_scores(net, R, C, brains, cfg, "cpu")
    assert len(got) == 2 * 6
    for a, rid in enumerate(rids):
        for b, cid in enumerate(cids):
            assert got[(rid, cid)] == pytest.approx(want[a, b], rel=1e-5, abs=1e-6)
    with open(paths.rankings(RUN), newline="") as fh:
        ranked = {(r["reconstruction_id"], r["metric"]) for r in csv.DictReader(fh)}
    assert {("sub03", "reid"), ("sub04", "reid"), ("sub03", "ssim")} <= ranked
    summary = json.loads((out / "summary.json").read_text())
    assert "reid" in summary["metrics"] and summary["reid"]["path"] == str(weights)


def _missing(weights: Path) -> tuple[str, str]:
    weights.unlink()
    return str(weights), "not found"


def _tampered(weights: Path) -> tuple[str, str]:
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    return str(weights), "hash differs"


def _no_config(weights: Path) -> tuple[str, str]:
    sidecar = weights.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    del meta["config"]
    sidecar.write_text(json.dumps(meta))
    return str(weights), "records no reid 'config'"


def _big_patches(weights: Path) -> tuple[str, str]:
    sidecar = weights.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["config"]["patch_size"] = 48
    sidecar.write_text(json.dumps(meta))
    return str(weights), "patches do not fit the grid"


@pytest.mark.parametrize("fault", [_missing, _tampered, _no_config, _big_patches])
def test_a_bad_reid_leaves_out_and_cache_unchanged(
    tiny_cohort, tmp_path, trained_reid, capsys, fault
):
    weights, _, _, recon = trained_reid
    path, message = fault(weights)
    out = tmp_path / "match"
    (out / "scores").mkdir(parents=True)
    (out / "scores" / "scores.csv").write_text("a previous run's scores\n")
    cache = Path(os.environ["INVERSION_AUDIT_CACHE"])
    before = _snapshot(out), _snapshot(cache)
    capsys.readouterr()
    assert main(_argv(tiny_cohort, recon, out, "--metrics", "ssim,reid", "--reid", path)) != 0
    err = capsys.readouterr().err
    assert message in err and weights.name in err
    assert (_snapshot(out), _snapshot(cache)) == before


def test_reid_metric_and_flag_come_together(tiny_cohort, tmp_path, capsys):
    out = tmp_path / "match"
    assert main(_argv(tiny_cohort, tmp_path, out, "--metrics", "ssim,reid")) == 1
    assert "--metrics reid needs --reid CKPT" in capsys.readouterr().err
    assert main(_argv(tiny_cohort, tmp_path, out, "--metrics", "ssim", "--reid", "x")) == 1
    assert "--reid x: given, but --metrics has no reid" in capsys.readouterr().err
    assert not out.exists()
