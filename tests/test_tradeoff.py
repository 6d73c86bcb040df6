"""The [[defences]] sweep: config, run names, defended study runs and the privacy–utility table."""

from __future__ import annotations

import pytest

from inversion_audit.errors import ConfigError


def _settings(value, seed=0):
    """Every setting of a ``[[defences]]`` list, as the study parses it."""
    from inversion_audit.study.defences_config import all_settings, parse_defences

    return all_settings(parse_defences(value, seed))


def test_defence_settings_and_their_tags():
    from inversion_audit.study.defences_config import (
        parse_defence_tag,
    )

    settings = _settings(
        [
            {"kind": "latent-noise", "strengths": [0.25, 2]},
            {"kind": "latent-noise", "strengths": [8], "mode": "quantise"},
            {"kind": "dp-sgd", "strengths": [1.5], "max_grad_norm": 2, "delta": 1e-3},
            {"kind": "obfuscation", "strengths": [8]},
        ]
    )
    tags = [s.tag for s in settings]
    assert tags == [
        "latent-noise-0.25",
        "latent-noise-2",
        "latent-noise-q8",
        "dp-sgd-1.5",
        "obfuscation-8-unknown",
        "obfuscation-8-known",
    ]
    assert [parse_defence_tag(t) for t in tags] == [
        ("latent-noise", 0.25, False, None),
        ("latent-noise", 2.0, False, None),
        ("latent-noise", 8.0, True, None),
        ("dp-sgd", 1.5, False, None),
        ("obfuscation", 8.0, False, False),
        ("obfuscation", 8.0, False, True),
    ]
    dp = settings[3].dp_config()
    assert dp == {"noise_multiplier": 1.5, "max_grad_norm": 2, "delta": 1e-3}
    assert settings[2].latent_noise() == {"sigma": 0.0, "levels": 8, "seed": 0}
    assert [s.stronger_is_larger for s in settings] == [True, True, False, True, False, False]
    # both obfuscation attackers share one target
    assert settings[4].target_tag == settings[5].target_tag == "obfuscation-8"
    with pytest.raises(ValueError):
        parse_defence_tag("dp-sgd-q2")


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"kind": "noise", "strengths": [1]}, r"defences\[0\]\.kind"),
        ({"kind": "dp-sgd", "strengths": []}, r"defences\[0\]\.strengths"),
        ({"kind": "dp-sgd", "strengths": [1], "levels": 3}, r"'defences\[0\]\.levels'"),
        ({"kind": "dp-sgd", "strengths": [1], "sampling": "batch"}, "sampling"),
        ({"kind": "latent-noise", "strengths": [1.5], "mode": "quantise"}, "integers >= 2"),
        ({"kind": "obfuscation", "strengths": [64], "bins": 64}, "non-bijective"),
        ({"kind": "obfuscation", "strengths": [8], "knows_domain": "yes"}, "wrong type"),
        ({"kind": "latent-noise", "strengths": [1, 1]}, "repeated"),
    ],
)
def test_bad_defences_name_the_key(table, match):
    from inversion_audit.study.defences_config import parse_defences

    with pytest.raises(ConfigError, match=match):
        parse_defences([table])


def _write_cohort(root, n: int = 6):
    import nibabel as nib
    import numpy as np

    from conftest import make_blob_volume

    root.mkdir()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -32
    for i in range(n):
        img, lab = make_blob_volume(seed=i)
        nib.save(
            nib.Nifti1Image((img * 1000).astype(np.float32), affine), root / f"sub{i:02d}_T1.nii.gz"
        )
        nib.save(nib.Nifti1Image(lab.astype(np.uint8), affine), root / f"sub{i:02d}_seg.nii.gz")
    return root


def _top1_from_scores(rows: list[dict], run: str) -> tuple[int, int]:
    """Top-1 by SSIM straight from scores.csv: the own original scores highest."""
    by_rec: dict[str, dict[str, float]] = {}
    for r in rows:
        parts = [r["arch"], r["variant"], r["threat_model"].replace("+", "-"), r["defence"]]
        if "_".join(p for p in parts if p) == run and r["metric"] == "ssim":
            by_rec.setdefault(r["reconstruction_id"], {})[r["candidate_id"]] = float(r["value"])
    hits = sum(max(c, key=c.get) == rid for rid, c in by_rec.items())
    return hits, len(by_rec)


