"""Validate, then write: every refusal of ``match``, ``reconstruct``, ``train-target`` and
``train-inversion`` leaves the output folder and the cache exactly as they were, exits
non-zero and names the file. Also the score tables' own refusals (``study/score_files.py``)."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from inversion_audit.cli.main import main
from inversion_audit.data import PreprocessConfig
from inversion_audit.errors import StudyError
from inversion_audit.io import write_volume

torch = pytest.importorskip("torch")

PRE = PreprocessConfig(spacing=(2.0, 2.0, 2.0), shape=(32, 32, 32), bias_correction=False)
FLAGS = ["--device", "cpu", "--threads", "1", "--quiet"]
#: the last subject: under "write while checking", the others would be in the cache already
LAST = "sub05"


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root``: ``{relative path: (size, sha256)}`` (folders as ``(-1, "")``)."""
    if not root.exists():
        return {}
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            out[rel + "/"] = (-1, "")
        else:
            data = path.read_bytes()
            out[rel] = (len(data), hashlib.sha256(data).hexdigest())
    return out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """An (untrained) tiny target and its inversion decoder, as the CLI writes them."""
    from inversion_audit.attack import build_inversion_decoder
    from inversion_audit.checkpoints import save_checkpoint, state_hash
    from inversion_audit.models import build_target_network

    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    target = build_target_network("unet", n_classes=5, depth=2, base_filters=4).eval()
    decoder = build_inversion_decoder(target, "bottleneck")
    decoder.target_weights_sha256 = state_hash(target)
    save_checkpoint(folder / "target", target, {"preprocess": PRE})
    save_checkpoint(folder / "inversion", decoder, {"preprocess": PRE})
    return folder


def _garbage(path: Path) -> str:
    path.write_bytes(gzip.compress(b"not a nifti header at all" * 3))
    return path.name


def _truncate(path: Path) -> str:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    return f"{path.name}: truncated or corrupt file"


