"""Attack power: how far each run's inversion decoder was trained, and what that means for
the identification rate the report gives.

A privacy audit only bounds from below what an attacker can learn (Jagielski et al.,
"Auditing differentially private machine learning", NeurIPS 2020): a weak attacker that
finds nothing proves nothing. A decoder trained with a validation split (part of the
attack set held out, on the attacker's side) stops when its validation loss stops
improving ("plateau", Prechelt, "Early stopping - but when?", 1998) or when its epoch
budget is spent ("budget"). The attacker can score its decoder on those held-out subjects
without any private data (SSIM, Wang et al. 2004; correlation, as the paper's MCC:
Subbanna et al., Sensors 2021); the report sets those numbers beside the private-set ones.

The rule: a run whose decoder stopped at its budget, or whose convergence was not measured
(no split, or a decoder trained before it was recorded), gives an identification rate that
is a **lower bound**; a larger budget may find more, so its risk is never called "low".
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..study.index import StudyIndex

__all__ = [
    "DecoderPower",
    "ENABLE_HINT",
    "decoder_power",
    "lower_bound_sentence",
    "qualify_risk",
    "qualify_summary",
    "run_power",
]

#: how to measure convergence, quoted when no decoder had a validation split
ENABLE_HINT = "`[inversion] validation_fraction = 0.2` and `patience = 5`"


@dataclass(frozen=True)
class DecoderPower:
    """How one run's decoder trained in one fold (from its sidecar).

    ``stopped_by`` is ``"plateau"`` or ``"budget"``, ``None`` when not measured (no
    validation split, or a decoder trained before convergence was recorded).
    ``final_loss`` is the last epoch's training loss; ``val_ssim`` and
    ``val_correlation`` are the returned decoder's mean scores on its ``n_val`` held-out
    attack-set images (``None`` without a split).
    """

    run: str
    fold: int
    stopped_by: str | None
    epochs_run: int | None
    budget_epochs: int | None
    steps: int | None
    final_loss: float | None
    val_ssim: float | None
    val_correlation: float | None
    n_val: int
    best_val_loss: float | None = None
    train_loss: tuple[float | None, ...] = ()
    val_loss: tuple[float | None, ...] = ()

    @property
    def lower_bound(self) -> bool:
        """Whether this decoder's findings are a lower bound (not stopped by a plateau)."""
        return self.stopped_by != "plateau"

    def to_dict(self) -> dict:
        return {
            "fold": self.fold,
            "stopped_by": self.stopped_by,
            "epochs_run": self.epochs_run,
            "budget_epochs": self.budget_epochs,
            "steps": self.steps,
            "final_loss": self.final_loss,
            "best_val_loss": self.best_val_loss,
            "val_ssim": self.val_ssim,
            "val_correlation": self.val_correlation,
            "n_val": self.n_val,
            "train_loss": list(self.train_loss),
            "val_loss": list(self.val_loss),
        }


