"""Issue 17, deliverable 6: audit real models (a MONAI bundle, an nnU-Net v2 folder) on ixi-dev.

Both models are trained on fold 0's 10 private subjects of the paper protocol
(``configs/ixi-dev.toml``: first 40 ids, ``kfold_split`` 4 folds seed 0, skull-stripped
variant, 2 mm, the 148 labels grouped into 5 classes by the config's ``label_map``), then
audited by the project's ``[model]`` study with those 10 ids as members and the other 30
protocol subjects as the attack set (40 candidates; the ``[model]`` study takes no holdout).

Steps (each writes its outputs atomically and is skipped when they exist; re-run the same
command to resume):

1. ``bundle/``: MONAI BasicUNet, features (16, 16, 32, 64, 128, 16), trained with MONAI's
   DiceCELoss, Dataset/DataLoader and RandSpatialCropd (64^3 crops), saved as a MONAI bundle
   (configs/metadata.json, configs/inference.json with a plain-data network_def,
   models/model.pt); checked with MONAI's own ConfigParser (trusted: we wrote it).
2. ``study-bundle/``: ``[model] source = "bundle"`` study (config ``audit.toml`` beside it).
3. nnU-Net v2 (env ``nnUNet_raw/_preprocessed/_results`` under ``--nnunet-root``): raw
   layout, ``nnUNetv2_plan_and_preprocess -c 3d_fullres --verify_dataset_integrity``,
   ``splits_final.json`` whose fold 0 trains on all 10, a short ``nnUNetTrainer`` run on CPU
   (epochs and iterations set on the trainer object), then
   ``nnUNetPredictor.initialize_from_trained_model_folder``.
4. ``study-nnunet/``: ``[model] source = "nnunet"`` study.

Results: ``benchmarks/results/external_models_ixi.json`` and a table on stdout::

    INVERSION_AUDIT_CACHE=/work/bench-cache nice -n 19 .venv/bin/python \\
        benchmarks/external_models_ixi.py --work /work/bench-ext17 --nnunet-root /work/bench-nnunet
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "external_models_ixi.json"
VARIANT = "skull-stripped"
FEATURES = (16, 16, 32, 64, 128, 16)
CLASSES = ("background", "csf", "deep_grey", "brainstem_cerebellum", "white_matter", "cortex")
DATASET_ID = 517
DATASET = f"Dataset{DATASET_ID:03d}_IXI"
METRICS = ("ssim", "ssim_brain", "correlation", "psnr")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def atomic_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def atomic_dir(final: Path, build) -> None:
    """Build a folder under a temporary name, then rename it into place."""
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    os.replace(tmp, final)


# ---- the protocol's fold 0 ---------------------------------------------------------------------


class PlanProbe:
    """A study's plan, never run: its folds, each fold's preprocessing, preprocessed subjects."""

    def __init__(self, config) -> None:
        from inversion_audit.study.external_run import load_models
        from inversion_audit.study.plan import build_plan
        from inversion_audit.study.resolved import read_inputs

        inputs = read_inputs(config)
        self.models = load_models(config, inputs)
        self.plan = build_plan(config, inputs, self.models)
        self.folds = self.plan.folds

    def fold_pre_config(self, variant: str, fold):
        from inversion_audit.data.preprocess import config_with_nyul

        private = [self.plan.cohort[i] for i in fold.private_set]
        return config_with_nyul(self.plan.pre_configs[variant], private)

    def pre(self, sid: str, pcfg):
        from inversion_audit.data.preprocess import preprocess_subject

        return preprocess_subject(self.plan.cohort[sid], pcfg)


def protocol_study(work: Path):
    """The paper protocol's plan (skull-stripped only), never run: folds and preprocessing."""
    from inversion_audit.study.config import study_config_from_dict

    src = ROOT / "configs" / "ixi-dev.toml"
    data = tomllib.loads(src.read_text())
    data["variants"], data["archs"] = [VARIANT], ["unet"]
    cfg = study_config_from_dict(data, source=str(src))
    return PlanProbe(cfg), data


