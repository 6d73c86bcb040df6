"""Issue 20: untrusted ids, labels, sidecars and configs; nothing written before a check fails.

Each test feeds the bad input the issue names and asserts a named error (or a non-zero
exit with no traceback), no file outside ``--out`` and nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import nibabel as nib
import numpy as np
import pytest

from inversion_audit.cli.main import main
from inversion_audit.errors import CheckpointError, CohortError, ConfigError, VolumeError

COMMON = ["--device", "cpu", "--threads", "1", "--quiet"]
PRE = {"shape": [32, 32, 32], "divisible_by": 4, "bias_correction": False}


def cli(args: list[str], capsys) -> tuple[int, str]:
    """Run the CLI in-process; return the exit code and stderr (which must hold no traceback)."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def files_under(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def checkpoints(tmp_path):
    """An untrained tiny target (U-Net, depth 2, 4 filters) and its inversion decoder."""
    torch = pytest.importorskip("torch")
    from inversion_audit.attack import build_inversion_decoder
    from inversion_audit.checkpoints import save_checkpoint, state_hash
    from inversion_audit.models import build_target_network

    torch.manual_seed(0)
    target = build_target_network("unet", n_classes=2, depth=2, base_filters=4).eval()
    folder = tmp_path / "ckpt"
    save_checkpoint(folder / "target", target, {"preprocess": PRE, "seed": 0})
    decoder = build_inversion_decoder(target)
    meta = {"preprocess": PRE, "target_weights_sha256": state_hash(target)}
    save_checkpoint(folder / "inversion", decoder, meta)
    return folder


def reconstruct(checkpoints, cohort, out, capsys, *extra) -> tuple[int, str]:
    return cli(
        [
            "reconstruct",
            "--target",
            checkpoints / "target.safetensors",
            "--inversion",
            checkpoints / "inversion.safetensors",
            "--cohort",
            cohort,
            "--out",
            out,
            *extra,
            *COMMON,
        ],
        capsys,
    )


# -- 1. subject ids are untrusted ------------------------------------------------------------


@pytest.mark.parametrize("bad", ["../../x", "/tmp/abs-x", ".hidden", "a/b", "x" * 300, ""])
def test_unsafe_manifest_ids_are_a_named_cohort_error(tiny_cohort, tmp_path, capsys, bad):
    from inversion_audit.data import load_cohort

    manifest = tmp_path / "m.csv"
    image = tiny_cohort / "sub00_T1.nii.gz"
    manifest.write_text(f"id,image\nok01,{image}\n{bad},{image}\n")
    with pytest.raises(CohortError, match=r"m\.csv, line 3"):
        load_cohort(manifest)
    code, err = cli(["cohort", "check", manifest], capsys)
    assert code == 1 and "m.csv" in err


def test_reconstruct_never_writes_outside_out(tiny_cohort, checkpoints, tmp_path, capsys):
    manifest = tmp_path / "deep" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text(
        f"id,image\nsub00,{tiny_cohort / 'sub00_T1.nii.gz'}\n../../x,{tiny_cohort / 'sub01_T1.nii.gz'}\n"
    )
    before = files_under(tmp_path)
    out = tmp_path / "deep" / "out"
    code, err = reconstruct(checkpoints, manifest, out, capsys)
    assert code == 1 and "unsafe subject id '../../x'" in err
    assert files_under(tmp_path) == before  # nothing anywhere, not even sub00's outputs


