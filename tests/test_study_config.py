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
        _write(tmp_path, '[study]\nname = "x"\nseed = 3\n[folds]\nn_folds = 2\n')
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
    cfg = study_config_from_dict({"target": {"depth": 4, "pool_size": 2}})
    assert cfg.preprocess_config("skull-stripped").divisible_by == 16
    with pytest.raises(ConfigError, match=r"divisible_by = 8 .*pool_size \*\* depth = 16"):
        study_config_from_dict({"target": {"depth": 4}, "preprocess": {"divisible_by": 8}})