def private_data(study, data: dict) -> tuple[list[str], list[Any]]:
    """Fold 0's private ids and their (image, 5-class labels, affine)."""
    from inversion_audit.training import apply_label_map
    from inversion_audit.training.config import parse_label_map

    fold = study.folds[0]
    pcfg = study.fold_pre_config(VARIANT, fold)
    label_map = parse_label_map(data["target"]["label_map"])
    out = []
    for sid in fold.private_set:
        p = study.pre(sid, pcfg)
        out.append((p.image.astype("float32"), apply_label_map(p.labels, label_map), p.affine))
    return list(fold.private_set), out


# ---- 1. the MONAI bundle -----------------------------------------------------------------------


def train_bundle(folder: Path, cases: list[Any], iterations: int, batch: int, lr: float) -> None:
    import torch
    from monai.data import DataLoader, Dataset
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet
    from monai.transforms import Compose, EnsureTyped, RandSpatialCropd
    from monai.utils import set_determinism

    set_determinism(seed=0)
    items = [{"image": img[None], "label": lab[None].astype("int64")} for img, lab, _ in cases]
    transform = Compose(
        [
            RandSpatialCropd(keys=["image", "label"], roi_size=(64, 64, 64), random_size=False),
            EnsureTyped(keys=["image", "label"]),
        ]
    )
    loader = DataLoader(Dataset(items, transform), batch_size=batch, shuffle=True, num_workers=0)
    net = BasicUNet(3, 1, len(CLASSES), features=FEATURES)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    losses, step, t0 = [], 0, time.perf_counter()
    while step < iterations:
        for batch_data in loader:
            opt.zero_grad()
            loss = loss_fn(net(batch_data["image"]), batch_data["label"])
            loss.backward()
            opt.step()
            losses.append(float(loss))
            step += 1
            if step % 20 == 0 or step == 1:
                log(f"bundle: iteration {step}/{iterations} loss {losses[-1]:.4f}")
            if step >= iterations:
                break
    seconds = time.perf_counter() - t0

    def build(tmp: Path) -> None:
        (tmp / "configs").mkdir()
        (tmp / "models").mkdir()
        torch.save(net.state_dict(), tmp / "models" / "model.pt")
        network_def = {
            "_target_": "BasicUNet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": len(CLASSES),
            "features": list(FEATURES),
        }
        inference = {
            "imports": ["$import torch"],
            "device": "$torch.device('cpu')",
            "network_def": network_def,
            "network": "$@network_def.to(@device)",
        }
        (tmp / "configs" / "inference.json").write_text(json.dumps(inference, indent=2))
        grid = list(cases[0][0].shape)
        metadata = {
            "version": "0.1.0",
            "monai_version": __import__("monai").__version__,
            "pytorch_version": torch.__version__,
            "name": "ixi-dev fold 0 BasicUNet (inversion-audit benchmark)",
            "task": "5-class brain segmentation of skull-stripped T1 at 2 mm",
            "network_data_format": {
                "inputs": {
                    "image": {
                        "type": "image",
                        "format": "magnitude",
                        "modality": "MR",
                        "num_channels": 1,
                        "spatial_shape": grid,
                        "dtype": "float32",
                        "value_range": [0, 1],
                    }
                },
                "outputs": {
                    "pred": {
                        "type": "image",
                        "format": "segmentation",
                        "num_channels": len(CLASSES),
                        "spatial_shape": grid,
                        "dtype": "float32",
                        "channel_def": dict(enumerate(CLASSES)),
                    }
                },
            },
        }
        (tmp / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2))
        train = {
            "iterations": iterations,
            "batch_size": batch,
            "crop": [64, 64, 64],
            "lr": lr,
            "optimizer": "Adam",
            "loss": "monai.losses.DiceCELoss(to_onehot_y=True, softmax=True)",
            "seconds": seconds,
            "first_loss": losses[0],
            "last_loss_mean_10": sum(losses[-10:]) / len(losses[-10:]),
        }
        (tmp / "training.json").write_text(json.dumps(train, indent=2))

    atomic_dir(folder, build)


