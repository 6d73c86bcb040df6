"""Study config: typed TOML with errors that name the key."""

from __future__ import annotations

import pytest

from inversion_audit.errors import ConfigError
from inversion_audit.study.config import load_study_config, study_config_from_dict


def _write(tmp_path, text: str):
    p = tmp_path / "study.toml"
    p.write_text(text)
    return p


def test_defaults_and_round_trip(tmp_path):
    from inversion_audit.study.config import dump_study_config

    cfg = load_study_config(
        _write(
            tmp_path,
            '[study]\nname = "x"\nseed = 3\n[folds]\nn_folds = 2\n[cohort]\npath = "sample"\n',
        )
    )
    assert cfg.study.seed == 3 and cfg.folds.n_folds == 2
    assert cfg.preprocess_config("skull-stripped").skull_strip == "labels"
    assert cfg.preprocess_config("with-skull").skull_strip == "none"
    again = load_study_config(_write(tmp_path, dump_study_config(cfg)))
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[study]\nnmae = 'x'\n", "study.nmae"),
        ("[matching]\ntop_kk = 3\n", "matching.top_kk"),
        ("[preprocess]\nspacin = 2.0\n", "preprocess.spacin"),
        (
            "[variant_preprocess.with-skull]\nshap = [32, 32, 32]\n",
            "variant_preprocess.with-skull.shap",
        ),
        ("bogus = 1\n", "bogus"),
        ("[target]\nepochz = 3\n", "epochz"),
        ("[inversion]\nlrr = 0.1\n", "lrr"),
    ],
)
def test_unknown_key_is_named(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        load_study_config(_write(tmp_path, text))
    assert "study.toml" in str(err.value)


def test_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="variants"):
        study_config_from_dict({"variants": ["no-skull"]})
    with pytest.raises(ConfigError, match="archs"):
        study_config_from_dict({"archs": ["resnet"]})
    with pytest.raises(ConfigError, match="deformation_preset"):
        study_config_from_dict({"matching": {"deformation_preset": "slow"}})
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_study_config(_write(tmp_path, "[study\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_study_config(tmp_path / "missing.toml")


def test_grid_multiple_follows_the_network_depth():
    # depth 4 with 2x pooling needs sizes divisible by 16
    cfg = study_config_from_dict(
        {"target": {"depth": 4, "pool_size": 2}, "cohort": {"path": "sample"}}
    )
    assert cfg.preprocess_config("skull-stripped").divisible_by == 16
    with pytest.raises(ConfigError, match=r"divisible_by = 8 .*pool_size \*\* depth = 16"):
        study_config_from_dict({"target": {"depth": 4}, "preprocess": {"divisible_by": 8}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"study": {"seed": "x"}}, "study.seed must be an integer, got 'x'"),
        ({"study": {"seed": True}}, "study.seed must be an integer, got True"),
        ({"study": {"threads": "two"}}, "study.threads must be an integer, got 'two'"),
        ({"study": {"name": 3}}, "study.name must be a string, got 3"),
        ({"cohort": {"n_subjects": "40"}}, "cohort.n_subjects must be an integer, got '40'"),
        ({"cohort": {"subjects": ["a", 1]}}, "cohort.subjects must be a list of strings"),
        ({"cohort": {"attack_path": 3}}, "cohort.attack_path must be a string, got 3"),
        ({"folds": {"n_folds": "4"}}, "folds.n_folds must be an integer, got '4'"),
        ({"folds": {"run_folds": 0}}, "folds.run_folds must be a list of integers, got 0"),
        ({"matching": {"metrics": "ssim"}}, "matching.metrics must be a list of strings"),
        ({"matching": {"top_k": 1.5}}, "matching.top_k must be an integer, got 1.5"),
        (
            {"variants": "skull-stripped"},
            "variants must be a list of strings, got 'skull-stripped'",
        ),
        ({"archs": ["unet", 2]}, "archs must be a list of strings"),
        ({"threat_models": "bottleneck"}, "threat_models must be a list of strings"),
        ({"preprocess": [1]}, "preprocess must be a table, got [1]"),
        (
            {"variant_preprocess": {"with-skull": 3}},
            "variant_preprocess.with-skull must be a table",
        ),
        ({"target": "unet"}, "target must be a table"),
    ],
)
def test_value_types_are_checked(data, message):
    import re

    with pytest.raises(ConfigError, match=re.escape(message)):
        study_config_from_dict(data)


def test_value_type_error_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"study\.toml: folds\.n_folds must be an integer"):
        load_study_config(_write(tmp_path, '[folds]\nn_folds = "4"\n'))


@pytest.mark.parametrize(
    ("value", "tp", "ok"),
    [
        (1, float, True),
        (1.5, float, True),
        (True, float, False),
        (True, bool, True),
        (1, bool, False),
        (None, int | None, True),
        ([1, 2], list[int], True),
        ([True], list[int], False),
    ],
)
def test_type_rules(value, tp, ok):
    from inversion_audit.study.config_types import type_ok

    assert type_ok(value, tp) is ok


@pytest.mark.parametrize(
    "text",
    ["", "\n# nothing\n", '[study]\nname = "x"\n', "[cohort]\nsample_n = 4\n"],
)
def test_a_config_must_name_its_cohort(tmp_path, text):
    with pytest.raises(ConfigError, match=r"(names no cohort|empty).*\[cohort\] path") as err:
        load_study_config(_write(tmp_path, text))
    assert "study.toml" in str(err.value)


@pytest.mark.parametrize("key", ["variants", "archs", "threat_models"])
def test_an_empty_run_list_is_refused(tmp_path, key):
    with pytest.raises(ConfigError, match=rf"{key} is empty"):
        load_study_config(_write(tmp_path, f'{key} = []\n[cohort]\npath = "sample"\n'))
