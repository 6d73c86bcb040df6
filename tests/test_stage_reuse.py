"""``run --reuse-from``: a study copies the stages another study finished with the same keys."""

from __future__ import annotations

import json

import pytest

from conftest import runner_study_config, write_blob_cohort
from inversion_audit.errors import StudyError
from inversion_audit.io import file_hash
from inversion_audit.study.config import study_config_from_dict
from inversion_audit.study.runner import plan_study, run_study


def _config(cohort, **extra) -> dict:
    cfg = runner_study_config(cohort)
    cfg["archs"] = ["unet"]
    cfg["folds"]["run_folds"] = [0]
    cfg["matching"] = {"metrics": ["ssim", "correlation"], "top_k": 1}
    return {**cfg, **extra}


@pytest.mark.slow
def test_defences_study_copies_the_audits_undefended_stages(tmp_path, capsys):
    from inversion_audit.cli.main import main
    from inversion_audit.study.config import dump_study_config

    cohort = write_blob_cohort(tmp_path / "cohort", {f"sub{k:02d}": k for k in range(4)})
    audit = tmp_path / "audit"
    run_study(study_config_from_dict(_config(cohort)), audit)
    audit_stages = {p.name for p in (audit / "stages").glob("*.json")}

    # the defences study: same settings plus one defence, and a changed inversion for the
    # defended runs only would change keys; here the undefended stages are identical
    defended = _config(cohort, defences=[{"kind": "latent-noise", "strengths": [1.0]}])
    config = study_config_from_dict(defended)
    out = tmp_path / "defences"
    toml = tmp_path / "defences.toml"
    toml.write_text(dump_study_config(config))
    assert main(["run", str(toml), "--out", str(out), "--reuse-from", str(audit), "--plan"]) == 0
    printed = capsys.readouterr().out
    assert "reuse " in printed and "fold0/unet_skull-stripped/target" in printed
    assert f"to copy from {audit}" in printed
    assert not out.exists() or not any(out.iterdir())  # --plan writes nothing

    run_study(config, out, reuse_from=audit)
    for name in audit_stages:
        rec = json.loads((out / "stages" / name).read_text())
        assert rec["reused_from"] == "audit", name
        for rel, digest in rec["outputs"].items():
            assert file_hash(out / rel) == digest == file_hash(audit / rel)
    provenance = json.loads((out / "provenance.json").read_text())
    reused = {n.replace("/", "__") + ".json" for n in provenance["reused_stages"]}
    assert reused == audit_stages and set(provenance["reused_stages"].values()) == {"audit"}
    ran = {p.name for p in (out / "stages").glob("*.json")} - audit_stages
    assert any("latent-noise-1" in n for n in ran)  # the defended run itself was computed
    for name in ran:
        assert "reused_from" not in json.loads((out / "stages" / name).read_text())
    assert all(done for _, done in plan_study(config, out))

    # a changed setting changes the key: that stage and everything after it run again
    other = _config(cohort)
    other["inversion"]["epochs"] = 2
    again = tmp_path / "again"
    plan = dict(plan_study(study_config_from_dict(other), again, reuse_from=audit))
    assert plan["fold0/unet_skull-stripped/target"] is True
    assert plan["fold0/unet_skull-stripped_bottleneck/inversion"] is False
    assert plan["fold0/unet_skull-stripped_bottleneck/score"] is False


def test_reuse_from_a_folder_that_is_not_a_study_fails_clearly(tmp_path):
    cfg = study_config_from_dict(_config(tmp_path / "nowhere"))
    with pytest.raises(StudyError, match="not a study folder"):
        run_study(cfg, tmp_path / "out", reuse_from=tmp_path)