def check_bundle_with_monai(folder: Path) -> str:
    """MONAI's own parser builds network_def and loads models/model.pt (our own bundle: trusted)."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(folder / "models" / "model.pt", weights_only=True))
    return type(net).__name__


# ---- 3. nnU-Net v2 -----------------------------------------------------------------------------


def nnunet_env(root: Path) -> dict[str, str]:
    env = {
        "nnUNet_raw": str(root / "raw"),
        "nnUNet_preprocessed": str(root / "preprocessed"),
        "nnUNet_results": str(root / "results"),
        "nnUNet_n_proc_DA": "0",
        "nnUNet_compile": "false",
    }
    os.environ.update(env)
    return env


def write_raw(root: Path, ids: list[str], cases: list[Any]) -> None:
    import nibabel as nib
    import numpy as np

    def build(tmp: Path) -> None:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        for sid, (img, lab, affine) in zip(ids, cases, strict=True):
            nib.save(
                nib.Nifti1Image(img.astype(np.float32), affine),
                tmp / "imagesTr" / f"{sid}_0000.nii.gz",
            )
            nib.save(
                nib.Nifti1Image(lab.astype(np.uint8), affine), tmp / "labelsTr" / f"{sid}.nii.gz"
            )
        dataset = {
            "channel_names": {"0": "T1"},
            "labels": {name: k for k, name in enumerate(CLASSES)},
            "numTraining": len(ids),
            "file_ending": ".nii.gz",
            "name": "IXI (ixi-dev fold 0 private set, project preprocessing, skull-stripped, 2 mm)",
        }
        (tmp / "dataset.json").write_text(json.dumps(dataset, indent=2))

    (root / "raw").mkdir(parents=True, exist_ok=True)
    atomic_dir(root / "raw" / DATASET, build)


def plan_and_preprocess(root: Path, env: dict[str, str]) -> float:
    exe = Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"
    cmd = [str(exe), "-d", str(DATASET_ID), "-c", "3d_fullres", "--verify_dataset_integrity"]
    cmd += ["-np", "1", "-npfp", "1"]
    log("nnunet: " + " ".join(cmd))
    t0 = time.perf_counter()
    # the planner calls torch.set_num_threads(nnUNet_n_proc_DA): it must be positive there
    subprocess.run(cmd, check=True, env={**os.environ, **env, "nnUNet_n_proc_DA": "1"})
    return time.perf_counter() - t0


def train_nnunet(ids: list[str], epochs: int, iters: int, root: Path) -> dict[str, Any]:
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    # fold 0 trains on all 10 members; nnU-Net's validation batches come from two of them
    atomic_json(
        root / "preprocessed" / DATASET / "splits_final.json", [{"train": ids, "val": ids[-2:]}]
    )
    trainer = get_trainer_from_args(
        str(DATASET_ID), "3d_fullres", 0, "nnUNetTrainer", "nnUNetPlans", device=torch.device("cpu")
    )
    trainer.num_epochs = epochs
    trainer.num_iterations_per_epoch = iters
    trainer.num_val_iterations_per_epoch = 1
    resumed = None
    for name in ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth"):
        ckpt = Path(trainer.output_folder) / name
        if ckpt.is_file():  # nnU-Net's own `--c` order: an interrupted training continues
            trainer.load_checkpoint(str(ckpt))  # our own checkpoint, written by nnU-Net above
            resumed = f"{name} (epoch {trainer.current_epoch})"
            log(f"nnunet: continuing from {resumed}")
            break
    trainer.run_training()
    log_ = getattr(trainer.logger, "local_logger", trainer.logger).my_fantastic_logging
    starts, ends = log_.get("epoch_start_timestamps", []), log_.get("epoch_end_timestamps", [])
    epoch_seconds = [float(e - s) for s, e in zip(starts, ends, strict=False)]
    seconds = sum(epoch_seconds)  # training time over all sessions (nnU-Net's own epoch log)
    return {
        "trainer": "nnUNetTrainer (num_epochs, num_iterations_per_epoch set on the object)",
        "epochs": epochs,
        "iterations_per_epoch": iters,
        "iterations": epochs * iters,
        "batch_size": trainer.configuration_manager.batch_size,
        "patch_size": list(trainer.configuration_manager.patch_size),
        "seconds": seconds,
        "epoch_seconds": epoch_seconds,
        "resumed_from": resumed,
        "train_losses": [float(x) for x in log_.get("train_losses", [])],
        "pseudo_dice": [[float(v) for v in x] for x in log_.get("dice_per_class_or_region", [])],
    }


def nnunet_folder(root: Path) -> Path:
    return root / "results" / DATASET / "nnUNetTrainer__nnUNetPlans__3d_fullres"


def check_nnunet_predictor(folder: Path) -> str:
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    pred = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False)
    pred.initialize_from_trained_model_folder(
        str(folder), use_folds=(0,), checkpoint_name="checkpoint_final.pth"
    )
    return type(pred.network).__name__


# ---- 2/4. the audit study ----------------------------------------------------------------------


def audit_toml(model: str, members: list[str], inv_epochs: int, flip: bool, data: dict) -> str:
    pre = data["preprocess"]
    cohort = (ROOT / "configs" / data["cohort"]["path"]).resolve()
    if not cohort.is_dir():
        cohort = (ROOT / data["cohort"]["path"]).resolve()
    inv = data["inversion"]
    return f"""# written by benchmarks/external_models_ixi.py (issue 17 deliverable 6)
