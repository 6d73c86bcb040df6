"""The inversion decoder trained to convergence: the attacker's validation split (by subject),
early stopping, the best weights kept, learning-rate schedules, attacker-side scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import make_blob_volume
from inversion_audit.attack import InversionConfig

torch = pytest.importorskip("torch")


def _target(seed: int = 0):
    from inversion_audit.models import build_target_network

    torch.manual_seed(seed)
    return build_target_network("unet", n_classes=2, depth=2, base_filters=8).eval()


def _images(n: int = 6, size: int = 16) -> list[np.ndarray]:
    return [make_blob_volume(shape=(size,) * 3, seed=i)[0] for i in range(n)]


def _scores(reconstruction: np.ndarray, original: np.ndarray) -> dict[str, float]:
    from inversion_audit.metrics import correlation, ssim

    return {
        "ssim": ssim(reconstruction, original, data_range=1.0),
        "correlation": correlation(reconstruction, original),
    }


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the split -----------------------------------------------------------------------------


def test_split_is_by_subject_and_deterministic_by_seed():
    from inversion_audit.attack.convergence import split_attack_set

    train, val = split_attack_set(10, 0.2, seed=3)
    assert (train, val) == split_attack_set(10, 0.2, seed=3)
    assert len(val) == 2 and sorted(train + val) == list(range(10))
    draws = {tuple(split_attack_set(10, 0.2, seed=s)[1]) for s in range(20)}
    assert len(draws) > 1  # the seed draws it
    # images of one subject (one id) stay on one side
    ids = ["a", "a", "b", "c", "c", "c", "d", "e"]
    for seed in range(10):
        train, val = split_attack_set(len(ids), 0.4, seed, ids)
        held = {ids[i] for i in val}
        assert len(held) == 2  # round(5 subjects * 0.4)
        assert held.isdisjoint({ids[i] for i in train})
        assert sorted(train + val) == list(range(len(ids)))
    # at least one and at most all but one subject held out; nothing without a fraction
    assert len(split_attack_set(3, 0.01, 0)[1]) == 1 and len(split_attack_set(3, 0.99, 0)[1]) == 2
    assert split_attack_set(4, 0.0, 0) == ([0, 1, 2, 3], [])
    with pytest.raises(ValueError, match="at least 2 attack subjects"):
        split_attack_set(3, 0.5, 0, ["x", "x", "x"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"validation_fraction": -0.1}, "validation_fraction"),
        ({"validation_fraction": 0.2, "patience": -1}, "patience"),
        ({"validation_fraction": 0.2, "patience": 1.5}, "patience"),
        ({"validation_fraction": 0.2, "min_delta": math.nan}, "min_delta"),
        ({"validation_fraction": 0.2, "lr_schedule": "step"}, "lr_schedule"),
        ({"patience": 3}, "validation_fraction > 0"),
        ({"lr_schedule": "plateau"}, "validation_fraction > 0"),
    ],
)
def test_bad_settings_are_refused_before_training(kwargs, message):
    from inversion_audit.attack import train_inversion

    with pytest.raises(ValueError, match=message):
        train_inversion(_target(), _images(3), InversionConfig(epochs=1), "cpu", **kwargs)


def test_validation_subjects_and_their_mirrors_never_train(monkeypatch, one_thread):
    """Every training batch holds training subjects only (their mirrors included); the
    validation loss sees the validation subjects only."""
    import inversion_audit.attack.inversion as inversion
    from inversion_audit.attack.convergence import split_attack_set
    from inversion_audit.training.losses import InversionLoss

    seen: list[tuple[bool, float]] = []

    class Spy(InversionLoss):
        def forward(self, reconstruction, image):
            for k in range(image.shape[0]):
                seen.append((torch.is_grad_enabled(), round(float(image[k].double().sum()), 3)))
            return super().forward(reconstruction, image)

    monkeypatch.setattr(inversion, "InversionLoss", Spy)
    images = _images(6)
    ids = ["s0", "s1", "s1", "s2", "s3", "s4"]  # s1 has two scans
    config = InversionConfig(epochs=2, batch_size=2, seed=5, flip_augment=True)
    _, history = inversion.train_inversion(
        _target(), images, config, "cpu", ids=ids, validation_fraction=0.4
    )
    train, val = split_attack_set(6, 0.4, 5, ids)
    total = [round(float(np.asarray(i, np.float32).astype(np.float64).sum()), 3) for i in images]
    assert {s for grad, s in seen if grad} == {total[i] for i in train}
    assert {s for grad, s in seen if not grad} == {total[i] for i in val}
    assert (history.n_train, history.n_val) == (2 * len(train), len(val))


# --- the old path --------------------------------------------------------------------------


def test_no_validation_split_is_the_old_training(one_thread):
    """The defaults and explicit zeros train the same weights, bit for bit, as the loop the
    settings were added to (its reference numbers: ``test_fit.REFERENCE["inversion"]``)."""
    from inversion_audit.attack import train_inversion

    images = _images(4)
    config = InversionConfig(epochs=2, batch_size=2, seed=1, flip_augment=True)
    a, ha = train_inversion(_target(), images, config, "cpu")
    b, hb = train_inversion(
        _target(),
        images,
        config,
        "cpu",
        validation_fraction=0.0,
        patience=0,
        min_delta=0.0,
        lr_schedule="none",
        validation_metrics=_scores,
    )
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ha.step_loss == hb.step_loss and ha.epoch_loss == hb.epoch_loss
    assert hb.val_loss == [] and hb.n_val == 0 and hb.val_metrics == {}
    assert hb.stopped_by == "budget" and hb.epochs_run == hb.budget_epochs == 2
    assert hb.lr == [config.lr, config.lr] and hb.best_val_loss is None


# --- early stopping and the best weights ---------------------------------------------------


def _independent_val_loss(target, decoder, images, config, fraction, ids=None) -> float:
    """The returned decoder's loss on the validation subjects, computed here from scratch."""
    from inversion_audit.attack.convergence import split_attack_set
    from inversion_audit.training.losses import InversionLoss

    _, val = split_attack_set(len(images), fraction, config.seed, ids)
    loss_fn = InversionLoss(config.ssim_weight, config.gradient_weight)
    decoder.eval()
    device = next(target.parameters()).device
    losses = []
    with torch.no_grad():
        for i in val:
            x = torch.from_numpy(np.asarray(images[i], np.float32))[None, None].to(device)
            latent = target.encode(x).for_threat_model(config.threat_model)
            losses.append(float(loss_fn(decoder(latent).float(), x)))
    return float(np.mean(losses))


