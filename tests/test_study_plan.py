"""The study's plan and its stages: one frozen plan, runs as values, the same stage functions
for an undefended and a defended run, and the ``defence`` column (old tables still read)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from conftest import runner_study_config, write_blob_cohort
from inversion_audit.study.config import study_config_from_dict
from inversion_audit.study.plan import Run, StudyPlan, build_plan
from inversion_audit.study.resolved import read_inputs


def _config(cohort, **extra):
    cfg = runner_study_config(cohort)
    cfg["archs"] = ["unet"]
    cfg["folds"]["run_folds"] = [0]
    cfg["cohort"].update(n_subjects=4, holdout_n=1)
    cfg["matching"] = {"metrics": ["ssim", "psnr"], "top_k": 1}
    cfg["defences"] = [{"kind": "latent-noise", "strengths": [0.5]}]
    return study_config_from_dict({**cfg, **extra})


def test_the_plan_is_frozen_and_lists_every_run(tmp_path):
    cohort = write_blob_cohort(tmp_path / "cohort", {f"sub-{k:03d}": k for k in range(5)})
    config = _config(cohort)
    plan = build_plan(config, read_inputs(config))
    assert isinstance(plan, StudyPlan)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.folds = ()  # type: ignore[misc]
    assert [f.index for f in plan.folds] == [0]
    assert plan.holdout_ids == ("sub-004",) and plan.holdout_of(plan.folds[0]) == ["sub-004"]
    (setting,) = plan.settings
    assert plan.runs == (
        Run("unet", "skull-stripped", "bottleneck"),
        Run("unet", "skull-stripped", "bottleneck", setting),
    )
    assert [r.name for r in plan.runs] == [
        "unet_skull-stripped_bottleneck",
        "unet_skull-stripped_bottleneck_latent-noise-0.5",
    ]
    assert [r.defence_tag for r in plan.runs] == ["", "latent-noise-0.5"]
    # pure: the same inputs give an equal plan
    assert build_plan(config, read_inputs(config)) == plan


@pytest.mark.slow
def test_the_same_stage_functions_make_an_undefended_and_a_defended_run(tmp_path, monkeypatch):
    """``protocol.train_inversion``, ``reconstruct`` and ``score`` called with the undefended
    run and with the defended one: each writes its run's decoder, reconstructions and score
    part, the defence in its own column."""
    from inversion_audit.study import protocol
    from inversion_audit.study.context import StudyContext
    from inversion_audit.study.layout import StudyPaths
    from inversion_audit.study.network import protocol_network
    from inversion_audit.study.score_files import read_scores
    from inversion_audit.study.stages import StageStore

    monkeypatch.setenv("INVERSION_AUDIT_CACHE", str(tmp_path / "cache"))
    cohort = write_blob_cohort(tmp_path / "cohort", {f"sub-{k:03d}": k for k in range(5)})
    config = _config(cohort)
    plan = build_plan(config, read_inputs(config))
    out = tmp_path / "study"
    ctx = StudyContext(StudyPaths(out), StageStore(out), "cpu")
    fold = plan.folds[0]
    undefended, defended = plan.runs
    protocol.write_preprocessed(plan, "skull-stripped", ctx)
    base = protocol.train_target(plan, undefended, ctx, fold)
    for run in (undefended, defended):
        key = protocol.train_target(plan, run, ctx, fold, base)
        assert (key == base) == (
            run.defence is None
        )  # latent noise: the same target, released noisy
        net = protocol_network(plan, run, ctx, fold, key)
        inv_key = protocol.train_inversion(plan, run, ctx, fold, net)
        rec_key = protocol.reconstruct(plan, run, ctx, fold, net, inv_key)
        protocol.score(plan, run, ctx, fold, net, rec_key)
        assert ctx.paths.inversion(run.name, 0).is_file()
        for sid in (*fold.private_set, "sub-004"):
            assert ctx.paths.reconstruction(run.name, sid, "preprocessed").is_file()
        rows = read_scores(ctx.paths.score_part(run.name, 0))
        assert {(r["threat_model"], r["defence"]) for r in rows} == {
            ("bottleneck", run.defence_tag)
        }
    assert set(ctx.stages.timings) >= {
        f"fold0/{r.name}/{kind}"
        for r in plan.runs
        for kind in ("inversion", "reconstruct", "score")
    }


def test_an_old_scores_table_reads_its_defence_from_the_threat_model_column(tmp_path):
    from inversion_audit.study.collect import concatenate_scores
    from inversion_audit.study.index import StudyIndex, entry_defence
    from inversion_audit.study.layout import SCORE_COLUMNS, StudyPaths
    from inversion_audit.study.score_files import read_scores

    old = "fold,arch,variant,threat_model,reconstruction_id,candidate_id,metric,value\n"
    rows = "0,unet,with-skull,bottleneck,a,a,ssim,0.5\n0,unet,with-skull,bottleneck_latent-noise-0.5,a,a,ssim,0.25\n"
    paths = StudyPaths(tmp_path / "study")
    paths.scores.parent.mkdir(parents=True)
    paths.scores.write_text(old + rows)
    got = read_scores(paths.scores)
    assert [(r["threat_model"], r["defence"], r["value"]) for r in got] == [
        ("bottleneck", "", 0.5),
        ("bottleneck", "latent-noise-0.5", 0.25),
    ]
    index = StudyIndex(paths.root)
    assert [e.run for e in index.entries] == [
        "unet_with-skull_bottleneck",
        "unet_with-skull_bottleneck_latent-noise-0.5",
    ]
    assert [entry_defence(e) for e in index.entries] == [None, ("latent-noise", 0.5)]
    assert index.score("unet_with-skull_bottleneck_latent-noise-0.5", "a", "a", "ssim") == 0.25
    # a score part written before the column (a resumed study) is concatenated with it
    part = paths.score_part("unet_with-skull_bottleneck_latent-noise-0.5", 0)
    part.parent.mkdir(parents=True)
    part.write_text(old + rows.splitlines()[1] + "\n")
    concatenate_scores(paths, {part.name})
    lines = paths.scores.read_text().splitlines()
    assert lines[0].split(",") == list(SCORE_COLUMNS)
    assert lines[1] == "0,unet,with-skull,bottleneck,latent-noise-0.5,a,a,ssim,0.25"
    assert not math.isnan(read_scores(paths.scores)[0]["value"])