variants = ["{VARIANT}"]
threat_models = ["bottleneck"]

[study]
name = "ixi-dev fold 0: external model audit"
seed = 0
device = "cpu"
threads = 2

[cohort]
path = "{cohort}"
n_subjects = {data["cohort"]["n_subjects"]}

[folds]
n_folds = {data["folds"]["n_folds"]}
seed = {data["folds"]["seed"]}

[preprocess]
spacing = {json.dumps(pre["spacing"])}
bias_correction = {str(pre["bias_correction"]).lower()}
intensity = "{pre["intensity"]}"
divisible_by = {pre["divisible_by"]}

[variant_preprocess.{VARIANT}]
shape = {json.dumps(data["variant_preprocess"][VARIANT]["shape"])}

[inversion]
epochs = {inv_epochs}
lr = {inv["lr"]}
batch_size = {inv["batch_size"]}
flip_augment = {str(flip).lower()}

[matching]
metrics = {json.dumps(list(METRICS))}
top_k = 5

[model]
{model}
latent = "auto"
members = {json.dumps(members)}
"""


def run_audit(out: Path, model_lines: str, members, args, data) -> None:
    from inversion_audit.cli.main import main

    out.mkdir(parents=True, exist_ok=True)
    config = out / "audit.toml"
    text = audit_toml(model_lines, members, args.inv_epochs, args.flip, data)
    if not config.exists() or config.read_text() != text:
        config.write_text(text)
    log(f"audit: inversion-audit run {config} --out {out}")
    rc = main(["run", str(config), "--out", str(out), "--quiet"])
    if rc != 0:
        raise SystemExit(f"the audit study {out} failed (exit {rc})")


def audit_summary(out: Path, members: list[str]) -> dict[str, Any]:
    """Top-1 per metric, own vs others' mean, decoder training seconds, Dice on the private set."""
    import numpy as np
    import torch

    from inversion_audit.io import read_volume
    from inversion_audit.metrics.dice import dice
    from inversion_audit.study.config import load_study_config
    from inversion_audit.study.layout import StudyPaths, run_name
    from inversion_audit.training import apply_label_map
    from inversion_audit.training.config import parse_label_map

    with open(out / "scores" / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    res: dict[str, Any] = {"n": len(members)}
    for metric in METRICS:
        table: dict[str, dict[str, float]] = {}
        for r in rows:
            if r["metric"] == metric:
                table.setdefault(r["reconstruction_id"], {})[r["candidate_id"]] = float(r["value"])
        if not table:
            continue
        top1 = sum(max(c, key=c.get) == rid for rid, c in table.items())
        own = [c[rid] for rid, c in table.items()]
        others = [v for rid, c in table.items() for k, v in c.items() if k != rid]
        res[metric] = {
            "top1": top1,
            "n": len(table),
            "candidates": len(next(iter(table.values()))),
            "own": float(np.mean(own)),
            "others": float(np.mean(others)),
        }
    stage = (
        next((out / "stages").glob("*inversion.json"), None) if (out / "stages").is_dir() else None
    )
    if stage is None:
        stage = next(out.rglob("fold0__*__inversion.json"), None)
    res["decoder_seconds"] = json.loads(stage.read_text())["seconds"] if stage else None
    # Dice of the model on its members' originals and on their reconstructions
    cfg = load_study_config(out / "audit.toml")
    study = PlanProbe(cfg)
    model = study.models[VARIANT]
    fold = study.folds[0]  # the external run's one fold: the members, the attack set
    pcfg = study.fold_pre_config(VARIANT, fold)
    data = tomllib.loads((ROOT / "configs" / "ixi-dev.toml").read_text())
    label_map = parse_label_map(data["target"]["label_map"])
    target = model.target()
    back = tuple(int(a) for a in np.argsort(model.axes))
    run = run_name("external", VARIANT, "bottleneck")

    def segment(arr) -> Any:
        with torch.no_grad():
            logits = target(
                torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None, None]
            )
        return logits.argmax(1)[0].numpy().transpose(back)

    orig, recon = [], []
    for sid in fold.private_set:
        p = study.pre(sid, pcfg)
        truth = apply_label_map(p.labels, label_map)
        orig.append(dice(segment(p.image), truth, range(1, len(CLASSES)))[1])
        rec = read_volume(StudyPaths(out).reconstruction(run, sid, "preprocessed")).array
        recon.append(dice(segment(rec), truth, range(1, len(CLASSES)))[1])
    res["dice"] = {
        "original": float(np.mean(orig)),
        "reconstruction": float(np.mean(recon)),
        "per_subject_original": [float(x) for x in orig],
    }
    record = out / "external_model.json"
    if record.is_file():
        res["model"] = json.loads(record.read_text())
    res["grid"] = list(pcfg.shape)
    return res


