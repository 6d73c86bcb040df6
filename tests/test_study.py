"""The end-to-end study: layout, report numbers, interrupt-and-resume."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shutil

import numpy as np
import pytest

from conftest import make_blob_volume
from inversion_audit.errors import JobCancelled
from inversion_audit.report import run_and_report, summarize_study, write_report
from inversion_audit.study.config import study_config_from_dict
from inversion_audit.study.paper import (
    PAPER_DICE,
    PAPER_MEAN_RANK,
    PAPER_TABLE1,
    PAPER_TABLE2,
    PAPER_TABLE3,
)
from inversion_audit.study.runner import plan_study, run_study
from inversion_audit.study.score_files import read_scores
from roc_reference import sklearn_verification

pytestmark = pytest.mark.slow


#: every ranked metric of the tiny study, in the report's order
RANKED = ("ssim", "correlation", "psnr", "deformation", "ssim_brain", "correlation_brain", "fused")


def tiny_config(cohort_path, **matching) -> dict:
    return {
        "study": {"name": "tiny", "seed": 1, "device": "cpu", "threads": 1},
        "cohort": {"path": str(cohort_path)},
        "folds": {"n_folds": 2, "seed": 0},
        "variants": ["skull-stripped"],
        "archs": ["unet", "segnet"],
        "threat_models": ["bottleneck"],
        "preprocess": {"spacing": [2.0, 2.0, 2.0], "shape": [32, 32, 32], "divisible_by": 8},
        "target": {"depth": 2, "base_filters": 4, "epochs": 3, "batch_size": 1, "lr": 0.01},
        "inversion": {"epochs": 4, "batch_size": 1, "lr": 0.01},
        "matching": {"top_k": 1, "deformation_preset": "fast", **matching},
    }


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """The tiny study with every metric (deformation on the SSIM top-1, Dice), run once per module."""
    import nibabel as nib

    root = tmp_path_factory.mktemp("tiny_study")
    cohort = root / "cohort"
    cohort.mkdir()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -32
    for i in range(6):  # the same six subjects as the ``tiny_cohort`` fixture
        img, lab = make_blob_volume(seed=i)
        nib.save(
            nib.Nifti1Image((img * 1000).astype(np.float32), affine),
            cohort / f"sub{i:02d}_T1.nii.gz",
        )
        nib.save(nib.Nifti1Image(lab.astype(np.uint8), affine), cohort / f"sub{i:02d}_seg.nii.gz")
    out = root / "study"
    with pytest.MonkeyPatch.context() as mp:  # module scope: isolate the cache by hand
        mp.setenv("INVERSION_AUDIT_CACHE", str(root / "cache"))
        metrics = ["ssim", "correlation", "psnr", "deformation", "dice"]
        metrics += ["ssim_brain", "correlation_brain"]  # the opt-in brain-masked metrics too
        run_and_report(study_config_from_dict(tiny_config(cohort, metrics=metrics)), out)
    return out


def test_tiny_study_writes_every_file(tiny_study):
    out = tiny_study
    for rel in (
        "config.toml",
        "provenance.json",
        "study.log",
        "report.html",
        "report.md",
        "report.json",
        "scores/scores.csv",
    ):
        assert (out / rel).is_file(), rel
    ids = [f"sub{i:02d}" for i in range(6)]
    for arch in ("unet", "segnet"):
        run = f"{arch}_skull-stripped_bottleneck"
        for fold in (0, 1):
            for name in ("target.safetensors", "target.json"):
                assert (
                    out / "checkpoints" / f"{arch}_skull-stripped" / f"fold{fold}" / name
                ).is_file()
            for name in ("inversion.safetensors", "inversion.json"):
                assert (out / "checkpoints" / run / f"fold{fold}" / name).is_file()
        for sid in ids:
            assert (out / "reconstructions" / run / f"{sid}_recon.nii.gz").is_file()
            assert (out / "reconstructions" / run / f"{sid}_recon_pre.nii.gz").is_file()
        assert (out / "rankings" / f"{run}.csv").is_file()
        assert (
            len(list((out / "deformation" / run).glob("*_magnitude.nii.gz"))) == 6
        )  # top-1 per reconstruction
    for sid in ids:
        assert (out / "preprocessed" / "skull-stripped" / f"{sid}.nii.gz").is_file()
        assert (out / "preprocessed" / "skull-stripped" / f"{sid}_seg.nii.gz").is_file()
    rows = _read_csv(out / "scores" / "scores.csv")
    assert set(rows[0]) == {
        "fold",
        "arch",
        "variant",
        "threat_model",
        "defence",
        "reconstruction_id",
        "candidate_id",
        "metric",
        "value",
    }
    metrics = {r["metric"] for r in rows}
    assert {
        "ssim",
        "correlation",
        "psnr",
        "deformation",
        "dice_reconstruction",
        "dice_original",
        "ssim_brain",
        "correlation_brain",
    } <= metrics
    # the brain-masked metrics are SSIM and correlation inside the candidate's labels > 0
    from inversion_audit.io import read_labels, read_volume
    from inversion_audit.metrics import correlation, ssim

    run = "unet_skull-stripped_bottleneck"
    a, b = ids[0], ids[1]
    rec = read_volume(out / "reconstructions" / run / f"{a}_recon_pre.nii.gz").array
    cand = read_volume(out / "preprocessed" / "skull-stripped" / f"{b}.nii.gz").array
    brain = read_labels(out / "preprocessed" / "skull-stripped" / f"{b}_seg.nii.gz").array > 0
    assert 0 < brain.mean() < 0.9

    def value(metric: str) -> float:
        (v,) = [
            float(r["value"])
            for r in rows
            if r["arch"] == "unet" and r["metric"] == metric
            and (r["reconstruction_id"], r["candidate_id"]) == (a, b)
        ]  # fmt: skip
        return v

    assert value("ssim_brain") == pytest.approx(
        ssim(rec, cand, data_range=1.0, mask=brain), abs=1e-4
    )
    assert value("correlation_brain") == pytest.approx(correlation(rec, cand, brain), abs=1e-4)
    assert value("ssim_brain") != pytest.approx(value("ssim"), abs=1e-3)
    # every reconstruction is scored against every candidate of the cohort
    ssim_rows = [r for r in rows if r["metric"] == "ssim" and r["arch"] == "unet"]
    assert len(ssim_rows) == 36
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["versions"]["torch"] and prov["seeds"]["study"] == 1 and prov["finished"]
    assert prov["inputs"]["files"]["sub00"]["image"] and prov["stage_seconds"]
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Table 3" in html


def _md_table(md: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of the Markdown table under ``heading``."""
    block = md.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return cells[0], cells[2:]