def _tiny_defended_config(cohort, epochs: int, **extra):
    """A one-fold defended study of 6 blob subjects on a 32^3 grid (``extra``: more tables)."""
    from inversion_audit.study.config import study_config_from_dict

    return study_config_from_dict(
        {
            "study": {"name": "defended", "seed": 1, "device": "cpu", "threads": 1},
            "cohort": {"path": str(cohort)},
            "folds": {"n_folds": 2, "seed": 0, "run_folds": [0]},
            "variants": ["skull-stripped"],
            "archs": ["unet"],
            "threat_models": ["bottleneck"],
            "preprocess": {"spacing": [2.0, 2.0, 2.0], "shape": [32, 32, 32], "divisible_by": 8},
            "target": {
                "depth": 2,
                "base_filters": 4,
                "epochs": epochs,
                "batch_size": 1,
                "lr": 0.01,
            },
            "inversion": {"epochs": epochs, "batch_size": 1, "lr": 0.01},
            **extra,
        }
    )


@pytest.mark.slow
def test_tiny_defended_study_rows_report_and_resume(tmp_path):
    import csv
    import json

    from inversion_audit.report import run_and_report
    from inversion_audit.study.runner import plan_study

    cohort = _write_cohort(tmp_path / "cohort")
    config = _tiny_defended_config(
        cohort,
        epochs=2,
        matching={"metrics": ["ssim", "correlation"], "top_k": 1},
        defences=[
            {"kind": "latent-noise", "strengths": [0.5, 4.0]},
            {"kind": "dp-sgd", "strengths": [1.0], "delta": 1e-2},
            {"kind": "obfuscation", "strengths": [4, 6], "vae_epochs": 2, "vae_filters": 4},
        ],
    )
    out = tmp_path / "study"
    run_and_report(config, out)

    defended = {
        "bottleneck_latent-noise-0.5",
        "bottleneck_latent-noise-4",
        "bottleneck_dp-sgd-1",
        "bottleneck_obfuscation-4-unknown",
        "bottleneck_obfuscation-4-known",
        "bottleneck_obfuscation-6-unknown",
        "bottleneck_obfuscation-6-known",
    }
    with open(out / "scores" / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # the threat model and the defence in their own columns
    assert {r["threat_model"] for r in rows} == {"bottleneck"}
    assert {r["defence"] for r in rows} == {"", *(d.split("_", 1)[1] for d in defended)}
    for threat in defended:
        run = f"unet_skull-stripped_{threat}"
        assert (out / "reconstructions" / run).is_dir()
        assert (out / "rankings" / f"{run}.csv").exists()

    # one VAE serves both obfuscation strengths; each strength trains its own target
    assert [p.name for p in (out / "stages").glob("*vae*")] == [
        "fold0__unet_skull-stripped_obfuscation__vae.json"
    ]
    for levels in (4, 6):
        stage = out / "stages" / f"fold0__unet_skull-stripped_obfuscation-{levels}__target.json"
        assert stage.is_file()

    doc = json.loads((out / "report.json").read_text())
    table = {r["run"]: r for r in doc["privacy_utility"]["rows"]}
    assert set(table) == {f"unet_skull-stripped_{t}" for t in {"bottleneck", *defended}}
    for run, r in table.items():
        hits, n = _top1_from_scores(rows, run)
        assert (r["top1_ssim"], r["n"]) == (hits, n)
        assert 0 <= r["dice_private"] <= 1
        assert r["chance"] == pytest.approx(1 / 6)
    dp = table["unet_skull-stripped_bottleneck_dp-sgd-1"]
    assert dp["epsilon"] > 0 and (dp["delta"], dp["sampling"]) == (0.01, "poisson")
    assert table["unet_skull-stripped_bottleneck"]["epsilon"] is None
    # released codes are perturbed: heavy noise costs Dice against the undefended target
    noisy = table["unet_skull-stripped_bottleneck_latent-noise-4"]["dice_private"]
    assert noisy < table["unet_skull-stripped_bottleneck"]["dice_private"]
    md = (out / "report.md").read_text()
    assert "## Privacy–utility" in md and doc["privacy_utility"]["lines"]
    # at chance: the Wilson interval (statsmodels) of the best metric's top-1 holds 1/6
    from statsmodels.stats.proportion import proportion_confint

    from inversion_audit.study.defences_config import format_strength

    for r in table.values():
        low, high = proportion_confint(r["top1_best"], r["n"], alpha=0.05, method="wilson")
        assert r["at_chance"] == (low <= 1 / 6 <= high)
    # the answer: the setting at chance against every attacker with the highest Dice
    settings: dict = {}
    for r in table.values():
        if r["defence"] != "none":
            settings.setdefault((r["defence"], r["strength"]), []).append(r)
    closing = [v[0] for v in settings.values() if all(r["at_chance"] for r in v)]
    answer = doc["privacy_utility"]["lines"][-1]
    if not closing:
        assert "no defence setting tried brings identification to chance" in answer
    else:
        best = max(closing, key=lambda r: r["dice_private"])
        assert f"{best['defence']} at {format_strength(best['strength'])} costs" in answer
        assert f"(Dice {best['dice_private']:.3f}" in answer
    # and the report's summary carries the answer
    assert (
        f"Which defence closes the leak (unet skull-stripped bottleneck): {answer.split(': ', 1)[1]}"
        in doc["summary_text"]
    )
    assert "privacy_utility" in doc["figures"]
    # resumable: every stage, defended ones included, is done; the shared VAE is listed once
    plan = plan_study(config, out)
    assert all(done for _, done in plan)
    names = [name for name, _ in plan]
    assert (
        len(names) == len(set(names))
        and names.count("fold0/unet_skull-stripped_obfuscation/vae") == 1
    )


@pytest.mark.slow
def test_defended_runs_train_their_own_reid_through_the_released_code(tmp_path):
    """A defended run is judged against the learned re-identifier too, trained on cross-fitted
    reconstructions through the defended release (not the undefended run's)."""
    import json

    import numpy as np

    from inversion_audit.report import run_and_report
    from inversion_audit.study.score_files import read_scores

    cohort = _write_cohort(tmp_path / "cohort")
    config = _tiny_defended_config(
        cohort,
        epochs=1,
        matching={"metrics": ["ssim", "reid"], "top_k": 1},
        reid={
            "epochs": 1,
            "base_filters": 2,
            "embed_dim": 8,
            "patch_size": 16,
            "patch_stride": 8,
            "min_inside": 0.3,
        },
        defences=[{"kind": "latent-noise", "strengths": [4.0]}],
    )
    out = tmp_path / "study"
    run_and_report(config, out)
    plain, noisy = "unet_skull-stripped_bottleneck", "unet_skull-stripped_bottleneck_latent-noise-4"
    assert (out / "stages" / f"fold0__{noisy}__reid.json").is_file()
    crossfit = {}
    for run in (plain, noisy):
        fold0 = out / "checkpoints" / run / "fold0"
        assert (fold0 / "reid.safetensors").is_file()
        (path,) = fold0.glob("crossfit-*.npz")
        with np.load(path, allow_pickle=False) as data:
            crossfit[run] = data["reconstructions"].astype(np.float32)
    # the attacker's cross-fitted reconstructions went through the noisy released code
    assert crossfit[plain].shape == crossfit[noisy].shape
    assert np.abs(crossfit[plain] - crossfit[noisy]).mean() > 1e-3
    rows = read_scores(out / "scores" / "scores.csv")
    pairs = {
        (r["reconstruction_id"], r["candidate_id"])
        for r in rows
        if r["metric"] == "reid" and r["defence"] == "latent-noise-4"
    }
    recs = {r["reconstruction_id"] for r in rows if r["defence"] == "latent-noise-4"}
    cands = {r["candidate_id"] for r in rows}
    assert recs and pairs == {(a, b) for a in recs for b in cands}
    doc = json.loads((out / "report.json").read_text())
    assert doc["runs"][noisy]["table3"]["reid"]["n"] == len(recs)


def test_defended_run_names_parse():
    from inversion_audit.study.layout import parse_run, run_name

    threat = "bottleneck+skips_latent-noise-0.5"
    name = run_name("unet", "skull-stripped", threat)
    assert name == "unet_skull-stripped_bottleneck-skips_latent-noise-0.5"
    assert name == run_name("unet", "skull-stripped", "bottleneck+skips", "latent-noise-0.5")
    assert parse_run(name) == ("unet", "skull-stripped", "bottleneck+skips", "latent-noise-0.5")
    assert parse_run("unet_with-skull_bottleneck") == ("unet", "with-skull", "bottleneck", "")
    assert parse_run("segnet_with-skull_bottleneck_obfuscation-8-known")[2:] == (
        "bottleneck",
        "obfuscation-8-known",
    )
    with pytest.raises(ValueError):
        parse_run("unet_skull-stripped_bottleneck_noise-0.5")