def _huge(path: Path) -> str:
    """A header claiming 4096^3 voxels (LAS, so reading it in RAS would allocate them all)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.float32)
    hdr.set_data_shape((4096, 4096, 4096))
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr["vox_offset"] = 352
    path.write_bytes(gzip.compress(hdr.binaryblock + b"\0" * 4 + bytes(256)))
    return f"{path.name}: header claims a 4096x4096x4096 grid"


def _manifest(cohort: Path, rows: str | bytes) -> Path:
    path = cohort.parent / "manifest.csv"
    path.write_bytes(rows if isinstance(rows, bytes) else rows.encode())
    return path


class Setup:
    """The inputs of one command run; a fault changes them and says which file to name."""

    def __init__(self, tmp_path: Path, cohort: Path, checkpoints: Path) -> None:
        self.tmp = tmp_path
        self.cohort = cohort
        self.target = tmp_path / "ckpt" / "target.safetensors"
        self.inversion = tmp_path / "ckpt" / "inversion.safetensors"
        shutil.copytree(checkpoints, tmp_path / "ckpt")
        self.recon = tmp_path / "recon"
        self.subjects: list[str] = []
        rng = np.random.default_rng(0)
        affine = np.diag([2.0, 2.0, 2.0, 1.0])
        for sid in ("sub00", LAST):
            image = rng.random((32, 32, 32)).astype(np.float32)
            write_volume(self.recon / f"{sid}_recon_pre.nii.gz", image, affine)
        self.out = tmp_path / "out"
        self.config: Path | None = None

    def argv(self, command: str) -> list[str]:
        cohort = [
            "--cohort",
            str(self.cohort),
            *(["--subjects", *self.subjects] * bool(self.subjects)),
        ]
        out = ["--out", str(self.out)]
        if command == "match":
            return [
                "match", "--reconstructions", str(self.recon), "--candidates", str(self.cohort),
                *out, "--metrics", "ssim", "--no-bias-correction", *FLAGS,
            ]  # fmt: skip
        if command == "train-target":
            return [
                "train-target", *cohort, *out, "--shape", "32", "32", "32", "--spacing", "2",
                "--depth", "2", "--filters", "4", "--epochs", "1", "--no-bias-correction", *FLAGS,
            ]  # fmt: skip
        if command == "train-inversion":
            return [
                "train-inversion",
                "--target",
                str(self.target),
                *cohort,
                *out,
                "--epochs",
                "1",
                *FLAGS,
            ]
        return [
            "reconstruct", "--target", str(self.target), "--inversion", str(self.inversion),
            *cohort, *out, *FLAGS,
        ]  # fmt: skip


def bad_image(s: Setup) -> str:
    return _truncate(s.cohort / f"{LAST}_T1.nii.gz")


def bad_labels(s: Setup) -> str:
    return _garbage(s.cohort / f"{LAST}_seg.nii.gz")


def huge_image(s: Setup) -> str:
    return _huge(s.cohort / f"{LAST}_T1.nii.gz")


def huge_labels(s: Setup) -> str:
    return _huge(s.cohort / f"{LAST}_seg.nii.gz")


def empty_manifest(s: Setup) -> str:
    s.cohort = _manifest(s.cohort, "id,image,labels\n")
    return "manifest.csv: manifest lists no subjects"


def latin1_manifest(s: Setup) -> str:
    rows = "".join(
        f"{sid},{s.cohort / f'{sid}_T1.nii.gz'},{s.cohort / f'{sid}_seg.nii.gz'}\n"
        for sid in ("sub00", "sub01")
    )
    head = f"id,image,labels\n{rows}".encode()
    s.cohort = _manifest(s.cohort, head + "sub02,Müller_T1.nii.gz,\n".encode("latin-1"))
    return f"manifest.csv: not UTF-8 text (byte 0xfc at offset {len(head) + len('sub02,M')})"


def unsafe_id(s: Setup) -> str:
    rows = "".join(
        f"{sid},{s.cohort / f'{i}_T1.nii.gz'},{s.cohort / f'{i}_seg.nii.gz'}\n"
        for sid, i in (("sub00", "sub00"), ("../../escape", "sub01"))
    )
    s.cohort = _manifest(s.cohort, f"id,image,labels\n{rows}")
    return "manifest.csv, line 3: unsafe subject id '../../escape'"


def unknown_subject(s: Setup) -> str:
    s.subjects = ["sub00,sub99"]
    return "no subject 'sub99'"


def missing_checkpoint(s: Setup) -> str:
    s.target.unlink()
    return "target.safetensors: checkpoint weights not found"


def bad_weights(s: Setup) -> str:
    s.target.write_bytes(b"\0" * 64)
    return "target.safetensors: weights do not match their sidecar"


def bad_decoder(s: Setup) -> str:
    s.inversion.with_suffix(".json").write_bytes(b'{"kind": "inversion", \xff}')
    return "inversion.json: not UTF-8 text (byte 0xff at offset 22)"


def latin1_config(s: Setup) -> str:
    # train-target only: its --config (read_toml)
    s.config = s.tmp / "fold.toml"
    s.config.write_bytes(b"[target]\n# r\xe9glages\nepochs = 1\n")
    return "fold.toml: not UTF-8 text (byte 0xe9 at offset 12)"


def bad_reconstruction(s: Setup) -> str:
    return _truncate(s.recon / f"{LAST}_recon_pre.nii.gz")


def huge_reconstruction(s: Setup) -> str:
    # the second file: the first one sets the grid, this one is only read by the checks
    return _huge(s.recon / f"{LAST}_recon_pre.nii.gz")


def unsafe_reconstruction_id(s: Setup) -> str:
    shutil.copy(s.recon / "sub00_recon_pre.nii.gz", s.recon / "sub 00_recon_pre.nii.gz")
    return "sub 00_recon_pre.nii.gz: unsafe subject id 'sub 00'"


def other_spacing(s: Setup) -> str:
    name = f"{LAST}_recon_pre.nii.gz"
    write_volume(s.recon / name, np.zeros((32, 32, 32), np.float32), np.diag([3, 3, 3, 1.0]))
    return f"{name}: grid differs"


COHORT_FAULTS = [
    bad_image, bad_labels, huge_image, huge_labels, empty_manifest, latin1_manifest, unsafe_id,
]  # fmt: skip
CASES = [
    *[("match", f) for f in COHORT_FAULTS],
    *[("match", f) for f in (bad_reconstruction, huge_reconstruction, unsafe_reconstruction_id)],
    ("match", other_spacing),
    *[("train-target", f) for f in (*COHORT_FAULTS, unknown_subject, latin1_config)],
    *[("train-inversion", f) for f in (*COHORT_FAULTS, unknown_subject, missing_checkpoint)],
    *[("train-inversion", bad_weights)],
    *[("reconstruct", f) for f in (*COHORT_FAULTS, unknown_subject, bad_weights, bad_decoder)],
]
#: what each command would write into --out: a previous run's files, which must survive
PREVIOUS = {
    "match": ("summary.json", "scores/scores.csv"),
    "train-target": ("target.safetensors", "target.json"),
    "train-inversion": ("inversion.safetensors", "inversion.json"),
    "reconstruct": (f"{LAST}_recon.nii.gz", "reconstruct.json"),
}


@pytest.mark.parametrize("previous", [False, True], ids=["no-output", "previous-output"])
@pytest.mark.parametrize(("command", "fault"), CASES, ids=[f"{c}-{f.__name__}" for c, f in CASES])
def test_refusal_leaves_output_and_cache_unchanged(
    tiny_cohort, tmp_path, checkpoints, capsys, command, fault, previous
):
    setup = Setup(tmp_path, tiny_cohort, checkpoints)
    named = fault(setup)
    if previous:
        for name in PREVIOUS[command]:
            (setup.out / name).parent.mkdir(parents=True, exist_ok=True)
            (setup.out / name).write_text(f"a previous run's {name}\n")
    cache = Path(os.environ["INVERSION_AUDIT_CACHE"])
    argv = setup.argv(command) + (["--config", str(setup.config)] if setup.config else [])
    before = snapshot(setup.out), snapshot(cache)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    assert named in err
    assert (snapshot(setup.out), snapshot(cache)) == before
    assert setup.out.exists() == previous


class Reached(Exception):
    """Raised where a command's first write would begin."""