# -- expected values, recomputed from scores.csv without the package's ranking code --------------
def _run_name(r: dict) -> str:
    tag = f"_{r['defence']}" if r.get("defence") else ""
    return f"{r['arch']}_{r['variant']}_{r['threat_model'].replace('+', '-')}{tag}"


def _msd(values: list[float]) -> tuple[float, float] | None:
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _row_ranks(row: dict[str, float], higher: bool) -> dict[str, float]:
    """Average-tie rank (1 = best) of every scored candidate of one reconstruction."""
    sign = 1 if higher else -1
    out = {}
    for c, v in row.items():
        better = sum(sign * w > sign * v for w in row.values())
        ties = sum(w == v for w in row.values()) - 1
        out[c] = 1 + better + ties / 2
    return out


def _by_rec(vals: dict[tuple[str, str], float]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for (a, c), v in vals.items():
        out.setdefault(a, {})[c] = v
    return out


def _retrieval(vals: dict[tuple[str, str], float], higher: bool, auc: bool = True) -> dict:
    rank_of = {
        rec: _row_ranks(row, higher)[rec]
        for rec, row in sorted(_by_rec(vals).items())
        if rec in row
    }
    ranks = list(rank_of.values())
    n = len(ranks)
    top1 = sum(k == 1 for k in ranks)
    pos = [v for (a, c), v in vals.items() if a == c]
    neg = [v for (a, c), v in vals.items() if a != c]
    sign = 1 if higher else -1
    pairs = [1.0 if sign * p > sign * q else 0.5 if p == q else 0.0 for p in pos for q in neg]
    return {
        "top1": top1,
        "top5": sum(k <= 5 for k in ranks),
        "n": n,
        "mean_rank": float(np.mean(ranks)) if n else None,
        "mrr": float(np.mean([1 / k for k in ranks])) if n else None,
        "precision_at_1": top1 / n if n else None,
        "auc": float(np.mean(pairs)) if auc and pairs else None,
        "tpr_at_1pct_fpr": sklearn_verification(vals, higher)[1] if auc and pairs else None,
        "rank_of": rank_of,
    }


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval by its formula."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def _fused(ssim: dict, deform: dict) -> dict[tuple[str, str], float]:
    """Mean of the SSIM rank and (where computed) the deformation rank of every candidate."""
    out = {}
    d_rows = _by_rec(deform)
    for rec, row in _by_rec(ssim).items():
        s_rank = _row_ranks(row, True)
        d_rank = _row_ranks(d_rows.get(rec, {}), False)
        for c in row:
            out[(rec, c)] = float(np.mean([s_rank[c]] + ([d_rank[c]] if c in d_rank else [])))
    return out


def _expected(rows: list[dict]) -> dict[str, dict]:
    runs: dict[str, list[dict]] = {}
    for r in rows:
        runs.setdefault(_run_name(r), []).append(r)
    out = {}
    for run, rr in runs.items():
        vals: dict[str, dict[tuple[str, str], float]] = {}
        for r in rr:
            vals.setdefault(r["metric"], {})[(r["reconstruction_id"], r["candidate_id"])] = float(
                r["value"]
            )

        def own(metric: str, vals: dict = vals) -> list[float]:
            return [v for (a, c), v in vals.get(metric, {}).items() if a == c]

        table3 = {
            m: _retrieval(vals[m], higher)
            for m, higher in (
                ("ssim", True),
                ("correlation", True),
                ("psnr", True),
                ("deformation", False),
                ("ssim_brain", True),
                ("correlation_brain", True),
            )
            if m in vals
        }
        if "ssim" in vals and "deformation" in vals:
            table3["fused"] = _retrieval(
                _fused(vals["ssim"], vals["deformation"]), False, auc=False
            )
        by_ssim = sorted(
            ((a, v) for (a, c), v in vals["ssim"].items() if a == c), key=lambda x: (-x[1], x[0])
        )
        out[run] = {
            "arch": rr[0]["arch"],
            "variant": rr[0]["variant"],
            "n": len(own("ssim")),
            "table1": {m: _msd(own(m)) for m in ("correlation", "ssim", "psnr")},
            "table2": (
                float(np.mean(own("ssim"))),
                float(np.mean([v for (a, c), v in vals["ssim"].items() if a != c])),
            ),
            "table3": table3,
            "dice": {k: _msd(own(f"dice_{k}")) for k in ("original", "reconstruction")}
            if "dice_original" in vals
            else None,
            "cases": {
                "best": by_ssim[0],
                "median": by_ssim[len(by_ssim) // 2],
                "worst": by_ssim[-1],
            },
            "own_deformation": {a for (a, c) in vals.get("deformation", {}) if a == c},
            "fold_of": {r["reconstruction_id"]: int(r["fold"]) for r in rr},
        }
    return out


def _check_pm(cell: str, expected: tuple[float, float] | None, digits: int = 3) -> None:
    """A ``mean ± sd`` cell against the expected pair (``–`` when there is none)."""
    if expected is None:
        assert cell == "–"
        return
    m = re.fullmatch(r"(-?\d+\.\d+) ± (-?\d+\.\d+)", cell)
    assert m, cell
    assert len(m[1].split(".")[1]) == digits
    tol = 0.5 * 10**-digits + 1e-9
    assert float(m[1]) == pytest.approx(expected[0], abs=tol)
    assert float(m[2]) == pytest.approx(expected[1], abs=tol)


def _check_num(cell: str, expected: float | None, digits: int) -> None:
    """A number cell with ``digits`` decimals (0: an integer) against ``expected``."""
    if expected is None:
        assert cell == "–"
        return
    assert re.fullmatch(r"-?\d+" + (rf"\.\d{{{digits}}}" if digits else ""), cell), cell
    assert float(cell) == pytest.approx(expected, abs=0.5 * 10**-digits + 1e-9)


def _paper_pair(d: dict | None) -> tuple[float, float] | None:
    return None if d is None else (d["mean"], d["sd"])


def test_report_tables_parse_back_to_scores(tiny_study):
    """Every number of Tables 1-3 and Dice in report.md and report.json matches scores.csv."""
    out = tiny_study
    rows = _read_csv(out / "scores" / "scores.csv")
    exp = _expected(rows)
    assert set(exp) == {"unet_skull-stripped_bottleneck", "segnet_skull-stripped_bottleneck"}
    md = (out / "report.md").read_text()
    doc = json.loads(
        (out / "report.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"report.json holds {c}"),
    )
    runs = doc["runs"]
    assert set(runs) == set(exp)
    tables = {}
    for key, heading in (
        ("table1", "## Table 1"),
        ("table2", "## Table 2"),
        ("table3", "## Table 3"),
        ("per_fold", "## Identification per fold"),
        ("dice", "## Dice"),
    ):
        header, body = _md_table(md, heading)
        assert doc["tables"][key]["columns"] == header
        assert doc["tables"][key]["rows"] == body  # the JSON holds the very same cells
        tables[key] = body

    # Table 1: n, correlation, SSIM, PSNR (mean ± sd over reconstructions), paper columns
    assert sorted(r[0] for r in tables["table1"]) == sorted(exp)
    for row in tables["table1"]:
        e, j = exp[row[0]], runs[row[0]]
        assert len(row) == 7
        _check_num(row[1], e["n"], 0)
        assert j["table1"]["ssim"]["n"] == e["n"]
        for cell, metric in zip(row[2:5], ("correlation", "ssim", "psnr"), strict=True):
            _check_pm(cell, e["table1"][metric])
            assert (j["table1"][metric]["mean"], j["table1"][metric]["sd"]) == pytest.approx(
                e["table1"][metric], rel=1e-9, abs=1e-12
            )
        paper = PAPER_TABLE1.get((e["arch"], e["variant"]))
        _check_pm(row[5], paper and paper["correlation"], 2)
        _check_pm(row[6], paper and paper["ssim"], 2)
        assert _paper_pair(j["paper"]["table1"]["ssim"]) == paper["ssim"]

    # Table 2: SSIM with own original vs with all other subjects
    assert sorted(r[0] for r in tables["table2"]) == sorted(exp)
    for row in tables["table2"]:
        e, j = exp[row[0]], runs[row[0]]
        assert len(row) == 5
        _check_num(row[1], e["table2"][0], 3)
        _check_num(row[2], e["table2"][1], 3)
        assert (j["table2"]["own"], j["table2"]["others"]) == pytest.approx(e["table2"], rel=1e-9)
        paper = PAPER_TABLE2[e["arch"]]
        _check_num(row[3], paper[0], 2)
        _check_num(row[4], paper[1], 2)
        assert (j["paper"]["table2"]["own"], j["paper"]["table2"]["others"]) == paper

    # Table 3: per metric (deformation and fused included) top-1, top-5, n, mean rank, MRR, P@1,
    # AUC and TPR at 1% FPR over every pair of the run
    assert doc["tables"]["table3"]["columns"][9:11] == ["AUC", "TPR@1% FPR"]
    assert "every (reconstruction, candidate) pair" in doc["tables"]["table3"]["note"]
    seen = {(r[0], r[1]) for r in tables["table3"]}
    assert seen == {(run, m) for run, e in exp.items() for m in e["table3"]}
    assert {m for _, m in seen} == set(RANKED)
    assert len(tables["table3"]) == len(seen)
    for row in tables["table3"]:
        e, metric = exp[row[0]], row[1]
        t, j = e["table3"][metric], runs[row[0]]["table3"][metric]
        assert len(row) == 13
        lo, hi = _wilson(t["top1"], t["n"])
        assert row[3] == f"{100 * lo:.0f}–{100 * hi:.0f}%"
        assert j["top1_ci95"] == pytest.approx([lo, hi], abs=1e-9)
        for cell, key, digits in (
            (row[2], "top1", 0),
            (row[4], "top5", 0),
            (row[5], "n", 0),
            (row[6], "mean_rank", 2),
            (row[7], "mrr", 3),
            (row[8], "precision_at_1", 3),
            (row[9], "auc", 3),
            (row[10], "tpr_at_1pct_fpr", 3),
        ):
            _check_num(cell, t[key], digits)
            expected = None if t[key] is None else pytest.approx(t[key], rel=1e-9)
            assert j[key] == expected, (row[0], metric, key)
        paper_top1 = PAPER_TABLE3[e["arch"]].get(metric)
        paper_rank = PAPER_MEAN_RANK[e["arch"]].get(metric)
        assert row[11] == ("–" if paper_top1 is None else str(paper_top1))
        assert row[12] == ("–" if paper_rank is None else str(paper_rank))
        assert j["n"] == t["n"]

    # per fold: top-1 of n for every ranked metric, from the reconstructions of that fold
    header = doc["tables"]["per_fold"]["columns"]
    assert header[:2] == ["run", "fold"]
    assert header[2:] == list(RANKED)
    expected_rows = {
        (run, str(fold)) for run, e in exp.items() for fold in set(e["fold_of"].values())
    }
    assert {(r[0], r[1]) for r in tables["per_fold"]} == expected_rows
    assert len(tables["per_fold"]) == len(expected_rows) >= 4  # 2 folds x 2 runs
    for row in tables["per_fold"]:
        e = exp[row[0]]
        for cell, metric in zip(row[2:], header[2:], strict=True):
            ranks = [
                k for rec, k in e["table3"][metric]["rank_of"].items()
                if str(e["fold_of"][rec]) == row[1]
            ]  # fmt: skip
            assert cell == f"{sum(k == 1 for k in ranks)} of {len(ranks)}", (row, metric)
            assert runs[row[0]]["folds"][row[1]][metric] == {
                "top1": sum(k == 1 for k in ranks),
                "n": len(ranks),
            }

    # Dice of the target network on originals and on reconstructions
    assert sorted(r[0] for r in tables["dice"]) == sorted(exp)
    for row in tables["dice"]:
        e, j = exp[row[0]], runs[row[0]]
        assert len(row) == 5
        for cell, kind in zip(row[1:3], ("original", "reconstruction"), strict=True):
            _check_pm(cell, e["dice"][kind])
            assert (j["dice"][kind]["mean"], j["dice"][kind]["sd"]) == pytest.approx(
                e["dice"][kind], rel=1e-9, abs=1e-12
            )
        paper = PAPER_DICE[e["arch"]]
        _check_num(row[3], paper[0], 2)
        _check_num(row[4], paper[1], 2)
        assert (j["paper"]["dice"]["original"], j["paper"]["dice"]["reconstruction"]) == paper

    # best/median/worst cases and the plain-language summary are in the JSON too
    for run, e in exp.items():
        for label, (sid, value) in e["cases"].items():
            case = runs[run]["cases"][label]
            assert case["id"] == sid and case["ssim"] == pytest.approx(value, rel=1e-9)
    summary = md.split("## Summary", 1)[1].split("\n## ", 1)[0]
    items = [ln[2:].replace("**", "") for ln in summary.splitlines() if ln.startswith("- ")]
    assert len(items) == len(exp) and doc["summary_text"] == items
    assert doc["paper_source"] in md
    assert summarize_study(read_scores(out / "scores" / "scores.csv"))["runs"].keys() == set(exp)


def test_report_html_is_self_contained_with_case_figures(tiny_study):
    """report.html loads nothing from outside; best/median/worst figures exist per run."""
    out = tiny_study
    page = (out / "report.html").read_text()
    doc = json.loads((out / "report.json").read_text())
    links = re.findall(r"""\b(?:src|href)\s*=\s*['"]?([^'"\s>]*)""", page)
    ids = set(re.findall(r"""\bid\s*=\s*['"]([^'"]*)""", page))
    # images embedded; links only to the page's own headings (contents, verdict, advice)
    assert links and all(
        u.startswith("data:image/png;base64,") or (u.startswith("#") and u[1:] in ids)
        for u in links
    ), links[:3]
    assert not re.search(r"https?://", page)
    assert not re.search(r"<(?:link|script|iframe)\b", page)
    exp = _expected(_read_csv(out / "scores" / "scores.csv"))
    for run, e in exp.items():
        for label, (sid, _) in e["cases"].items():
            key = f"case_{label}_{run}"
            assert re.search(
                rf"id='figure-{key}'><img alt='[^']+' src='data:image/png;base64,", page
            ), key
            assert key in doc["figures"] and sid in doc["figures"][key]
            case = doc["runs"][run]["cases"][label]
            assert case["figure"] == key
            source = case["deformation_display"]["source"]
            if sid in e["own_deformation"]:  # the scoring stage stored the own-pair map
                assert source == "scores"
            else:  # registered at report time for display only
                assert source == "computed for display"
                assert "computed for display" in doc["figures"][key]
            assert "Deformation magnitude" in doc["figures"][key]


def test_report_deformation_panel_for_display_only(tiny_study, tmp_path, monkeypatch):
    """Without stored own-pair maps the report registers for display only (the study's
    register_candidate on its scoring mask), or says why not."""
    import inversion_audit.matching.pipeline as pipeline

    study = tmp_path / "study"
    shutil.copytree(tiny_study, study, ignore=shutil.ignore_patterns("deformation"))
    scores = (study / "scores" / "scores.csv").read_bytes()
    before = (study / "report.json").read_text()
    write_report(study)
    doc = json.loads((study / "report.json").read_text())
    assert doc["runs"].keys() == json.loads(before)["runs"].keys()
    for run, entry in doc["runs"].items():
        for label, case in entry["cases"].items():
            shown = case["deformation_display"]
            assert shown["source"] == "computed for display", (run, label, shown)
            assert shown["mean_mm"] > 0 and shown["preset"] == "fast"
            assert "computed for display" in doc["figures"][f"case_{label}_{run}"]
    # scores, ranks and study folders are untouched
    assert (study / "scores" / "scores.csv").read_bytes() == scores
    assert not (study / "deformation").exists()
    assert doc["tables"] == json.loads(before)["tables"]

    def broken(*args, **kwargs):
        raise RuntimeError("registration exploded")

    monkeypatch.setattr(pipeline, "register_candidate", broken)
    write_report(study)
    doc = json.loads((study / "report.json").read_text())
    for run, entry in doc["runs"].items():
        for label, case in entry["cases"].items():
            shown = case["deformation_display"]
            assert shown["source"] == "not available"
            assert "registration exploded" in shown["note"]
            assert "not available" in doc["figures"][f"case_{label}_{run}"]
    assert "registration exploded" in (study / "report.html").read_text()


def test_case_slices_use_radiological_orientation():
    """RAS arrays: patient's right and anterior/superior land where a radiologist expects them."""
    from inversion_audit.report.case_figure import ORIENTATIONS, display_slice

    vol = np.zeros((5, 6, 7))
    vol[4, :, :] += 1  # patient's right (axis 0 runs left -> right)
    vol[:, 5, :] += 2  # anterior
    vol[:, :, 6] += 4  # superior
    planes = {name: display_slice(vol, axis, 2) for name, axis, _ in ORIENTATIONS}
    assert planes["axial"].shape == (6, 5) and planes["coronal"].shape == (7, 5)
    assert planes["sagittal"].shape == (7, 6)
    # axial: right on the viewer's left, anterior at the top
    assert planes["axial"][3, 0] == 1 and planes["axial"][0, 2] == 2
    # coronal: right on the left, superior at the top
    assert planes["coronal"][3, 0] == 1 and planes["coronal"][0, 2] == 4
    # sagittal: anterior on the left, superior at the top
    assert planes["sagittal"][3, 0] == 2 and planes["sagittal"][0, 3] == 4
    assert [letters for *_, letters in ORIENTATIONS] == [
        ("A", "P", "S", "I"),
        ("R", "L", "S", "I"),
        ("R", "L", "A", "P"),
    ]


def test_interrupt_and_resume_gives_identical_results(tiny_cohort, tmp_path):
    cfg = study_config_from_dict(tiny_config(tiny_cohort, metrics=["ssim", "correlation"]))
    cfg = dataclasses.replace(cfg, archs=["unet"])
    seen = []

    def stop_in_second_fold(done, total, stage):
        seen.append(stage)
        if stage.startswith("fold 1"):
            raise JobCancelled("interrupted by the test")

    out = tmp_path / "interrupted"
    with pytest.raises(JobCancelled):
        run_study(cfg, out, progress=stop_in_second_fold)
    assert any(s.startswith("fold 0") for s in seen)
    assert not (out / "scores" / "scores.csv").exists()
    done_before = {p.name for p in (out / "stages").iterdir()}
    assert any("fold0" in n and "score" in n for n in done_before)
    # the dry-run plan agrees: fold 0 and preprocessing done, every fold-1 stage to run
    plan = plan_study(cfg, out)
    assert plan and all(done == (not name.startswith("fold1")) for name, done in plan)
    resumed = []
    run_study(cfg, out, progress=lambda d, t, s: resumed.append(s))
    assert all(done for _, done in plan_study(cfg, out))
    assert not any(s.startswith("fold 0") for s in resumed)  # fold 0 was not redone
    fresh = tmp_path / "fresh"
    run_study(cfg, fresh)
    # the study layer ranks; the report is the front doors' (report.run_and_report)
    assert (fresh / "rankings" / "unet_skull-stripped_bottleneck.csv").is_file()
    assert not (fresh / "report.md").exists()
    assert (out / "scores" / "scores.csv").read_text() == (
        fresh / "scores" / "scores.csv"
    ).read_text()
    # a changed matching setting re-runs only the scoring stages
    changed = dataclasses.replace(cfg, matching=type(cfg.matching)(metrics=["ssim"], top_k=1))
    assert {n for n, done in plan_study(changed, out) if not done} == {
        n for n, _ in plan if n.endswith("/score")
    }
    again = []
    run_study(changed, out, progress=lambda d, t, s: again.append(s))
    assert again and not any("train" in s or "reconstruct" in s for s in again)


def test_summary_survives_a_reconstruction_without_deformation_rows():
    # a constant reconstruction is skipped by deformation: it has SSIM rows but none of deformation
    ids = ["a", "b", "c"]
    rows = []
    for i, rid in enumerate(ids):
        for j, cid in enumerate(ids):
            base = {"fold": 0, "arch": "unet", "variant": "skull-stripped"}
            base |= {"threat_model": "bottleneck", "reconstruction_id": rid, "candidate_id": cid}
            rows.append({**base, "metric": "ssim", "value": 0.9 if i == j else 0.5 + 0.1 * j})
            if rid != "c":
                rows.append({**base, "metric": "deformation", "value": 1.0 if i == j else 3.0})
    summary = summarize_study(rows)
    t3 = summary["runs"]["unet_skull-stripped_bottleneck"]["table3"]
    assert t3["ssim"]["top1"] == 3
    assert t3["deformation"]["top1"] == 2  # "c" has no deformation rank
    assert t3["fused"]["top1"] == 3  # SSIM alone ranks "c" first


def test_run_command_plan_quiet_and_bad_config(tiny_cohort, tmp_path, capsys):
    from inversion_audit.cli.main import main
    from inversion_audit.study.config import dump_study_config

    data = tiny_config(tiny_cohort, metrics=["ssim", "correlation"])
    data.update(archs=["segnet"], target={**data["target"], "epochs": 1})
    data["inversion"]["epochs"] = 1
    config = tmp_path / "tiny.toml"
    config.write_text(dump_study_config(study_config_from_dict(data)))
    out = tmp_path / "study"
    assert main(["run", str(config), "--out", str(out), "--plan"]) == 0
    printed = capsys.readouterr().out
    assert "0 of 9 stages done" in printed and not out.joinpath("stages").exists()
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert f"report: {(out / 'report.html').resolve()}" in captured.out
    assert "Plugins > Inversion Audit > Review" in captured.out
    assert "train-target" not in captured.err and "it/s" not in captured.err  # --quiet: no bars
    assert main(["run", str(config), "--out", str(out), "--plan"]) == 0
    printed = capsys.readouterr().out
    assert "9 of 9 stages done" in printed and "left at the pace" not in printed
    # every finished stage shows its recorded time
    timed = [ln for ln in printed.splitlines() if re.match(r"done\s+\d+\.\d min  \S", ln)]
    assert len(timed) == 9


def test_verification_roc_matches_the_pairwise_auc(tiny_study):
    import json

    from inversion_audit.report.figures import roc_curve

    rng = np.random.default_rng(3)
    own, others = rng.normal(1, 1, 12), rng.normal(0, 1, 40)
    for higher, sign in ((True, 1), (False, -1)):
        fpr, tpr = roc_curve(list(sign * own), list(sign * others), higher)
        area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
        pairwise = np.mean([(a > b) + 0.5 * (a == b) for a in own for b in others])
        assert area == pytest.approx(pairwise)
        assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    report = json.loads((tiny_study / "report.json").read_text())
    for run in report["runs"]:
        assert "verification ROC" in report["figures"][f"roc_{run}"]
