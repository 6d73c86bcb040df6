"""The [[defences]] sweep: config, run names, defended study runs and the privacy–utility table."""

from __future__ import annotations

import pytest

from inversion_audit.errors import ConfigError


def test_defence_settings_and_their_tags():
    from inversion_audit.study.defences_config import defence_settings, parse_defence_tag

    settings = defence_settings(
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
    assert settings[2].latent_noise(0) == {"sigma": 0.0, "levels": 8, "seed": 0}
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