def _reached(*args, **kwargs):
    raise Reached


@pytest.mark.parametrize("command", list(PREVIOUS))
def test_clean_inputs_get_past_the_checks(tiny_cohort, tmp_path, checkpoints, monkeypatch, command):
    """The control of the refusals above: without a fault, each command reaches its first
    write (preprocessing into the cache, or a reconstruction) with nothing written yet."""
    import inversion_audit.attack
    import inversion_audit.data

    monkeypatch.setattr(inversion_audit.data, "preprocess_cohort", _reached)
    monkeypatch.setattr(inversion_audit.attack, "reconstruct_subject", _reached)
    setup = Setup(tmp_path, tiny_cohort, checkpoints)
    cache = Path(os.environ["INVERSION_AUDIT_CACHE"])
    with pytest.raises(Reached):
        main(setup.argv(command))
    assert snapshot(cache) == {}
    # reconstruct records, by design, that no subject was reconstructed when it stopped
    assert sorted(snapshot(setup.out)) == (["reconstruct.json"] if command == "reconstruct" else [])


def _scores_header() -> str:
    return "fold,arch,variant,threat_model,reconstruction_id,candidate_id,metric,value\n"


def test_score_tables_that_are_not_utf8_name_the_byte(tmp_path):
    from inversion_audit.study.score_files import read_rankings, read_scores

    scores = tmp_path / "scores.csv"
    rows = _scores_header() + "0,unet,with-skull,bottleneck,a,b,ssim,0.5\n" * 400
    scores.write_bytes(rows.encode() + b"0,unet,with-skull,bottleneck,\xe9,b,ssim,0.5\n")
    with pytest.raises(StudyError) as err:
        read_scores(scores)
    offset = len(rows) + len("0,unet,with-skull,bottleneck,")
    assert str(err.value) == f"{scores}: not UTF-8 text (byte 0xe9 at offset {offset})"
    ranking = tmp_path / "rankings" / "unet_with-skull_bottleneck.csv"
    ranking.parent.mkdir()
    head = b"reconstruction_id,metric,rank_of_true_match,top1_candidate\na,ssim,1,"
    ranking.write_bytes(head + b"\x80\n")
    with pytest.raises(StudyError) as err:
        read_rankings(ranking)
    assert str(err.value) == f"{ranking}: not UTF-8 text (byte 0x80 at offset {len(head)})"