def test_patience_stops_on_a_plateau_and_keeps_the_best_weights(one_thread):
    from inversion_audit.attack import reconstruct, train_inversion
    from inversion_audit.metrics import correlation, ssim

    target, images = _target(), _images(6)
    config = InversionConfig(epochs=200, batch_size=2, lr=3e-2, seed=0)
    decoder, h = train_inversion(
        target,
        images,
        config,
        "cpu",
        validation_fraction=0.34,
        patience=2,
        min_delta=1e-3,
        validation_metrics=_scores,
    )
    assert h.stopped_by == "plateau" and h.stopped_early and h.epochs_run < h.budget_epochs
    assert len(h.val_loss) == len(h.epoch_loss) == len(h.lr) == h.epochs_run
    assert h.best_epoch == h.epochs_run - 1 - h.patience  # the last `patience` did not count
    assert h.best_val_loss == h.val_loss[h.best_epoch] and h.final_val_loss == h.val_loss[-1]
    # the decoder returned is the best epoch's, not the last one's
    got = _independent_val_loss(target, decoder, images, config, 0.34)
    assert got == pytest.approx(h.best_val_loss, rel=1e-5)
    assert got != pytest.approx(h.final_val_loss, rel=1e-5)
    # the attacker-side scores are the study's metrics on reconstruct()'s output
    from inversion_audit.attack.convergence import split_attack_set

    _, val = split_attack_set(6, 0.34, config.seed)
    pairs = [(reconstruct(target, decoder, images[i], "cpu"), images[i]) for i in val]
    want_ssim = np.mean([ssim(r, o, data_range=1.0) for r, o in pairs])
    want_corr = np.mean([correlation(r, o) for r, o in pairs])
    assert h.val_ssim == pytest.approx(want_ssim, abs=1e-6)
    assert h.val_correlation == pytest.approx(want_corr, abs=1e-6)
    assert -1 <= h.val_ssim <= 1 and 0 < h.val_correlation <= 1


