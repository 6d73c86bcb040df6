"""A study config parsed once into typed, frozen tables: seeds filled from ``study.seed``,
errors naming the file and the key, the config written back as it was read, and the keys
added later (the decoder's convergence, the registration backend and threads) outside the
stage keys while they keep their defaults."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path

import pytest

from inversion_audit.errors import ConfigError
from inversion_audit.models import ARCHITECTURES
from inversion_audit.study.config import (
    StudyConfig,
    apply_overrides,
    dump_study_config,
    load_study_config,
    registration_workers,
    study_config_from_dict,
)
from inversion_audit.study.config_sections import (
    CohortSection,
    FoldsSection,
    MatchingSection,
    StudySection,
)
from inversion_audit.study.config_tables import InversionTable

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
COHORT = {"cohort": {"path": "sample"}}


def _write(tmp_path, text: str) -> Path:
    p = tmp_path / "study.toml"
    p.write_text(text)
    return p


def _config(**tables) -> StudyConfig:
    return study_config_from_dict({**COHORT, **tables})


def test_every_table_is_typed_and_frozen():
    cfg = _config(
        target={"epochs": 3},
        inversion={"epochs": 2},
        reid={"epochs": 5},
        defences=[{"kind": "latent-noise", "strengths": [1]}],
    )
    for table, name in (
        (cfg, "study"),
        (cfg.study, "seed"),
        (cfg.matching, "threads"),
        (cfg.target, "settings"),
        (cfg.target.settings, "epochs"),
        (cfg.inversion, "patience"),
        (cfg.inversion.settings, "epochs"),
        (cfg.reid.settings, "epochs"),
        (cfg.defences[0], "kind"),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(table, name, None)
    assert cfg.target.config("segnet").arch == "segnet" and cfg.target.config("unet").epochs == 3
    assert cfg.inversion.config("bottleneck+skips").threat_model == "bottleneck+skips"
    assert cfg.reid.settings.epochs == 5
    assert cfg.model is None and not cfg.defences[1:]


def test_seeds_are_filled_once_from_the_study_seed():
    cfg = _config(
        study={"seed": 7},
        reid={},
        defences=[
            {"kind": "latent-noise", "strengths": [1]},
            {"kind": "obfuscation", "strengths": [8], "seed": 3},
            {"kind": "dp-sgd", "strengths": [1.0]},
        ],
    )
    assert (cfg.target.seed, cfg.inversion.seed, cfg.reid.seed) == (7, 7, 7)
    assert cfg.target.config("segnet").seed == cfg.inversion.config("bottleneck").seed == 7
    noise, obfuscation, dp = cfg.defences
    assert noise.params["seed"] == 7 and noise.settings()[0].latent_noise()["seed"] == 7
    assert obfuscation.settings()[0].obfuscation()["seed"] == 3  # its own seed is kept
    assert "seed" not in dp.params  # DP-SGD draws with the target's seed
    # a table's own seed wins; the study's seed fills the others
    given = _config(study={"seed": 7}, target={"seed": 2}, inversion={"seed": 4})
    assert (given.target.seed, given.inversion.seed, given.reid.seed) == (2, 4, 7)
    # a new study seed fills the seeds the tables do not give, and no other
    again = dataclasses.replace(given, study=dataclasses.replace(given.study, seed=9))
    assert (again.target.seed, again.inversion.seed, again.reid.seed) == (2, 4, 9)
    # the filled seeds are not written back: config.toml is the config as written
    assert "seed" not in cfg.to_dict()["target"] and cfg.to_dict()["reid"] == {}
    assert "seed" not in cfg.to_dict()["defences"][0]


def test_a_config_built_in_code_gets_the_study_seed():
    cfg = StudyConfig(study=StudySection(seed=5, device="cpu", threads=2))
    assert (cfg.target.seed, cfg.inversion.seed, cfg.reid.seed) == (5, 5, 5)


def _as_the_old_code_wrote(data: dict) -> dict:
    """What ``config.toml`` held for ``data`` before the tables were typed: every section's
    fields (defaults filled, unset ones left out), every other table as written."""
    sections = {
        "study": StudySection,
        "cohort": CohortSection,
        "folds": FoldsSection,
        "matching": MatchingSection,
    }
    out: dict = {}
    for key, cls in sections.items():
        out[key] = {**dataclasses.asdict(cls()), **data.get(key, {})}
    out["variants"] = data.get("variants", ["skull-stripped"])
    out["archs"] = data.get("archs", list(ARCHITECTURES))
    out["threat_models"] = data.get("threat_models", ["bottleneck"])
    for key in ("preprocess", "variant_preprocess", "target", "inversion"):
        out[key] = data.get(key, {})
    out["reid"] = data.get("reid", {})
    for key in ("defences", "model"):
        if data.get(key):
            out[key] = data[key]
    for key in ("registration", "threads"):  # added later: written only when set
        if key not in data.get("matching", {}):
            del out["matching"][key]
    order = ["study", "cohort", "folds", "variants", "archs", "threat_models", "preprocess"]
    order += ["variant_preprocess", "target", "inversion", "matching", "reid", "defences", "model"]
    return {
        k: {f: v for f, v in out[k].items() if v is not None}
        if isinstance(out[k], dict)
        else out[k]
        for k in order
        if k in out
    }


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.toml")))
def test_the_config_is_written_back_as_it_was_read(name):
    data = tomllib.loads((CONFIGS / name).read_text())
    data.setdefault("cohort", {"path": "sample"})
    cfg = study_config_from_dict(data)
    expected = _as_the_old_code_wrote(data)
    assert cfg.to_dict() == expected
    assert list(cfg.to_dict()) == list(expected)  # the same order: the same TOML text
    text = dump_study_config(cfg)
    assert dump_study_config(study_config_from_dict(tomllib.loads(text))) == text


def test_the_shipped_configs_leave_threads_to_auto():
    for path in CONFIGS.glob("*.toml"):
        assert not re.search(r"^threads\s*=\s*\d", path.read_text(), re.M), path.name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[inversion]\nvalidation_fraction = 0.5",
            r"inversion\.validation_fraction must be in \[0, 0\.5\)",
        ),
        ("[inversion]\nvalidation_fraction = -0.1", r"inversion\.validation_fraction must be in"),
        (
            "[inversion]\nvalidation_fraction = 'x'",
            r"inversion\.validation_fraction must be a number",
        ),
        ("[inversion]\npatience = -1", r"inversion\.patience must be in 0\.\."),
        ("[inversion]\npatience = 1.5", r"inversion\.patience must be an integer"),
        ("[inversion]\nvalidation_fraction = 0.2\nmin_delta = -1", r"inversion\.min_delta must be"),
        ("[inversion]\nmin_delta = true", r"inversion\.min_delta must be a number"),
        (
            "[inversion]\nlr_schedule = 'step'",
            r"inversion\.lr_schedule must be one of none, plateau",
        ),
        ("[inversion]\npatience = 3", r"inversion\.patience .*validation_fraction > 0"),
        ("[inversion]\nlr_schedule = 'plateau'", r"inversion\.lr_schedule 'plateau'.*validation"),
        ("[inversion]\npatiense = 3", r"unknown inversion key\(s\): patiense"),
        ("[inversion]\nepochs = 'ten'", r"inversion\.epochs must be an integer"),
        ("[inversion]\nthreat_model = 'skips'", r"inversion\.threat_model must be one of"),
        ("[target]\nepochs = 0", r"target\.epochs must be in 1\.\."),
        ("[target]\narch = 'resnet'", r"target\.arch must be one of"),
        ("[reid]\nepochs = 0", r"reid\.epochs must be an integer in"),
        ("[reid]\nmode = 'slices'", r"reid\.mode must be"),
        (
            "[matching]\nregistration = 'elastix'",
            r"matching\.registration must be one of ants, greedy",
        ),
        ("[matching]\nregistration = 3", r"matching\.registration must be a string"),
        (
            "[matching]\nregistration = 'greedy'\ndeformation_preset = 'paper'",
            r"matching\.deformation_preset must be fast with registration 'greedy'",
        ),
        ("[matching]\nthreads = 'many'", r"matching\.threads must be 'auto' or an integer"),
        ("[matching]\nthreads = 0", r"matching\.threads must be in 1\.\.4096"),
        ("[matching]\nthreads = true", r"matching\.threads must be an integer or a string"),
        ("[study]\nseed = 5000000000\n[reid]\nmode = 'volume'", r"reid\.seed must be an integer"),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_study_config(_write(tmp_path, f'{text}\n[cohort]\npath = "sample"\n'))
    assert str(err.value).startswith(f"{tmp_path / 'study.toml'}: ")


def test_the_new_keys_have_defaults_and_are_written_only_when_set(tmp_path):
    cfg = _config()
    assert cfg.inversion.training_kwargs() == {
        "validation_fraction": 0.0,
        "patience": 0,
        "min_delta": 0.0,
        "lr_schedule": "none",
    }
    assert (cfg.matching.registration, cfg.matching.threads) == ("ants", "auto")
    assert "threads" not in cfg.to_dict()["matching"] and cfg.to_dict()["inversion"] == {}
    text = (
        '[cohort]\npath = "sample"\n'
        "[inversion]\nvalidation_fraction = 0.25\npatience = 4\nmin_delta = 1e-4\n"
        'lr_schedule = "cosine"\n'
        '[matching]\nregistration = "greedy"\nthreads = "auto"\n'
    )
    set_ = load_study_config(_write(tmp_path, text))
    assert set_.inversion.training_kwargs() == {
        "validation_fraction": 0.25,
        "patience": 4,
        "min_delta": 1e-4,
        "lr_schedule": "cosine",
    }
    assert set_.to_dict()["matching"]["registration"] == "greedy"
    assert "threads" not in set_.to_dict()["matching"]  # "auto" is the default
    assert set_.to_dict()["inversion"]["patience"] == 4
    counted = _config(matching={"threads": 3})
    assert counted.matching.threads == 3 and counted.to_dict()["matching"]["threads"] == 3
    # an int where a float goes is a float
    assert isinstance(
        _config(inversion={"validation_fraction": 0}).inversion.validation_fraction, float
    )


def test_stage_keys_hold_the_new_keys_only_when_not_their_defaults():
    plain = _config(inversion={"epochs": 2})
    assert plain.inversion.stage_key("bottleneck") == plain.inversion.config("bottleneck").to_dict()
    # the score stage's key: the section as before the keys were added
    assert plain.matching.stage_key() == {
        "metrics": ["ssim", "correlation", "psnr", "deformation", "dice"],
        "top_k": 5,
        "deformation_preset": "fast",
        "scheduler": None,
        "n_workers": None,
    }
    early = _config(inversion={"epochs": 2, "validation_fraction": 0.2, "patience": 3})
    assert early.inversion.stage_key("bottleneck") == {
        **plain.inversion.config("bottleneck").to_dict(),
        "validation_fraction": 0.2,
        "patience": 3,
    }
    greedy = _config(matching={"registration": "greedy", "threads": 8})
    assert greedy.matching.stage_key() == {**plain.matching.stage_key(), "registration": "greedy"}
    # the thread count changes no number: no stage key holds it
    assert _config(matching={"threads": 8}).matching.stage_key() == plain.matching.stage_key()


def test_overrides_apply_in_one_place_and_none_keeps_the_config(monkeypatch):
    import inversion_audit.devices as devices

    monkeypatch.setattr(devices, "cpu_count", lambda: 6)
    cfg = _config(study={"device": "cpu"})
    assert apply_overrides(cfg) is cfg and apply_overrides(cfg, None, None) is cfg
    assert registration_workers(cfg) == 6  # "auto": every core
    capped = _config(study={"threads": 2})
    assert registration_workers(capped) == 2  # "auto" under study.threads
    assert registration_workers(_config(study={"threads": 2}, matching={"threads": 4})) == 4
    over = apply_overrides(cfg, device="cuda", threads=3)
    assert (over.study.device, over.study.threads, over.matching.threads) == ("cuda", 3, 3)
    assert registration_workers(over) == 3
    assert over.target.seed == cfg.target.seed and over.inversion == cfg.inversion
    assert apply_overrides(cfg, device="mps").matching == cfg.matching


def test_a_validation_split_needs_two_attack_subjects():
    from inversion_audit.data import Fold
    from inversion_audit.study.plan import _check_validation_split

    cfg = _config(inversion={"validation_fraction": 0.2})
    _check_validation_split(cfg, [Fold(0, ("a",), ("b", "c"))], None)
    with pytest.raises(ConfigError, match=r"inversion\.validation_fraction = 0\.2: fold 1"):
        _check_validation_split(cfg, [Fold(1, ("a",), ("b",))], None)
    _check_validation_split(_config(), [Fold(1, ("a",), ("b",))], None)  # no split: fine


def test_provenance_records_the_seeds_and_the_resolved_settings():
    from inversion_audit.study.provenance import Provenance

    cfg = _config(study={"seed": 4, "threads": 2}, target={"seed": 1})
    data = Provenance(cfg, "cpu").data
    assert data["config"] == cfg.to_dict()
    assert data["seeds"] == {"study": 4, "folds": 0, "target": 1, "inversion": 4}
    assert data["settings"]["inversion"] == InversionTable().training_kwargs()
    assert data["settings"]["matching"] == {
        "registration": "ants",
        "threads": "auto",
        "registration_workers": 2,
    }
    assert "settings" not in Provenance(cfg.to_dict(), "cpu").data  # a record alone


def test_model_and_defences_tables_are_written_as_read():
    model = {"source": "monai", "path": "w.safetensors", "network": "BasicUNet", "members": ["a"]}
    defences = [{"kind": "obfuscation", "strengths": [16, 8], "knows_domain": [False, True]}]
    cfg = _config(model=model, defences=defences)
    assert cfg.model is not None and cfg.model.members == ("a",)
    assert cfg.to_dict()["model"] == model and cfg.to_dict()["defences"] == defences
    assert cfg.defences[0].strengths == (16.0, 8.0)


@pytest.mark.slow
def test_the_inversion_stage_trains_with_the_tables_convergence_settings(tmp_path):
    """The study's decoder training gets ``[inversion]``'s convergence settings, and its
    stage key changes with them (a study without them keeps its key)."""
    from conftest import runner_study_config, write_blob_cohort
    from inversion_audit.study.runner import plan_study, run_study

    cohort = write_blob_cohort(tmp_path / "cohort", {f"sub-{k:03d}": k for k in range(6)})
    data = runner_study_config(cohort)
    data["archs"], data["folds"]["run_folds"] = ["unet"], [0]
    data["matching"] = {"metrics": ["ssim"], "top_k": 1}
    plain = study_config_from_dict(data)
    data["inversion"].update(epochs=2, validation_fraction=0.34, patience=1, lr_schedule="plateau")
    converging = study_config_from_dict(data)
    out = run_study(converging, tmp_path / "study")
    sidecar = json.loads(
        (out / "checkpoints/unet_skull-stripped_bottleneck/fold0/inversion.json").read_text()
    )
    record = sidecar["convergence"]
    assert (record["validation_fraction"], record["patience"]) == (0.34, 1)
    assert record["lr_schedule"] == "plateau" and record["n_val"] == 1
    assert set(record["val_metrics"]) == {"ssim", "correlation"}
    stages = dict(plan_study(plain, out))
    inversion = "fold0/unet_skull-stripped_bottleneck/inversion"
    assert stages[inversion] is False and stages["fold0/unet_skull-stripped/target"] is True