def test_score_tables_with_short_rows_or_huge_fields_name_the_file(tmp_path):
    from inversion_audit.study.score_files import read_rankings, read_scores

    scores = tmp_path / "scores.csv"
    scores.write_text(_scores_header() + "0,unet,with-skull,bottleneck,a,b,ssim,0.5\n0,unet\n")
    with pytest.raises(StudyError, match=r"scores\.csv:3: "):
        read_scores(scores)
    ranking = tmp_path / "r.csv"
    ranking.write_text("reconstruction_id,metric,rank_of_true_match,top1_candidate\na,ssim\n")
    with pytest.raises(StudyError, match=r"r\.csv:2: "):
        read_rankings(ranking)
    scores.write_text(_scores_header() + '0,unet,"' + "x" * 200_000)  # beyond csv's field limit
    with pytest.raises(StudyError, match=r"scores\.csv: malformed scores table"):
        read_scores(scores)
    ranking.write_text("reconstruction_id,metric,rank_of_true_match,top1_candidate\na,ssim,2.5,b\n")
    assert [r.rank_of_true_match for r in read_rankings(ranking)] == [2.5]


def test_a_patch_larger_than_the_computed_grid_leaves_the_cache_unchanged(
    tiny_cohort, tmp_path, checkpoints, capsys
):
    """Without ``--shape`` the grid is known only after preprocessing; its cache entries are
    held back until the patch size has been checked against it."""
    setup = Setup(tmp_path, tiny_cohort, checkpoints)
    config = tmp_path / "target.toml"
    config.write_text("[target]\npatch_size = [96, 96, 96]\n")
    argv = setup.argv("train-target")
    cut = argv.index("--shape")
    argv = [*argv[:cut], *argv[cut + 4 :], "--config", str(config)]
    cache = Path(os.environ["INVERSION_AUDIT_CACHE"])
    before = snapshot(cache)
    assert main(argv) != 0
    assert "larger than the grid" in capsys.readouterr().err
    assert snapshot(cache) == before
    assert not setup.out.exists()


def test_a_reconstruction_off_its_subjects_grid_leaves_the_cache_unchanged(
    tiny_cohort, tmp_path, checkpoints, capsys
):
    """The grid's origin is known only after preprocessing: its cache entries wait until every
    reconstruction has been checked against its own subject's grid (``Setup``'s reconstructions
    have the right shape and voxel size but not the candidates' origin)."""
    setup = Setup(tmp_path, tiny_cohort, checkpoints)
    cache = Path(os.environ["INVERSION_AUDIT_CACHE"])
    before = snapshot(cache)
    assert main(setup.argv("match")) != 0
    assert "_recon_pre.nii.gz: grid differs" in capsys.readouterr().err
    assert snapshot(cache) == before
    assert not setup.out.exists()
