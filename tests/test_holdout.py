"""The non-member control: holdout config keys, resolution, fold assignment, guard, report section."""

from __future__ import annotations

import numpy as np
import pytest

from inversion_audit.data import Fold, load_cohort
from inversion_audit.errors import CohortError, ConfigError
from inversion_audit.study.config import study_config_from_dict
from inversion_audit.study.holdout import (
    assign_holdout,
    check_holdout_unused,
    gallery,
    resolve_holdout,
)
from inversion_audit.study.membership_report import membership_markdown, membership_summary


def _cfg(tiny_cohort, **cohort):
    return study_config_from_dict({"cohort": {"path": str(tiny_cohort), **cohort}})


def test_holdout_keys_are_checked(tiny_cohort):
    assert _cfg(tiny_cohort, holdout=["sub05"]).cohort.holdout == ["sub05"]
    with pytest.raises(ConfigError, match="give one of holdout, holdout_n"):
        _cfg(tiny_cohort, holdout=["sub05"], holdout_n=2)
    with pytest.raises(ConfigError, match="cohort.holdout_n must be in 1"):
        _cfg(tiny_cohort, holdout_n=0)
    with pytest.raises(ConfigError, match="'sub01' is also in cohort.subjects"):
        _cfg(tiny_cohort, subjects=["sub00", "sub01"], holdout=["sub01"])
    with pytest.raises(ConfigError, match="distinct"):
        _cfg(tiny_cohort, holdout=["sub05", "sub05"])


def test_resolve_holdout_ids_count_and_folder(tiny_cohort, tmp_path):
    full = load_cohort(tiny_cohort)
    protocol = full.subset(["sub00", "sub01", "sub02", "sub03"])
    cfg = _cfg(tiny_cohort, n_subjects=4, holdout_n=2)
    assert resolve_holdout(cfg, full, protocol).ids == ["sub04", "sub05"]
    assert resolve_holdout(_cfg(tiny_cohort, holdout=["sub05"]), full, protocol).ids == ["sub05"]
    assert resolve_holdout(_cfg(tiny_cohort), full, protocol) is None
    with pytest.raises(ConfigError, match="'sub02' is a protocol subject"):
        resolve_holdout(_cfg(tiny_cohort, holdout=["sub02"]), full, protocol)
    with pytest.raises(ConfigError, match="holdout_n = 3 but only 2"):
        resolve_holdout(_cfg(tiny_cohort, holdout_n=3), full, protocol)
    # a folder holdout whose ids clash with the protocol's is refused
    with pytest.raises(ConfigError, match="holdout_path: subject 'sub00'"):
        resolve_holdout(_cfg(tiny_cohort, holdout_path=str(tiny_cohort)), full, protocol)
    both = gallery(protocol, full.subset(["sub04"]))
    assert both.ids == ["sub00", "sub01", "sub02", "sub03", "sub04"]
    with pytest.raises(CohortError, match="duplicate subject ids"):
        gallery(protocol, full.subset(["sub00"]))


def test_assign_and_guard():
    folds = [Fold(0, ("a",), ("b", "c")), Fold(1, ("b",), ("a", "c")), Fold(2, ("c",), ("a", "b"))]
    assert assign_holdout(["h3", "h1", "h2", "h4"], folds) == {
        0: ["h1", "h4"],
        1: ["h2"],
        2: ["h3"],
    }
    assert assign_holdout(["h1", "h2"], folds[1:]) == {1: ["h1"], 2: ["h2"]}
    check_holdout_unused(["h1"], {"fold 0 private set": ["a"], "fold 0 attack set": ["b", "c"]})
    with pytest.raises(CohortError, match="holdout subject 'b' is in the fold 0 attack set"):
        check_holdout_unused(["b"], {"fold 0 private set": ["a"], "fold 0 attack set": ["b", "c"]})


def _rows(found_members: int, found_nonmembers: int, n_m: int = 6, n_n: int = 3):
    """scores.csv rows of one run where the first found_* of each group rank their own first."""
    ids = [f"m{i}" for i in range(n_m)] + [f"h{i}" for i in range(n_n)]
    r = np.random.default_rng(0)
    rows = []
    for a, rid in enumerate(ids):
        found = a < found_members if a < n_m else a - n_m < found_nonmembers
        for cid in ids:
            own = rid == cid
            v = (0.9 if found else 0.1) if own else r.uniform(0.2, 0.5)
            base = {"fold": 0, "arch": "unet", "variant": "skull-stripped"}
            base |= {"threat_model": "bottleneck", "reconstruction_id": rid, "candidate_id": cid}
            rows.append({**base, "metric": "ssim", "value": v})
            if own:
                psnr = 20.0 if a < n_m else 15.0  # members reconstructed better
                rows.append({**base, "metric": "psnr", "value": psnr + r.normal(0, 0.1)})
    return rows, ids[n_m:]


def test_membership_summary_and_markdown():
    rows, holdout = _rows(6, 1)
    section = membership_summary(rows, holdout, n_boot=200)
    e = section["unet_skull-stripped_bottleneck"]
    assert (e["n_members"], e["n_nonmembers"]) == (6, 3)
    c = e["metrics"]["ssim"]
    assert (c["members"]["top1"], c["nonmembers"]["top1"]) == (6, 1)
    sig = {s["signal"]: s for s in e["membership_inference"]}
    assert sig["reconstruction_error"]["auc"] == 1.0  # members all have the higher PSNR
    text = "\n".join(membership_markdown(section))
    assert "| ssim | 6/6 | 1/3 |" in text and "Membership inference" in text
    assert membership_summary(rows, []) == {}