def _float(x) -> float | None:
    """A finite number as a float, else ``None`` (a sidecar is untrusted)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def _int(x) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) and x >= 0 else None


def _curve(x) -> tuple[float | None, ...]:
    return tuple(_float(v) for v in x) if isinstance(x, list) else ()


def _dict(x) -> dict:
    return x if isinstance(x, dict) else {}


def power_from_metadata(run: str, fold: int, meta: dict) -> DecoderPower:
    """A :class:`DecoderPower` from a decoder sidecar (its ``convergence`` table when present,
    else the epochs and losses every sidecar records)."""
    conv = _dict(meta.get("convergence"))
    history = _dict(meta.get("history"))
    n_val = _int(conv.get("n_val")) or 0
    stop = conv.get("stopped_by")
    train = (
        _curve(conv["train_loss"]) if "train_loss" in conv else _curve(history.get("epoch_loss"))
    )
    finite = [v for v in train if v is not None]
    final = finite[-1] if finite else _float(_dict(meta.get("final_losses")).get("train"))
    scores = _dict(conv.get("val_metrics"))
    epochs = _int(conv.get("epochs_run"))
    budget = _int(conv.get("budget_epochs"))
    return DecoderPower(
        run=run,
        fold=fold,
        stopped_by=stop if n_val and stop in ("plateau", "budget") else None,
        epochs_run=epochs if epochs is not None else _int(meta.get("epochs_run")),
        budget_epochs=budget if budget is not None else _int(meta.get("epochs")),
        steps=_int(conv.get("steps_run")),
        final_loss=final,
        val_ssim=_float(scores.get("ssim")) if n_val else None,
        val_correlation=_float(scores.get("correlation")) if n_val else None,
        n_val=n_val,
        best_val_loss=_float(conv.get("best_val_loss")) if n_val else None,
        train_loss=train,
        val_loss=_curve(conv.get("val_loss")) if n_val else (),
    )


def decoder_power(index: StudyIndex) -> list[DecoderPower]:
    """One :class:`DecoderPower` per run and fold with a decoder in the study, in (run, fold)
    order (read through :meth:`StudyIndex.decoder_records`)."""
    return [
        power_from_metadata(r["run"], r["fold"], r["metadata"]) for r in index.decoder_records()
    ]


def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


def run_power(powers: Sequence[DecoderPower], run: str) -> dict:
    """A run's attack power over its folds (JSON-safe), worst case first.

    ``lower_bound`` is true when any fold's decoder stopped at its budget or was not
    measured (and when the run has no decoder record at all); ``reason`` says which.
    ``val_ssim`` and ``val_correlation`` are means over the measured folds; ``folds``
    holds each fold's :meth:`DecoderPower.to_dict`.
    """
    mine = [p for p in powers if p.run == run]
    budget = [p.fold for p in mine if p.stopped_by == "budget"]
    unmeasured = [p.fold for p in mine if p.stopped_by is None]
    if not mine:
        reason = "the study holds no record of its decoder's training"
    elif budget:
        reason = f"its decoder stopped at its epoch budget ({_folds(budget, mine)})"
    elif unmeasured:
        reason = (
            "its decoder's convergence was not measured "
            f"(no validation split; {_folds(unmeasured, mine)})"
        )
    else:
        reason = None
    stops = sorted({p.stopped_by or "not measured" for p in mine})
    return {
        "run": run,
        "lower_bound": reason is not None,
        "reason": reason,
        "stopped_by": stops,
        "measured": bool(mine) and not unmeasured,
        "val_ssim": _mean(p.val_ssim for p in mine),
        "val_correlation": _mean(p.val_correlation for p in mine),
        "n_val": sum(p.n_val for p in mine),
        "folds": [p.to_dict() for p in mine],
    }


def _folds(which: list[int], mine: list[DecoderPower]) -> str:
    if len(which) == len(mine):
        return "every fold" if len(mine) > 1 else f"fold {which[0]}"
    return "fold" + ("s " if len(which) > 1 else " ") + ", ".join(str(f) for f in which)


# -- the lower-bound rule in the summary -------------------------------------------------------------
def lower_bound_sentence(power: dict, risk_hidden: bool = False) -> str | None:
    """The summary's sentence for a run whose identification rate is a lower bound, else
    ``None``; ``risk_hidden``: its risk level was withheld (:func:`qualify_risk`), which the
    sentence then explains."""
    if not power["lower_bound"]:
        return None
    why = " (the risk is not shown: a weak attacker finding little proves little)"
    hint = f" Set {ENABLE_HINT} to train it to convergence." if not power["measured"] else ""
    return (
        f"Its identification rate is a **lower bound**: {power['reason']}, so a larger budget "
        f"may find more{why if risk_hidden else ''}.{hint}"
    )


def qualify_risk(level: str, power: dict) -> str:
    """The risk level to print: ``"low"`` becomes ``"not shown"`` when the run's
    identification rate is a lower bound; any other level is kept."""
    return "not shown" if level == "low" and power["lower_bound"] else level


_RISK = re.compile(r"(risk: \*\*)(\w[\w ]*)(\*\*)")


def qualify_summary(lines: list[str], powers: dict[str, dict]) -> list[str]:
    """The plain summary's lines (``- **<run>**: ...``) with the lower-bound rule applied:
    a run's risk level through :func:`qualify_risk` and its :func:`lower_bound_sentence`
    appended; a line of a run not in ``powers`` is left as it is."""
    out = []
    for line in lines:
        run = next((r for r in powers if line.startswith(f"- **{r}**")), None)
        if run is None:
            out.append(line)
            continue
        power = powers[run]
        qualified = _RISK.sub(lambda m, p=power: m[1] + qualify_risk(m[2], p) + m[3], line)
        sentence = lower_bound_sentence(power, risk_hidden=qualified != line)
        line = qualified
        out.append(f"{line} {sentence}" if sentence else line)
    return out