def test_output_path_refuses_to_leave_its_folder(tmp_path):
    from inversion_audit.io.paths import output_path
    from inversion_audit.study.layout import StudyPaths

    assert output_path(tmp_path, "a", "b.nii.gz") == tmp_path / "a" / "b.nii.gz"
    for parts in (("..", "x"), ("/etc/x",), ("a/../../x",), ("",)):
        with pytest.raises(CohortError, match="leave the folder"):
            output_path(tmp_path, *parts)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (tmp_path / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(CohortError, match="resolves outside"):
        output_path(tmp_path, "link", "x.nii.gz")
    paths = StudyPaths(tmp_path / "study")
    with pytest.raises(CohortError):
        paths.reconstruction("unet_skull-stripped_bottleneck", "../../x")
    with pytest.raises(CohortError):
        paths.preprocessed("skull-stripped", "/abs")
    with pytest.raises(CohortError):
        paths.deformation("unet_with-skull_bottleneck", "sub01", "../x")


# -- 2. validate before writing --------------------------------------------------------------


def test_reconstruct_checks_every_subject_before_the_first_write(
    tiny_cohort, checkpoints, tmp_path, capsys
):
    bad = tiny_cohort / "sub03_T1.nii.gz"
    bad.write_bytes(bad.read_bytes()[:400])
    out = tmp_path / "out"
    code, err = reconstruct(checkpoints, tiny_cohort, out, capsys)
    assert code == 1 and "sub03_T1.nii.gz" in err and "nothing written" in err
    assert not out.exists()  # sub00..sub02 come before the bad one and are not written either


def test_reconstruct_writes_a_record_of_what_is_complete(
    tiny_cohort, checkpoints, tmp_path, capsys
):
    out = tmp_path / "out"
    code, _ = reconstruct(checkpoints, tiny_cohort, out, capsys, "--subjects", "sub00,sub01")
    assert code == 0
    record = json.loads((out / "reconstruct.json").read_text())
    assert record == {"complete": True, "done": ["sub00", "sub01"], "not_done": []}
    assert files_under(out) == [
        "reconstruct.json",
        "sub00_recon.nii.gz",
        "sub00_recon_pre.nii.gz",
        "sub01_recon.nii.gz",
        "sub01_recon_pre.nii.gz",
    ]


@pytest.mark.parametrize("command", ["train-target", "train-inversion"])
def test_train_out_that_is_a_file_fails_before_training(
    tiny_cohort, checkpoints, tmp_path, capsys, command
):
    out = tmp_path / "taken"
    out.write_text("not a folder")
    args = [command, "--cohort", tiny_cohort, "--out", out, "--epochs", "1", *COMMON]
    if command == "train-inversion":
        args += ["--target", checkpoints / "target.safetensors"]
    start = time.perf_counter()
    code, err = cli(args, capsys)
    assert code == 1 and f"--out {out}: exists and is not a folder" in err
    assert time.perf_counter() - start < 20  # refused up front, not after training
    assert out.read_text() == "not a folder"


def test_run_out_that_is_a_file_is_refused(tiny_cohort, tmp_path, capsys):
    config = _study_toml(tmp_path, tiny_cohort)
    out = tmp_path / "taken"
    out.write_text("not a folder")
    code, err = cli(["run", config, "--out", out, "--quiet"], capsys)
    assert code == 1 and "exists and is not a folder" in err
    assert out.read_text() == "not a folder"


def test_match_out_that_is_a_file_is_refused_before_scoring(tiny_cohort, tmp_path, capsys):
    recons = tmp_path / "recons"
    recons.mkdir()
    nib.save(nib.load(tiny_cohort / "sub00_T1.nii.gz"), recons / "sub00_recon.nii.gz")
    out = tmp_path / "taken"
    out.write_text("not a folder")
    code, err = cli(
        ["match", "--reconstructions", recons, "--candidates", tiny_cohort, "--out", out]
        + ["--metrics", "ssim", "--no-bias-correction", *COMMON],
        capsys,
    )
    assert code == 1 and "exists and is not a folder" in err
    assert out.read_text() == "not a folder"


# -- 3. labels: one rule for every command ---------------------------------------------------


@pytest.fixture
def negative_labels(tiny_cohort):
    path = tiny_cohort / "sub04_seg.nii.gz"
    img = nib.load(path)
    data = np.asarray(img.dataobj).astype(np.int16)
    data[data == 2] = -3
    nib.save(nib.Nifti1Image(data, img.affine), path)
    return tiny_cohort


def test_negative_labels_fail_cohort_check(negative_labels, capsys):
    assert main(["cohort", "check", str(negative_labels)]) == 1
    out = capsys.readouterr().out
    assert "sub04_seg.nii.gz" in out and "negative labels" in out


def test_negative_labels_fail_train_target_reconstruct_and_match(
    negative_labels, checkpoints, tmp_path, capsys
):
    out = tmp_path / "t"
    code, err = cli(
        ["train-target", "--cohort", negative_labels, "--out", out, "--epochs", "1", *COMMON],
        capsys,
    )
    assert code == 1 and "negative labels" in err and "sub04_seg.nii.gz" in err
    assert not out.exists()
    out = tmp_path / "r"
    code, err = reconstruct(checkpoints, negative_labels, out, capsys)
    assert code == 1 and "negative labels" in err and not out.exists()
    # match preprocesses the candidates: the same rule refuses them
    recons = tmp_path / "recons"
    recons.mkdir()
    img = nib.load(negative_labels / "sub00_T1.nii.gz")
    nib.save(img, recons / "sub00_recon.nii.gz")
    out = tmp_path / "m"
    code, err = cli(
        ["match", "--reconstructions", recons, "--candidates", negative_labels, "--out", out]
        + ["--metrics", "ssim", "--no-bias-correction", "--shape", "32", "32", "32"]
        + ["--spacing", "2", *COMMON],
        capsys,
    )
    assert code == 1 and "negative labels" in err
    assert not out.exists() or files_under(out) == []


def test_label_rule_agrees_with_numpy():
    from inversion_audit.data.cohort import label_problem

    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(-2, 5, size=(4, 4, 4)).astype(np.int32)
        assert (label_problem(labels) is None) == bool((labels >= 0).all())
    assert "integers" in label_problem(np.zeros(3, np.float32))


# -- 4. sidecars and checkpoint metadata -----------------------------------------------------

HUGE_SEED = "1" * 100_000


def _edit_sidecar(path, edit) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


SIDECAR_CASES = {
    "depth": (lambda m: m["arch_args"].update(depth=10**9), "arch_args.depth"),
    "base_filters": (lambda m: m["arch_args"].update(base_filters=10**12), "base_filters"),
    "divisible_by": (lambda m: m["preprocess"].update(divisible_by=0), "divisible_by"),
    "spacing_text": (lambda m: m["preprocess"].update(spacing="abc"), "spacing"),
    "spacing_nan": (lambda m: m["preprocess"].update(spacing=float("nan")), "spacing"),
    "spacing_tiny": (lambda m: m["preprocess"].update(spacing=1e-6), "spacing"),
    "shape_huge": (lambda m: m["preprocess"].update(shape=[40000] * 3), "shape"),
    "shape_negative": (lambda m: m["preprocess"].update(shape=[-32, 32, 32]), "shape"),
    "label_map": (lambda m: m.update(label_map={"1": "x"}), "label_map"),
}


@pytest.mark.parametrize("case", sorted(SIDECAR_CASES))
def test_bad_sidecar_fields_are_named(checkpoints, case):
    from inversion_audit.checkpoints import load_target

    edit, key = SIDECAR_CASES[case]
    sidecar = checkpoints / "target.json"
    _edit_sidecar(sidecar, edit)
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        load_target(checkpoints / "target.safetensors")
    assert time.perf_counter() - start < 5
    assert str(sidecar) in str(info.value) and key in str(info.value)


def test_huge_seed_deep_nesting_and_size_are_refused_before_parsing(checkpoints, capsys):
    from inversion_audit.checkpoints import load_target

    sidecar = checkpoints / "target.json"
    text = sidecar.read_text()
    cases = {
        "seed": text.replace('"seed": 0', f'"seed": {HUGE_SEED}'),
        "nested": text[:-2] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
        "size": text[:-2] + ', "x": "' + "a" * (5 * 2**20) + '"}\n',
    }
    named = {"seed": "seed is a number of 100000 digits", "nested": "nested", "size": "bytes"}
    for name, bad in cases.items():
        assert bad != text, name
        sidecar.write_text(bad)
        start = time.perf_counter()
        with pytest.raises(CheckpointError, match=str(sidecar).replace(".", r"\.")) as info:
            load_target(checkpoints / "target.safetensors")
        assert time.perf_counter() - start < 5, name
        assert named[name] in str(info.value)
    sidecar.write_text(cases["nested"])
    code, err = cli(["train-inversion", "--target", sidecar, "--cohort", "x", "--out", "o"], capsys)
    assert code == 1 and "nested" in err


def test_reconstruct_refuses_a_decoder_preprocessed_unlike_its_target(
    tiny_cohort, checkpoints, tmp_path, capsys
):
    _edit_sidecar(checkpoints / "inversion.json", lambda m: m["preprocess"].update(spacing=3.0))
    out = tmp_path / "out"
    code, err = reconstruct(checkpoints, tiny_cohort, out, capsys)
    assert code == 1 and "preprocessing differs" in err and "spacing" in err
    assert not out.exists()


# -- 5. study configs ------------------------------------------------------------------------


def _study_toml(tmp_path, cohort, **tables) -> str:
    import tomli_w

    config = {
        "archs": ["unet"],
        "study": {"device": "cpu", "threads": 1},
        "cohort": {"path": str(cohort)},
        "folds": {"n_folds": 2},
        "preprocess": dict(PRE),
        "target": {"depth": 2, "base_filters": 4, "epochs": 1},
        "inversion": {"epochs": 1},
        "matching": {"metrics": ["ssim"]},
    }
    for name, table in tables.items():
        config[name] = {**config.get(name, {}), **table}
    path = tmp_path / "study.toml"
    path.write_text(tomli_w.dumps(config))
    return str(path)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"spacing": "6mm"}, "preprocess.spacing"),
        ({"bias_correction": "no"}, "preprocess.bias_correction must be true or false"),
        ({"divisible_by": 0}, "preprocess.divisible_by"),
        ({"shape": [40000, 40000, 40000]}, "preprocess.shape"),
    ],
)
def test_study_preprocess_table_is_typed(tiny_cohort, tmp_path, capsys, table, message):
    config = _study_toml(tmp_path, tiny_cohort, preprocess=table)
    out = tmp_path / "study"
    code, err = cli(["run", config, "--out", out, "--quiet"], capsys)
    assert code == 1 and message in err and "study.toml" in err
    assert not out.exists()


