"""The study index, on a study made by the real runner (``conftest.runner_study``).

Expected values come from the files through other readers (the csv module, nibabel) and
from the fold split, never from the index itself.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys

import nibabel as nib
import pytest
from scipy.stats import rankdata

from conftest import RUNNER_STUDY_IDS, runner_study_config
from inversion_audit.data import kfold_split
from inversion_audit.errors import StudyError
from inversion_audit.study.index import StudyIndex
from inversion_audit.study.layout import parse_run, run_name
from inversion_audit.study.score_files import read_scores


def _csv_rows(study):
    with open(study / "scores" / "scores.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_entries_are_every_private_subject_of_every_run_with_its_fold(runner_study):
    cfg = runner_study_config(None)
    index = StudyIndex.open(runner_study)
    folds = kfold_split(list(RUNNER_STUDY_IDS), cfg["folds"]["n_folds"], cfg["folds"]["seed"])
    fold_of = {sid: f.index for f in folds for sid in f.private_set}
    runs = {
        run_name(a, v, t)
        for a in cfg["archs"]
        for v in cfg["variants"]
        for t in cfg["threat_models"]
    }
    assert index.runs() == sorted(runs)
    assert {(e.run, e.reconstruction_id, e.fold) for e in index.entries} == {
        (r, sid, fold_of[sid]) for r in runs for sid in RUNNER_STUDY_IDS
    }


def test_scores_are_the_csv_rows(runner_study):
    rows = _csv_rows(runner_study)
    got = read_scores(runner_study / "scores" / "scores.csv")
    assert len(got) == len(rows) > 0
    for g, r in zip(got, rows, strict=True):
        assert (g["fold"], g["arch"], g["variant"], g["threat_model"]) == (
            int(r["fold"]),
            r["arch"],
            r["variant"],
            r["threat_model"],
        )
        assert (g["reconstruction_id"], g["candidate_id"], g["metric"]) == (
            r["reconstruction_id"],
            r["candidate_id"],
            r["metric"],
        )
        assert g["value"] == float(r["value"]) or (math.isnan(g["value"]) and r["value"] == "nan")
    index = StudyIndex.open(runner_study)
    r = rows[0]
    run = run_name(r["arch"], r["variant"], r["threat_model"])
    assert index.score(run, r["reconstruction_id"], r["candidate_id"], r["metric"]) == float(
        r["value"]
    )
    assert math.isnan(index.score(run, r["reconstruction_id"], "nobody", "ssim"))
    cands = index.candidates(run, r["reconstruction_id"])
    assert [c.candidate_id for c in cands] == list(RUNNER_STUDY_IDS)


def test_files_of_every_kind_exist_where_the_index_says(runner_study):
    index = StudyIndex.open(runner_study)
    cohort = runner_study.parent / "cohort"
    assert index.variants() == ["skull-stripped"]
    assert index.candidate_ids("skull-stripped") == list(RUNNER_STUDY_IDS)
    for e in index.entries:
        pre = nib.load(index.reconstruction_file(e))
        orig = nib.load(index.reconstruction_file(e, grid="original"))
        source = nib.load(cohort / f"{e.reconstruction_id}_T1.nii.gz")
        assert pre.shape == tuple(runner_study_config(None)["preprocess"]["shape"])
        assert orig.shape == source.shape  # back on the subject's own grid
        target, inversion = index.checkpoint_files(e)
        assert target.is_file() and inversion.is_file()
        assert target.with_suffix(".json").is_file()
        assert index.candidate_file(e.variant, e.reconstruction_id).is_file()
        assert index.labels_file(e.variant, e.reconstruction_id).name.endswith("_seg.nii.gz")


def test_deformation_maps_are_the_scored_pairs(runner_study):
    index = StudyIndex.open(runner_study)
    rows = _csv_rows(runner_study)
    top_k = runner_study_config(None)["matching"]["top_k"]
    for run in index.runs():
        scored = {
            (r["reconstruction_id"], r["candidate_id"])
            for r in rows
            if r["metric"] == "deformation"
            and run_name(r["arch"], r["variant"], r["threat_model"]) == run
        }
        suffix = "_magnitude.nii.gz"
        folder = index.paths.deformation_dir(run)
        maps = {tuple(f.name[: -len(suffix)].split("__")) for f in folder.glob(f"*{suffix}")}
        assert maps == scored and len(scored) <= top_k * len(RUNNER_STUDY_IDS)
        for rid, cid in maps:
            assert index.deformation_file(run, rid, cid).is_file()


def test_rankings_hold_the_rank_of_the_true_original(runner_study):
    index = StudyIndex.open(runner_study)
    rows = _csv_rows(runner_study)
    for run in index.runs():
        ranking = {(r.reconstruction_id, r.metric): r for r in index.rankings(run)}
        for rid in RUNNER_STUDY_IDS:
            ssim = {
                r["candidate_id"]: float(r["value"])
                for r in rows
                if r["metric"] == "ssim"
                and r["reconstruction_id"] == rid
                and run_name(r["arch"], r["variant"], r["threat_model"]) == run
            }
            r = ranking[(rid, "ssim")]
            ids = sorted(ssim)
            ranks = rankdata([-ssim[c] for c in ids], method="average")  # ties share their mean
            assert r.rank_of_true_match == ranks[ids.index(rid)]
            assert ssim[r.top1_candidate] == max(ssim.values())


def test_cohort_path_is_the_runners_cohort(runner_study, tmp_path):
    assert StudyIndex.open(runner_study).cohort_path() == runner_study.parent / "cohort"
    # the recorded folder is gone: the config's path, resolved as the runner resolves it
    study = tmp_path / "study"
    shutil.copytree(runner_study, study)
    prov = json.loads((study / "provenance.json").read_text())
    prov["inputs"]["cohort"] = str(tmp_path / "moved")
    (study / "provenance.json").write_text(json.dumps(prov))
    assert StudyIndex.open(study).cohort_path() == runner_study.parent / "cohort"
    text = (study / "config.toml").read_text()
    (study / "config.toml").write_text(text.replace(str(runner_study.parent / "cohort"), "gone"))
    with pytest.raises(StudyError, match="not on this machine"):
        StudyIndex.open(study).cohort_path()


def test_cohort_path_of_a_sample_study_is_the_cached_sample_cohort(runner_study, tmp_path):
    from inversion_audit.sample_data import sample_cohort_dir
    from inversion_audit.sample_data.synthetic import MARKER

    study = tmp_path / "study"
    shutil.copytree(runner_study, study)
    (study / "provenance.json").unlink()
    text = (study / "config.toml").read_text()
    cohort = str(runner_study.parent / "cohort")
    (study / "config.toml").write_text(text.replace(f'"{cohort}"', '"sample"', 1))
    index = StudyIndex.open(study)
    n, seed = index.config().cohort.sample_n, index.config().cohort.sample_seed
    with pytest.raises(StudyError, match="sample"):  # not generated here: not on this machine
        index.cohort_path()
    folder = sample_cohort_dir(n, seed)
    folder.mkdir(parents=True)
    with pytest.raises(StudyError):  # a sample cohort still being written does not count
        index.cohort_path()
    (folder / MARKER).write_text("")
    assert index.cohort_path() == folder


def test_errors_name_the_folder_and_what_is_missing(runner_study, tmp_path):
    with pytest.raises(StudyError, match=f"{tmp_path / 'nowhere'}: study folder not found"):
        StudyIndex.open(tmp_path / "nowhere")
    with pytest.raises(StudyError, match="not a study folder"):
        StudyIndex.open(tmp_path)
    bad = tmp_path / "scores.csv"
    bad.write_text("fold,arch\n0,unet\n")
    with pytest.raises(StudyError, match=r"scores\.csv: missing column\(s\) variant"):
        read_scores(bad)
    header = ",".join(["fold", "arch", "variant", "threat_model"])
    header += ",reconstruction_id,candidate_id,metric,value\n"
    bad.write_text(header + "0,unet,skull-stripped,bottleneck,a,b,ssim,high\n")
    with pytest.raises(StudyError, match=r"scores\.csv:2: "):
        read_scores(bad)
    with pytest.raises(StudyError, match="scores table not found"):
        read_scores(tmp_path / "none.csv")
    with pytest.raises(StudyError, match=r"rankings[/\\]segnet_with-skull_bottleneck\.csv"):
        StudyIndex.open(runner_study).rankings("segnet_with-skull_bottleneck")
    with pytest.raises(StudyError, match="no reconstruction 'x'"):
        StudyIndex.open(runner_study).entry(StudyIndex.open(runner_study).runs()[0], "x")


def test_run_names_parse_back():
    for arch in ("unet", "segnet"):
        for variant in ("skull-stripped", "with-skull"):
            for threat in ("bottleneck", "bottleneck+skips"):
                name = run_name(arch, variant, threat)
                assert parse_run(name) == (arch, variant, threat, "")
    for bad in ("resnet_with-skull_bottleneck", "unet_bottleneck", "unet_with-skull_skips"):
        with pytest.raises(StudyError, match="not a run name"):
            parse_run(bad)


def test_index_imports_without_torch_or_qt():
    code = (
        "import sys, inversion_audit.study.index as m; m.StudyIndex; "
        "print(sorted(k for k in ('torch', 'qtpy', 'napari', 'ants') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_path_in_a_study_is_a_study_paths_method(tmp_path):
    from inversion_audit.errors import CohortError
    from inversion_audit.study.layout import HOLDOUT_FILE, StudyPaths

    paths, run = StudyPaths(tmp_path), "unet_skull-stripped_bottleneck_latent-noise-0.5"
    named = {
        paths.config: "config.toml",
        paths.provenance: "provenance.json",
        paths.log: "study.log",
        paths.holdout: HOLDOUT_FILE,
        paths.external_record: "external_model.json",
        paths.stages_dir: "stages",
        paths.report("md"): "report.md",
        paths.report("html"): "report.html",
        paths.reader_study_markdown: "reader_study/reader_study.md",
        paths.scores: "scores/scores.csv",
        paths.score_part(run, 1): f"scores/parts/{run}_fold1.csv",
        paths.score_part(run, None): f"scores/parts/{run}.csv",  # inversion-audit match
        paths.rankings(run): f"rankings/{run}.csv",
        paths.utility("unet", "skull-stripped", 0): "utility/unet_skull-stripped_fold0.json",
        paths.utility("unet", "skull-stripped", 2, "dp-sgd-1"): (
            "utility/unet_skull-stripped_dp-sgd-1_fold2.json"
        ),
        paths.reid(run, 0): f"checkpoints/{run}/fold0/reid.safetensors",
        paths.crossfit(run, 0, "abc"): f"checkpoints/{run}/fold0/crossfit-abc.npz",
        paths.vae_dir("unet", "skull-stripped", 1): (
            "checkpoints/unet_skull-stripped_obfuscation/fold1/vae"
        ),
    }
    for path, rel in named.items():
        assert path == tmp_path / rel
    with pytest.raises(ValueError, match="report kind"):
        paths.report("docx")
    with pytest.raises(CohortError):
        paths.utility("unet", "../..", 0)


def test_the_index_reads_the_records_and_volumes_the_report_needs(runner_study, tmp_path):
    index = StudyIndex.open(runner_study)
    assert index.score_table() == index.score_rows
    assert index.external_record() is None and index.utility_records() == []
    assert index.reader_study_section() == [] and index.holdout_ids == frozenset()
    assert index.provenance()["inputs"]["cohort"]
    e = index.entries[0]
    original = index.read_candidate(e.variant, e.reconstruction_id)
    assert original.array.shape == index.read_reconstruction(e.run, e.reconstruction_id).shape
    assert index.read_reconstruction(e.run, "nobody") is None
    assert index.checkpoint_files(e, existing=True) == index.checkpoint_files(e)
    copy = tmp_path / "study"
    shutil.copytree(runner_study, copy, ignore=shutil.ignore_patterns("scores", "checkpoints"))
    empty = StudyIndex(copy)
    assert empty.checkpoint_files(e, existing=True) is None
    with pytest.raises(StudyError, match=r"scores[/\\]scores\.csv: scores table not found"):
        empty.score_table()
    (copy / "reader_study").mkdir()
    (copy / "reader_study" / "reader_study.md").write_text("## Reader study\n\n- 3 readers\n")
    (copy / "utility").mkdir()
    (copy / "utility" / "a_fold0.json").write_text('{"arch": "unet"}')
    (copy / "utility" / "b_fold0.json").write_text("{not json")  # left out
    assert empty.reader_study_section() == ["## Reader study", "", "- 3 readers"]
    assert empty.utility_records() == [{"arch": "unet"}]
