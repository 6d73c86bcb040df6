"""Issue 20: fuzzed checkpoint sidecars and study configs (random types, sizes and nesting)
are either loaded or refused with the project's own error naming the file, in bounded time."""

from __future__ import annotations

import json
import resource
import time
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inversion_audit.errors import CheckpointError, ConfigError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow  # 120 examples, a model built for each sidecar that loads

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.integers(min_value=-3, max_value=70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
#: raw text that is deep or large: parsed only after the size and nesting checks
RAW = st.sampled_from(["nest", "size"]).flatmap(
    lambda kind: st.integers(1, 100_000).map(lambda n: (kind, n))
)

SIDECAR_KEYS = {
    "": ["seed", "epochs", "kind", "architecture", "arch_args", "preprocess", "label_map"]
    + ["threat_model", "tensors", "weights_sha256", "weights_file", "format", "config", "n_train"],
    "arch_args": ["depth", "base_filters", "kernel_size", "pool_size", "n_classes", "norm"]
    + ["in_channels", "extra"],
    "preprocess": ["spacing", "shape", "divisible_by", "bias_correction", "skull_strip"]
    + ["intensity", "percentiles", "nyul_landmarks", "extra"],
}
SECTION_KEYS = {
    "study": ["name", "seed", "device", "threads"],
    "cohort": ["path", "image_pattern", "n_subjects", "subjects", "sample_n", "attack_path"],
    "folds": ["n_folds", "seed", "run_folds"],
    "matching": ["metrics", "top_k", "deformation_preset", "n_workers"],
    "preprocess": SIDECAR_KEYS["preprocess"],
    "target": ["depth", "base_filters", "kernel_size", "pool_size", "epochs", "seed", "label_map"]
    + ["lr", "patch_size", "n_classes"],
    "inversion": ["epochs", "lr", "seed", "threat_model", "flip_augment", "ssim_weight"],
    "variant_preprocess": ["with-skull", "skull-stripped", "other"],
    "model": ["source", "path", "network", "network_args", "fold", "latent"],
    "reid": ["epochs", "lr", "batch_size", "base_filters", "embed_dim", "input_size", "seed"]
    + ["mode", "patch_size", "patch_stride", "patches_per_subject", "min_inside"],
}
#: peak memory (KiB) when the module was imported; no example may add more than 2 GiB to it
BASE_RSS = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _bounded(start: float) -> None:
    assert time.perf_counter() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - BASE_RSS < 2 * 2**20


SETTINGS = settings(
    max_examples=60,
    deadline=timedelta(seconds=20),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


def _raw(kind: str, n: int, prefix: str) -> str:
    if kind == "nest":
        return prefix + "[" * n + "]" * n
    return prefix + '"' + "a" * (n * 60) + '"'  # up to 6 MB: over the 4 MiB limit at the top


@pytest.fixture(scope="module")
def sidecar_text(tmp_path_factory) -> tuple[str, object]:
    from inversion_audit.checkpoints import save_checkpoint
    from inversion_audit.models import build_target_network

    folder = tmp_path_factory.mktemp("fuzz_ckpt")
    model = build_target_network("unet", n_classes=2, depth=2, base_filters=4)
    pre = {"shape": [32, 32, 32], "divisible_by": 4, "bias_correction": False}
    weights, sidecar = save_checkpoint(folder / "target", model, {"preprocess": pre, "seed": 0})
    return sidecar.read_text(), weights


@SETTINGS
@given(
    where=st.sampled_from(sorted(SIDECAR_KEYS)),
    index=st.integers(0, 20),
    value=VALUES,
    raw=st.none() | RAW,
)
def test_fuzzed_sidecars_load_or_raise_checkpoint_errors(sidecar_text, where, index, value, raw):
    from inversion_audit.checkpoints import load_target

    text, weights = sidecar_text
    sidecar = weights.with_suffix(".json")
    meta = json.loads(text)
    keys = SIDECAR_KEYS[where]
    table = meta[where] if where else meta
    table[keys[index % len(keys)]] = value
    body = json.dumps(meta)
    if raw is not None:
        body = body[:-1] + ", " + _raw(*raw, '"x": ') + "}"
    sidecar.write_text(body)
    start = time.perf_counter()
    try:
        model = load_target(weights)
    except CheckpointError as exc:
        assert str(sidecar) in str(exc) or str(weights) in str(exc)
    else:
        assert model.arch == "unet"
    _bounded(start)


@settings(SETTINGS, max_examples=150)
@given(
    section=st.sampled_from(sorted(SECTION_KEYS)),
    index=st.integers(0, 20),
    value=VALUES,
    raw=st.none() | RAW,
)
def test_fuzzed_study_configs_load_or_raise_config_errors(tmp_path, section, index, value, raw):
    import tomli_w

    from inversion_audit.study.config import load_study_config

    keys = SECTION_KEYS[section]
    data = {section: {keys[index % len(keys)]: value}}
    try:
        text = tomli_w.dumps(data)
    except (TypeError, ValueError):  # TOML has no null: write the value as raw text instead
        text = f"[{section}]\n{keys[index % len(keys)]} = {json.dumps(value)}\n"
    if raw is not None:
        text = _raw(*raw, "deep = ") + "\n" + text
    path = tmp_path / "fuzz.toml"
    path.write_text(text)
    start = time.perf_counter()
    try:
        load_study_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)
    _bounded(start)