def test_more_folds_than_subjects_names_the_key_and_the_count(tiny_cohort, tmp_path, capsys):
    cohort = tmp_path / "eight"
    shutil.copytree(tiny_cohort, cohort)
    for k in (6, 7):  # 8 subjects
        for kind in ("T1", "seg"):
            shutil.copy(
                tiny_cohort / f"sub0{k - 6}_{kind}.nii.gz", cohort / f"sub0{k}_{kind}.nii.gz"
            )
    config = _study_toml(tmp_path, cohort, folds={"n_folds": 20})
    out = tmp_path / "study"
    code, err = cli(["run", config, "--out", out, "--quiet"], capsys)
    assert code == 1 and "folds.n_folds = 20" in err and "8 subjects" in err
    assert not (out / "provenance.json").exists() and not (out / "checkpoints").exists()


def test_missing_cohort_names_cohort_path(tmp_path, capsys):
    config = _study_toml(tmp_path, tmp_path / "nowhere")
    code, err = cli(["run", config, "--out", tmp_path / "study", "--quiet"], capsys)
    assert code == 1 and "cohort.path" in err and "nowhere" in err


# -- 7. messages a user sees -----------------------------------------------------------------


def test_truncated_gzip_is_named_truncated(tmp_path):
    from inversion_audit.io import read_volume

    path = tmp_path / "cut.nii.gz"
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])  # not RAS: reading reorients, which reads voxels
    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).random((32, 32, 32), np.float32), affine), path
    )
    path.write_bytes(path.read_bytes()[:-2000])
    with pytest.raises(VolumeError, match="truncated or corrupt file") as info:
        read_volume(path)
    assert str(path) in str(info.value) and "invalid affine" not in str(info.value)


