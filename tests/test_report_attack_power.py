"""The report's attack power: each decoder's training beside the private-set numbers, the
loss curves, and the lower-bound rule (a budget-stopped or unmeasured decoder's
identification rate is a lower bound and its risk is never called low)."""

from __future__ import annotations

import html
import json

import pytest

from conftest import runner_study_config, write_blob_cohort
from inversion_audit.report.attack_power import (
    DecoderPower,
    power_from_metadata,
    qualify_summary,
    run_power,
)
from inversion_audit.report.attack_power_section import attack_power_report

RUN = "unet_skull-stripped_bottleneck"
LOW = f"- **{RUN}**: re-identified 0 of 4. Identifiability risk: **low**. The most identifying metric was ssim."


def _power(fold: int, stopped_by: str | None, ssim: float | None = 0.5) -> DecoderPower:
    n_val = 0 if stopped_by is None else 1
    return DecoderPower(
        RUN, fold, stopped_by, 7, 30, 14, 0.1, ssim if n_val else None, 0.6 if n_val else None,
        n_val, train_loss=(0.3, 0.2), val_loss=(0.35, 0.25) if n_val else (),
    )  # fmt: skip


def test_a_plateau_stopped_run_is_not_a_lower_bound_and_may_be_low():
    power = run_power([_power(0, "plateau"), _power(1, "plateau", 0.7)], RUN)
    assert not power["lower_bound"] and power["reason"] is None
    assert power["val_ssim"] == pytest.approx(0.6)
    [line] = qualify_summary([LOW], {RUN: power})
    assert "risk: **low**" in line and "lower bound" not in line


@pytest.mark.parametrize(
    ("stops", "why"),
    [
        (["plateau", "budget"], "epoch budget (fold 1)"),
        ([None, None], "not measured"),
        ([], "no record"),
    ],
)
def test_a_budget_stopped_or_unmeasured_run_is_a_lower_bound_never_low(stops, why):
    power = run_power([_power(k, s) for k, s in enumerate(stops)], RUN)
    assert power["lower_bound"] and why in power["reason"]
    [line] = qualify_summary([LOW], {RUN: power})
    assert "**lower bound**" in line and "larger budget may find more" in line
    assert "**low**" not in line and "risk: **not shown**" in line
    assert ("validation_fraction = 0.2" in line) == (not power["measured"])
    # a higher level stays, with the lower-bound sentence
    [high] = qualify_summary([LOW.replace("**low**", "**high**")], {RUN: power})
    assert "risk: **high**" in high and "lower bound" in high


def test_an_old_decoder_sidecar_is_not_measured():
    meta = {"epochs": 30, "epochs_run": 30, "history": {"epoch_loss": [0.4, 0.2]}}
    p = power_from_metadata(RUN, 0, meta)
    assert (p.stopped_by, p.epochs_run, p.budget_epochs, p.final_loss) == (None, 30, 30, 0.2)
    assert p.val_ssim is None and p.n_val == 0 and p.lower_bound
    # a split-less decoder's "budget" is not a measurement
    conv = {"stopped_by": "budget", "n_val": 0, "val_metrics": {"ssim": 0.4}}
    assert power_from_metadata(RUN, 0, {"convergence": conv}).stopped_by is None


class _Index:
    """Just what the section reads of a study: its decoder records."""

    def __init__(self, records: list[dict]) -> None:
        self.records = records

    def decoder_records(self) -> list[dict]:
        return self.records


def test_without_a_split_the_section_says_how_to_measure_convergence():
    summary = {"runs": {RUN: {"arch": "unet", "variant": "skull-stripped", "table3": {}}}}
    meta = {"epochs": 30, "epochs_run": 30, "convergence": {"stopped_by": "budget", "n_val": 0}}
    section = attack_power_report(_Index([{"run": RUN, "fold": 0, "metadata": meta}]), summary)
    text = "\n".join(section.markdown)
    assert "Convergence was not measured" in text and "validation_fraction = 0.2" in text
    assert "patience = 5" in text and section.figures == {}
    assert not section.record["measured"]


