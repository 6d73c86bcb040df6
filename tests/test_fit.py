"""The one training loop (``training.fit``): budgets, early stopping, cancel, AMP, and the
trainers built on it reproducing the weights of the loops it replaced."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_blob_volume
from inversion_audit.errors import JobCancelled


def _halving_problem(lr: float = 0.25, batches_per_epoch: int = 2):
    """``loss = (w - 1)^2`` from ``w = 0`` with SGD: each step halves ``w - 1`` at lr 0.25,
    so step ``t`` (0-based) has loss ``0.25 ** t`` exactly (powers of two)."""
    import torch
    from torch import nn

    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    x = torch.ones(1, 1)

    def epoch_batches(epoch: int):
        yield from [x] * batches_per_epoch

    def loss_of(batch):
        return ((model(batch) - 1) ** 2).mean()

    return model, optimizer, epoch_batches, loss_of, torch.device("cpu")


def test_epoch_budget_runs_every_step_and_reports_progress():
    from inversion_audit.training.fit import fit

    model, opt, batches, loss_of, dev = _halving_problem()
    calls = []
    report = lambda d, t, s: calls.append((d, t, s))  # noqa: E731
    history = fit(model, opt, batches, loss_of, dev, epochs=3, progress=report, stage="toy",
                  steps_per_epoch=2)  # fmt: skip
    assert history.step_loss == [0.25**t for t in range(6)]
    assert history.train_loss == [(0.25 ** (2 * e) + 0.25 ** (2 * e + 1)) / 2 for e in range(3)]
    assert (history.steps, history.epochs, history.stopped_by) == (6, 3, "budget")
    assert history.val_loss == [] and history.best_epoch == 2 and history.seconds > 0
    assert calls == [(d, 6, "toy") for d in range(7)]


def test_step_budget_cuts_the_last_epoch_short():
    from inversion_audit.training.fit import fit

    model, opt, batches, loss_of, dev = _halving_problem()
    calls = []
    history = fit(model, opt, batches, loss_of, dev, steps=5, steps_per_epoch=2,
                  validate=lambda: 7.0, progress=lambda d, t, s: calls.append(t))  # fmt: skip
    assert history.step_loss == [0.25**t for t in range(5)]
    assert history.train_loss[-1] == 0.25**4  # the third epoch took one step
    assert (history.steps, history.epochs, history.stopped_by) == (5, 3, "budget")
    assert len(history.val_loss) == len(history.train_loss) == 3
    assert set(calls) == {5}
    # both budgets: whichever is spent first
    model, opt, batches, loss_of, dev = _halving_problem()
    both = fit(model, opt, batches, loss_of, dev, epochs=1, steps=10, steps_per_epoch=2)
    assert (both.steps, both.epochs, both.stopped_by) == (2, 1, "budget")


def test_a_budget_is_required():
    from inversion_audit.training.fit import fit

    model, opt, batches, loss_of, dev = _halving_problem()
    with pytest.raises(ValueError, match="budget"):
        fit(model, opt, batches, loss_of, dev)
    with pytest.raises(ValueError, match="positive"):
        fit(model, opt, batches, loss_of, dev, steps=0)


def test_plateau_on_the_training_loss_with_min_delta():
    """Epoch means 0.625 * 0.0625**e: improvements of 0.586, 0.037, then 0.0023 and less,
    which min_delta 0.01 does not count; patience 2 stops after epoch 4 (of a budget of 10)."""
    from inversion_audit.training.fit import fit

    model, opt, batches, loss_of, dev = _halving_problem()
    history = fit(model, opt, batches, loss_of, dev, epochs=10, patience=2, min_delta=0.01)
    assert history.train_loss == pytest.approx([0.625 * 0.0625**e for e in range(5)], rel=1e-12)
    assert (history.epochs, history.steps, history.stopped_by) == (5, 10, "plateau")


def test_plateau_on_validation_restores_the_best_weights():
    """Validation values 1.0, 0.5, 0.6, 0.55, 0.7: the best is epoch 1; patience 2 ends
    training after epoch 3 and the weights of epoch 1 come back."""
    import torch

    from inversion_audit.training.fit import fit

    model, opt, batches, loss_of, dev = _halving_problem()
    values = iter([1.0, 0.5, 0.6, 0.55, 0.7, 0.1])
    after_epoch = []

    def validate() -> float:
        after_epoch.append(model.weight.detach().clone())
        return next(values)

    history = fit(model, opt, batches, loss_of, dev, epochs=8, validate=validate, patience=2)
    assert history.val_loss == [1.0, 0.5, 0.6, 0.55]
    assert (history.best_epoch, history.stopped_by, history.epochs) == (1, "plateau", 4)
    assert torch.equal(model.weight, after_epoch[1])
    assert not torch.equal(model.weight, after_epoch[-1])
    # min_delta: 0.95 is no improvement on 1.0 by more than 0.1, 0.85 is
    model, opt, batches, loss_of, dev = _halving_problem()
    values = iter([1.0, 0.95, 0.85, 0.8, 0.78])
    history = fit(
        model, opt, batches, loss_of, dev, epochs=8, validate=lambda: next(values), patience=2,
        min_delta=0.1,
    )  # fmt: skip
    assert (history.best_epoch, history.epochs, history.stopped_by) == (2, 5, "plateau")


def test_a_plateau_on_the_last_epoch_is_the_budget():
    from inversion_audit.training.fit import fit

    model, opt, batches, loss_of, dev = _halving_problem()
    values = iter([1.0, 2.0])
    history = fit(
        model, opt, batches, loss_of, dev, epochs=2, validate=lambda: next(values), patience=1
    )
    assert (history.stopped_by, history.best_epoch) == ("budget", 0)


def test_scheduler_steps_once_per_epoch_and_the_rates_are_recorded():
    """A StepLR halves the rate after every epoch; ReduceLROnPlateau is given the monitored
    value (a constant validation loss: no improvement after the first epoch)."""
    import torch

    from inversion_audit.training.fit import fit

    model, opt, batches, loss_of, dev = _halving_problem()
    step = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    history = fit(model, opt, batches, loss_of, dev, epochs=3, scheduler=step)
    assert history.lr == [0.25, 0.125, 0.0625] and opt.param_groups[0]["lr"] == 0.03125
    model, opt, batches, loss_of, dev = _halving_problem()
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=1)
    history = fit(model, opt, batches, loss_of, dev, epochs=4, validate=lambda: 1.0,
                  scheduler=plateau)  # fmt: skip
    assert history.lr == pytest.approx([0.25, 0.25, 0.25, 0.025])
    # without a scheduler the rate stays, and is still recorded
    model, opt, batches, loss_of, dev = _halving_problem()
    assert fit(model, opt, batches, loss_of, dev, epochs=2).lr == [0.25, 0.25]


def test_cancel_from_progress_stops_at_once_with_the_history_so_far():
    from inversion_audit.training.fit import fit

    model, opt, batches, loss_of, dev = _halving_problem()

    def progress(done: int, total: int, stage: str) -> None:
        if done == 3:
            raise JobCancelled("stop")

    with pytest.raises(JobCancelled) as caught:
        fit(model, opt, batches, loss_of, dev, epochs=5, progress=progress)
    history = caught.value.history
    assert (history.stopped_by, history.steps, history.epochs) == ("cancel", 3, 1)


def test_cancelled_vae_training_writes_nothing(tmp_path):
    """The VAE stage trains, then saves: a cancel during training leaves the folder empty."""
    from inversion_audit.defences.obfuscation import ObfuscationConfig, train_vae
    from inversion_audit.defences.vae_io import save_vae

    images = [make_blob_volume(shape=(16,) * 3, seed=i)[0] for i in range(3)]
    config = ObfuscationConfig(vae_filters=2, vae_latent=2, vae_epochs=3)
    seen = []

    def progress(done: int, total: int, stage: str) -> None:
        seen.append((done, total, stage))
        if done == 4:
            raise JobCancelled("stop")

    with pytest.raises(JobCancelled):
        vae, _ = train_vae(images, config, progress=progress)
        save_vae(tmp_path / "vae", vae, config)
    assert list(tmp_path.iterdir()) == []
    assert seen[0] == (0, 9, "train-vae") and seen[-1] == (4, 9, "train-vae")
    vae, losses = train_vae(images, config, progress=lambda *a: None)
    assert vae.history.steps == len(losses) == 9 and vae.history.stopped_by == "budget"


def test_same_seed_same_history_and_weights():
    import torch
    from torch import nn

    from inversion_audit.training.fit import fit

    def run(seed: int):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        x, y = torch.randn(16, 3), torch.randn(16, 1)
        model = nn.Linear(3, 1)
        opt = torch.optim.Adam(model.parameters(), lr=0.05)

        def batches(epoch: int):
            order = rng.permutation(16)
            for s in range(0, 16, 4):
                yield order[s : s + 4]

        def loss_of(rows):
            return ((model(x[rows]) - y[rows]) ** 2).mean()

        h = fit(model, opt, batches, loss_of, torch.device("cpu"), epochs=3, validate=lambda: 0.0)
        return h, model.weight.detach().clone()

    (h1, w1), (h2, w2), (h3, w3) = run(1), run(1), run(2)
    assert h1.step_loss == h2.step_loss and h1.train_loss == h2.train_loss and torch.equal(w1, w2)
    assert len(h1.step_loss) == h1.steps == 12 and len(h1.train_loss) == len(h1.val_loss) == 3
    assert h1.step_loss != h3.step_loss and not torch.equal(w1, w3)


# --- the trainers on fit reproduce the loops they replaced -------------------------------------

#: Independent reference numbers computed by the training loops *before* they moved onto
#: ``training.fit`` (the five separate loops of the repository as it stood), on the tiny
#: seeded CPU problems of ``_reference_runs`` with one torch thread. With the same seeds the
#: new code gave bitwise-equal weights (every tensor ``torch.equal``) and the same losses.
#: ``digest`` is (sum, sum of squares) of all floating tensors of the state dict, in float64.
REFERENCE = {
    "target_unet": {
        "step_loss": [1.5847203731536865, 1.5248286724090576, 1.5217289924621582, 1.5132031440734863],
        "digest": [44.79028251211275, 62.72702321051367],
    },
    "target_segnet": {
        "step_loss": [1.9660019874572754, 1.94040846824646],
        "digest": [25.706963324046228, 30.48849272014117],
    },
    "target_val_patches": {
        "epoch_loss": [1.7731550931930542, 1.7097816169261932, 1.6525854170322418, 1.6150179505348206, 1.5883353054523468],
        "val_loss": [2.0476813316345215, 1.9716672897338867, 1.87906813621521, 1.796245813369751, 1.7315623760223389],
        "best_epoch": 4,
        "digest": [34.28169452158909, 61.186368022181846],
    },
    "target_early": {
        "val_loss": [1.9571232795715332, 1.8499116897583008, 1.7598633766174316, 2.0188686847686768],
        "best_epoch": 2,
        "stopped_early": True,
        "digest": [578.1610027532588, 13139.83581282481],
    },
    "target_dp": {
        "step_loss": [2.177807569503784, 2.177548885345459, 2.1746325492858887],
        "privacy_steps": 4,
        "digest": [34.198837683870806, 58.94073601639683],
    },
    "inversion": {
        "step_loss": [0.7650972604751587, 0.735939621925354, 0.7056569457054138, 0.6745641827583313, 0.6417379975318909, 0.574366569519043],
        "loss_terms": {"mse": 0.1219104528427124, "ssim": 0.952721357345581, "gradient": 0.0639035739004612},
        "digest": [23.166830621630652, 21.374178955722353],
    },
    "reid_volume": {
        "epoch_loss": [0.6984457969665527, 0.6690804958343506],
        "digest": [20.377067250094115, 40.43245478812256],
    },
    "reid_patches": {
        "epoch_loss": [0.705967644850413, 0.6949800153573354],
        "digest": [32.68126834452414, 40.805109746962614],
    },
    "vae": {
        "step_loss": [0.1903974711894989, 0.18930858373641968, 0.18682369589805603, 0.18597474694252014, 0.18440935015678406, 0.18241803348064423, 0.18186907470226288, 0.18009765446186066],
        "digest": [-1.3156227262225002, 6.097698806752367],
    },
}  # fmt: skip


def _digest(net) -> list[float]:
    tensors = [v.detach().double() for v in net.state_dict().values() if v.is_floating_point()]
    return [float(sum(t.sum() for t in tensors)), float(sum((t * t).sum() for t in tensors))]


def _volumes(n: int, size: int, first_seed: int = 0):
    pairs = [make_blob_volume(shape=(size,) * 3, seed=first_seed + i) for i in range(n)]
    return [p[0] for p in pairs], [(p[1] > 0).astype(np.int32) + (p[1] > 1) for p in pairs]


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _target_config(name: str):
    from inversion_audit.training import TargetConfig
    from inversion_audit.training.dp import with_dp

    small = {"depth": 2, "base_filters": 2, "batch_size": 2}
    return {
        "target_unet": lambda: TargetConfig(**small, epochs=2, seed=1),
        "target_segnet": lambda: TargetConfig(
            arch="segnet", depth=2, base_filters=2, epochs=1, batch_size=3, seed=1
        ),
        "target_val_patches": lambda: TargetConfig(
            **small,
            epochs=5,
            seed=2,
            patch_size=(8, 8, 8),
            patches_per_subject=2,
            val_fraction=0.25,
            patience=1,
        ),  # fmt: skip
        "target_early": lambda: TargetConfig(
            **small, epochs=8, seed=2, lr=0.05, val_fraction=0.25, patience=1
        ),
        "target_dp": lambda: with_dp(
            TargetConfig(**small, epochs=2, seed=3),
            {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "delta": 1e-3},
        ),
    }[name]()


def _check(name: str, got: dict) -> None:
    want = REFERENCE[name]
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (name, key)


TARGET_CASES = ["target_unet", "target_segnet", "target_val_patches", "target_early", "target_dp"]


@pytest.mark.parametrize("name", TARGET_CASES)
def test_train_target_reproduces_the_old_loop(name, one_thread):
    from inversion_audit.training import train_target

    images, labels = _volumes(4, 16)
    if name == "target_val_patches":
        extra = _volumes(1, 16, 10)
        images, labels = images + extra[0], labels + extra[1]
    if name == "target_early":
        images, labels = _volumes(5, 16)
    model, h = train_target(images, labels, _target_config(name), device="cpu")
    got = {"step_loss": h.step_loss, "epoch_loss": h.epoch_loss, "val_loss": h.val_loss,
           "best_epoch": h.best_epoch, "stopped_early": h.stopped_early,
           "privacy_steps": h.privacy.get("steps"), "digest": _digest(model)}  # fmt: skip
    _check(name, got)
    assert len(h.step_loss) == h.steps and len(h.epoch_loss) == len(h.val_loss or h.epoch_loss)
    assert h.stopped_by == ("plateau" if h.stopped_early else "budget")


def test_inversion_reid_and_vae_reproduce_the_old_loops(one_thread):
    from inversion_audit.attack import InversionConfig, train_inversion
    from inversion_audit.defences.obfuscation import ObfuscationConfig, train_vae
    from inversion_audit.matching.reid import ReidConfig, train_reid
    from inversion_audit.matching.reid_patches import train_patch_reid
    from inversion_audit.training import train_target

    images, labels = _volumes(4, 16)
    target, _ = train_target(images, labels, _target_config("target_unet"), device="cpu")
    config = InversionConfig(
        threat_model="bottleneck+skips", epochs=2, batch_size=2, seed=4, ssim_weight=0.5,
        gradient_weight=0.5, flip_augment=True,
    )  # fmt: skip
    decoder, h = train_inversion(target, images[:3], config, device="cpu")
    _check(
        "inversion",
        {"step_loss": h.step_loss, "loss_terms": h.loss_terms, "digest": _digest(decoder)},
    )

    rng = np.random.default_rng(0)
    recons = [np.clip(i + rng.normal(0, 0.05, i.shape), 0, 1).astype(np.float32) for i in images]
    small = {"epochs": 2, "batch_size": 4, "base_filters": 2, "embed_dim": 8}
    rcfg = ReidConfig(mode="volume", input_size=16, seed=5, **small)
    net, h = train_reid(recons, images, rcfg, device="cpu")
    _check("reid_volume", {"epoch_loss": h["epoch_loss"], "digest": _digest(net)})
    assert h["stopped_by"] == "budget" and h["steps"] == 4

    big, big_labels = _volumes(3, 24, 20)
    brecons = [np.clip(i + rng.normal(0, 0.05, i.shape), 0, 1).astype(np.float32) for i in big]
    pcfg = ReidConfig(patch_size=16, patches_per_subject=2, seed=6, min_inside=0.3, **small)
    net, h = train_patch_reid(brecons, big, [lab > 0 for lab in big_labels], pcfg, device="cpu")
    _check("reid_patches", {"epoch_loss": h["epoch_loss"], "digest": _digest(net)})

    vae, losses = train_vae(
        images, ObfuscationConfig(vae_filters=2, vae_latent=2, vae_epochs=2, seed=7)
    )
    _check("vae", {"step_loss": losses, "digest": _digest(vae)})


@pytest.mark.gpu
def test_amp_on_cuda_only_where_allowed():
    import torch
    from torch import nn

    from inversion_audit.training.fit import fit

    dev = torch.device("cuda")
    seen = []

    def run(amp: bool):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 1, 1)).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        x = torch.rand(2, 1, 16, 16, 16)

        def batches(epoch: int):
            yield x  # fit's caller moves it (pinned, non-blocking)

        def loss_of(batch):
            from inversion_audit.training.loop import to_device

            out = model(to_device(batch, dev))
            seen.append((amp, torch.is_autocast_enabled("cuda"), out.dtype))
            return ((out.float() - 0.5) ** 2).mean()

        return fit(model, opt, batches, loss_of, dev, epochs=3, amp=amp)

    with_amp, without = run(True), run(False)
    assert torch.backends.cudnn.benchmark
    assert {s for s in seen if s[0]} == {(True, True, torch.float16)}
    assert {s for s in seen if not s[0]} == {(False, False, torch.float32)}
    for h in (with_amp, without):
        assert len(h.step_loss) == 3 and np.isfinite(h.step_loss).all()
        assert h.step_loss[-1] < h.step_loss[0]