def test_symlink_loop_is_a_named_error(tiny_cohort, tmp_path, capsys):
    from inversion_audit.io import file_hash

    loop = tiny_cohort / "sub05_T1.nii.gz"
    loop.unlink()
    other = tiny_cohort / "loop_b"
    os.symlink(other, loop)
    os.symlink(loop, other)
    with pytest.raises(VolumeError, match="symbolic link loop") as info:
        file_hash(loop)
    assert str(loop) in str(info.value)
    config = _study_toml(tmp_path, tiny_cohort)
    code, err = cli(["run", config, "--out", tmp_path / "study", "--quiet"], capsys)
    assert code == 1 and "sub05_T1.nii.gz" in err


def test_bad_config_values_raise_config_error():
    from inversion_audit.attack import InversionConfig
    from inversion_audit.training import TargetConfig

    for bad in ({"depth": 10**9}, {"base_filters": 10**12}, {"seed": int(HUGE_SEED[:4000])}):
        with pytest.raises(ConfigError, match=f"target.{next(iter(bad))}"):
            TargetConfig.from_dict(bad)
    with pytest.raises(ConfigError, match="inversion.lr"):
        InversionConfig.from_dict({"lr": float("nan")})


DEEP = "[" * 100_000 + "]" * 100_000


def test_json_nested_100000_deep_is_a_named_error_everywhere(tmp_path):
    """A reid sidecar, a bundle's inference.json and an nnU-Net plans.json nested 100,000 deep."""
    from inversion_audit.matching.reid import build_reid_network
    from inversion_audit.matching.reid_io import load_reid, save_reid
    from inversion_audit.models.external.bundle import read_network_def
    from inversion_audit.models.external.nnunet import load_nnunet

    _, sidecar = save_reid(tmp_path / "reid", build_reid_network(2, 4))
    sidecar.write_text('{"format": ' + DEEP + "}")
    with pytest.raises(CheckpointError, match="nested") as info:
        load_reid(tmp_path / "reid.safetensors")
    assert str(sidecar) in str(info.value)

    bundle = tmp_path / "bundle" / "configs"
    bundle.mkdir(parents=True)
    (bundle / "inference.json").write_text('{"network_def": ' + DEEP + "}")
    with pytest.raises(ConfigError, match="nested") as info:
        read_network_def(bundle.parent)
    assert str(bundle / "inference.json") in str(info.value)

    nnunet = tmp_path / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    nnunet.mkdir()
    (nnunet / "plans.json").write_text('{"configurations": ' + DEEP + "}")
    (nnunet / "dataset.json").write_text("{}")
    with pytest.raises(ConfigError, match="nested") as info:
        load_nnunet(nnunet)
    assert str(nnunet / "plans.json") in str(info.value)


def test_study_records_nested_deep_are_refused_or_skipped(tmp_path):
    """Records a study reads back: the holdout is a named error; stage and provenance read as absent."""
    from inversion_audit.errors import StudyError
    from inversion_audit.study.index import read_holdout_ids
    from inversion_audit.study.layout import HOLDOUT_FILE
    from inversion_audit.study.provenance import read_provenance
    from inversion_audit.study.stages import StageStore

    (tmp_path / HOLDOUT_FILE).write_text('{"holdout": ' + DEEP + "}")
    with pytest.raises(StudyError, match="nested") as info:
        read_holdout_ids(tmp_path)
    assert HOLDOUT_FILE in str(info.value)
    (tmp_path / "provenance.json").write_text(DEEP)
    assert read_provenance(tmp_path / "provenance.json") is None
    runner = StageStore(tmp_path)
    runner._path("s").parent.mkdir(parents=True, exist_ok=True)
    runner._path("s").write_text('{"key": ' + DEEP + "}")
    assert not runner.is_done("s", "k")