# ---- driver ------------------------------------------------------------------------------------


def results_path(tag: str) -> Path:
    """``external_models_ixi.json``, or ``external_models_ixi_<tag>.json`` for another budget."""
    return RESULTS.with_name(f"{RESULTS.stem}_{tag}.json") if tag else RESULTS


def load_results(tag: str = "") -> dict[str, Any]:
    path = results_path(tag)
    return json.loads(path.read_text()) if path.is_file() else {}


def save(results: dict[str, Any]) -> None:
    results["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_json(results_path(results.get("tag", "")), results)


def table(results: dict[str, Any]) -> None:
    ref = results.get("reference_unet_fold0", {})
    print(
        "\n| model | top-1 ssim | top-1 ssim_brain | mean SSIM own (others) | Dice private: originals; reconstructions | target training | decoder training |"
    )
    print("|---|---|---|---|---|---|---|")
    if ref:
        print(
            f"| paper U-Net fold 0 | {ref.get('top1_ssim')} | n/a | {ref.get('ssim_own')} | {ref.get('dice')} | | |"
        )
    for key, name in (("bundle", "MONAI bundle BasicUNet-16"), ("nnunet", "nnU-Net v2 3d_fullres")):
        a = results.get(key, {}).get("audit")
        t = results.get(key, {}).get("training", {})
        if not a:
            print(f"| {name} | (not finished) | | | | {t.get('seconds', '')} | |")
            continue
        s, b = a.get("ssim", {}), a.get("ssim_brain", {})
        print(
            f"| {name} | {s.get('top1')}/{s.get('n')} | {b.get('top1')}/{b.get('n')} | "
            f"{s.get('own', float('nan')):.3f} ({s.get('others', float('nan')):.3f}) | "
            f"{a['dice']['original']:.3f}; {a['dice']['reconstruction']:.3f} | "
            f"{t.get('iterations')} it, {t.get('seconds', 0):.0f} s | {a.get('decoder_seconds') or 0:.0f} s |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/work/bench-ext17"))
    ap.add_argument("--nnunet-root", type=Path, default=Path("/work/bench-nnunet"))
    ap.add_argument("--steps", default="bundle,nnunet")
    ap.add_argument("--bundle-iterations", type=int, default=120)
    ap.add_argument("--bundle-batch", type=int, default=1)
    ap.add_argument("--bundle-lr", type=float, default=2e-3)
    ap.add_argument("--nnunet-epochs", type=int, default=2)
    ap.add_argument("--nnunet-iterations", type=int, default=15, help="per epoch")
    ap.add_argument("--inv-epochs", type=int, default=2)
    ap.add_argument("--flip", action="store_true", help="flip_augment in [inversion]")
    ap.add_argument(
        "--tag",
        default="",
        help="another decoder budget: study-bundle-TAG/, study-nnunet-TAG/ and "
        "results/external_models_ixi_TAG.json (the trained models are shared)",
    )
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    steps = args.steps.split(",")
    results = load_results(args.tag)
    results["tag"] = args.tag
    suffix = f"-{args.tag}" if args.tag else ""
    results.update(
        benchmark="external_models_ixi",
        command=" ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        cpus=os.cpu_count(),
        inversion={"epochs": args.inv_epochs, "flip_augment": args.flip},
    )
    ref = json.loads((ROOT / "benchmarks/results/ixi_dev_study.json").read_text())
    unet = ref["summary"]["runs"]["unet_skull-stripped_bottleneck"]
    results["reference_unet_fold0"] = {"top1_ssim": f"{unet['folds']['0']['ssim']['top1']}/10"}
    study, data = protocol_study(work)
    t0 = time.perf_counter()
    ids, cases = private_data(study, data)
    log(f"fold 0 private set ({len(ids)}): {', '.join(ids)} ({time.perf_counter() - t0:.0f} s)")
    results["members"] = ids

    if "bundle" in steps:
        bundle = work / "bundle"
        res = results.setdefault("bundle", {})
        if not (bundle / "models" / "model.pt").is_file():
            log(f"bundle: training BasicUNet{FEATURES}, {args.bundle_iterations} iterations")
            train_bundle(bundle, cases, args.bundle_iterations, args.bundle_batch, args.bundle_lr)
        res["training"] = json.loads((bundle / "training.json").read_text())
        res["monai_parser_builds"] = check_bundle_with_monai(bundle)
        save(results)
        t = time.perf_counter()
        run_audit(
            work / f"study-bundle{suffix}", f'source = "bundle"\npath = "{bundle}"', ids, args, data
        )
        res["audit_wall_seconds_this_call"] = time.perf_counter() - t
        res["audit"] = audit_summary(work / f"study-bundle{suffix}", ids)
        save(results)
        table(results)

    if "nnunet" in steps:
        root = args.nnunet_root.resolve()
        env = nnunet_env(root)
        res = results.setdefault("nnunet", {})
        if not (root / "raw" / DATASET / "dataset.json").is_file():
            write_raw(root, ids, cases)
        plans = root / "preprocessed" / DATASET / "nnUNetPlans.json"
        done = root / "preprocessed" / DATASET / "plan_and_preprocess.done"
        if not done.is_file():
            res["plan_and_preprocess_seconds"] = plan_and_preprocess(root, env)
            done.write_text("ok\n")
            save(results)
        res["plans_3d_fullres"] = {
            k: json.loads(plans.read_text())["configurations"]["3d_fullres"].get(k)
            for k in (
                "patch_size",
                "spacing",
                "batch_size",
                "normalization_schemes",
                "median_image_size_in_voxels",
            )
        }
        folder = nnunet_folder(root)
        info = folder / "fold_0" / "benchmark_training.json"
        if not (folder / "fold_0" / "checkpoint_final.pth").is_file() or not info.is_file():
            log(
                f"nnunet: training {args.nnunet_epochs} x {args.nnunet_iterations} iterations on CPU"
            )
            atomic_json(info, train_nnunet(ids, args.nnunet_epochs, args.nnunet_iterations, root))
        res["training"] = json.loads(info.read_text())
        res["predictor_accepts"] = check_nnunet_predictor(folder)
        res["folder"] = str(folder)
        save(results)
        t = time.perf_counter()
        run_audit(
            work / f"study-nnunet{suffix}",
            f'source = "nnunet"\npath = "{folder}"\nfold = 0',
            ids,
            args,
            data,
        )
        res["audit_wall_seconds_this_call"] = time.perf_counter() - t
        res["audit"] = audit_summary(work / f"study-nnunet{suffix}", ids)
        save(results)
    table(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