@pytest.mark.slow
def test_the_report_shows_attack_power_from_the_decoders_sidecars(tmp_path, monkeypatch):
    from inversion_audit.report import write_report
    from inversion_audit.study.config import study_config_from_dict
    from inversion_audit.study.index import StudyIndex
    from inversion_audit.study.runner import run_study

    monkeypatch.setenv("INVERSION_AUDIT_CACHE", str(tmp_path / "cache"))
    ids = [f"sub-{k:03d}" for k in range(6)]  # 2 folds: 3 attack subjects each, 1 held out
    cohort = write_blob_cohort(tmp_path / "cohort", {s: k for k, s in enumerate(ids)})
    cfg = runner_study_config(cohort)
    cfg["archs"] = ["unet"]
    cfg["matching"] = {"metrics": ["ssim", "correlation"], "top_k": 1}
    # a patience longer than the budget: every decoder stops at its budget
    cfg["inversion"].update(epochs=2, validation_fraction=0.2, patience=50)
    study = tmp_path / "study"
    run_study(study_config_from_dict(cfg), study)
    write_report(study)

    report = json.loads((study / "report.json").read_text())
    power = report["attack_power"]["runs"][RUN]
    sidecars = [
        json.loads((study / "checkpoints" / RUN / f"fold{k}" / "inversion.json").read_text())
        for k in (0, 1)
    ]
    convs = [s["convergence"] for s in sidecars]
    assert [f["stopped_by"] for f in power["folds"]] == [c["stopped_by"] for c in convs]
    assert {c["stopped_by"] for c in convs} == {"budget"}
    for fold, conv in zip(power["folds"], convs, strict=True):
        assert fold["epochs_run"] == conv["epochs_run"] == 2
        assert fold["budget_epochs"] == conv["budget_epochs"] == 2
        assert fold["n_val"] == conv["n_val"] >= 1
        assert fold["val_ssim"] == pytest.approx(conv["val_metrics"]["ssim"])
        assert fold["val_correlation"] == pytest.approx(conv["val_metrics"]["correlation"])
        assert fold["train_loss"] == pytest.approx(conv["train_loss"])
        assert fold["val_loss"] == pytest.approx(conv["val_loss"])
    mean_ssim = sum(c["val_metrics"]["ssim"] for c in convs) / 2
    assert power["val_ssim"] == pytest.approx(mean_ssim)
    # the private-set numbers are the report's own
    t3 = report["runs"][RUN]["table3"]["ssim"]
    assert power["private"]["top1"] == t3["top1"] and power["private"]["n"] == t3["n"]
    own = report["runs"][RUN]["table1"]["ssim"]["mean"]
    assert power["private"]["ssim_own_mean"] == pytest.approx(own)

    md = (study / "report.md").read_text()
    section = md[md.index("## Attack power") :]
    row = next(line for line in section.splitlines() if line.startswith(f"| {RUN} |"))
    assert f"| budget | 2/2, 2/2 | {mean_ssim:.3f} |" in row
    assert f"{t3['top1']} of {t3['n']}" in row and row.endswith("| lower bound |")

    # the loss curves and the identification figure, with alt text
    assert {"attack_loss_curves", "attack_identification_vs_validation"} <= set(report["figures"])
    page = (study / "report.html").read_text()
    figures = attack_power_report(StudyIndex(study), report).figures
    alt = figures["attack_loss_curves"].info["alt"]
    assert "validation loss" in alt and f"{RUN} fold 1: budget, 2 of 2 epochs" in alt
    assert f"<img alt='{html.escape(alt, quote=True)}' src='data:image/png;base64," in page

    # the summary: a lower bound, never "low"
    line = next(x for x in report["summary_text"] if x.startswith(RUN))
    assert "lower bound" in line and "larger budget may find more" in line
    assert "risk: low" not in line