def test_a_falling_curve_stops_on_the_budget(one_thread):
    from inversion_audit.attack import train_inversion

    target, images = _target(), _images(5)
    config = InversionConfig(epochs=3, batch_size=2, lr=3e-3, seed=0)
    decoder, h = train_inversion(
        target, images, config, "cpu", validation_fraction=0.2, patience=5, min_delta=0.0
    )
    assert h.stopped_by == "budget" and not h.stopped_early
    assert h.epochs_run == h.budget_epochs == 3 and h.steps == 3 * 2
    assert h.val_loss[-1] < h.val_loss[0]  # still falling when the budget ran out
    got = _independent_val_loss(target, decoder, images, config, 0.2)
    assert got == pytest.approx(h.best_val_loss, rel=1e-5)
    assert h.val_metrics == {}  # no scorer given


# --- learning-rate schedules ---------------------------------------------------------------


def test_cosine_schedule_anneals_over_the_budget(one_thread):
    from inversion_audit.attack import train_inversion

    config = InversionConfig(epochs=4, batch_size=3, lr=1e-2, seed=0)
    _, h = train_inversion(_target(), _images(3), config, "cpu", lr_schedule="cosine")
    want = [0.5 * 1e-2 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert h.lr == pytest.approx(want) and h.lr_schedule == "cosine"


def test_plateau_schedule_lowers_the_rate_when_validation_stalls(one_thread):
    """With a min_delta no change can meet, every epoch after the first is a bad one: the
    rate halves once ``plateau_patience(0) = 2`` bad epochs are exceeded."""
    from inversion_audit.attack import train_inversion
    from inversion_audit.attack.convergence import PLATEAU_FACTOR, plateau_patience

    assert (plateau_patience(0), plateau_patience(1), plateau_patience(6)) == (2, 1, 3)
    config = InversionConfig(epochs=6, batch_size=4, lr=1e-2, seed=0)
    _, h = train_inversion(
        _target(),
        _images(5),
        config,
        "cpu",
        validation_fraction=0.2,
        min_delta=1e6,
        lr_schedule="plateau",
    )
    assert h.stopped_by == "budget"
    assert h.lr == pytest.approx([1e-2] * 4 + [1e-2 * PLATEAU_FACTOR] * 2)


def test_latents_too_big_to_cache_are_encoded_per_batch(monkeypatch, one_thread):
    """The path for large attack sets (no latent cache) validates the same subjects."""
    import inversion_audit.attack.inversion as inversion

    target, images = _target(), _images(5)
    config = InversionConfig(epochs=2, batch_size=2, lr=1e-2, seed=0)
    kwargs = {"validation_fraction": 0.4, "validation_metrics": _scores}
    cached, hc = inversion.train_inversion(target, images, config, "cpu", **kwargs)
    monkeypatch.setattr(inversion, "LATENT_CACHE_BYTES", 0)
    encoded, he = inversion.train_inversion(target, images, config, "cpu", **kwargs)
    assert he.val_loss == pytest.approx(hc.val_loss, rel=1e-4)
    assert he.val_metrics == pytest.approx(hc.val_metrics, rel=1e-4, abs=1e-6)
    got = _independent_val_loss(target, encoded, images, config, 0.4)
    assert got == pytest.approx(he.best_val_loss, rel=1e-5)


@pytest.mark.gpu
def test_convergence_on_cuda_with_amp():
    from inversion_audit.attack import train_inversion

    target, images = _target().cuda(), _images(6)
    config = InversionConfig(epochs=40, batch_size=2, lr=3e-2, seed=0)
    decoder, h = train_inversion(
        target,
        images,
        config,
        "cuda",
        validation_fraction=0.34,
        patience=2,
        min_delta=1e-3,
        lr_schedule="plateau",
        validation_metrics=_scores,
    )
    assert h.device.startswith("cuda") and np.isfinite(h.val_loss).all()
    assert h.best_val_loss == h.val_loss[h.best_epoch] and -1 <= h.val_ssim <= 1
    with torch.autocast("cuda", dtype=torch.float16):
        got = _independent_val_loss(target, decoder, images, config, 0.34)
    assert got == pytest.approx(h.best_val_loss, rel=1e-2)
