"""The report's "Attack power" section: each run's decoder training (its stop, epochs and
attacker-side validation scores) beside its private-set numbers, with a loss-curve figure
and a figure of identification against the attacker's validation SSIM.

The rule and the per-decoder numbers are :mod:`.attack_power`'s; this module lays them out
(Markdown, figures, the JSON record) once per report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..study.index import StudyIndex
from .attack_power import (
    ENABLE_HINT,
    DecoderPower,
    decoder_power,
    qualify_summary,
    run_power,
)
from .figures import Figure, png_base64

__all__ = ["AttackPowerSection", "attack_power_report"]

_INTRO = (
    "How far each run's attacker trained its inversion decoder. The attacker scores its "
    "decoder on attack-set subjects it held out from training (validation SSIM and "
    "correlation: no private data needed); the private-set columns are what the same "
    "attack then achieved on the target's training patients. A privacy audit only bounds "
    "what an attacker can learn from below: an identification rate from a decoder that "
    "stopped at its budget, or whose convergence was not measured, is a **lower bound**."
)


@dataclass
class AttackPowerSection:
    """The section as the report uses it: Markdown lines, figures, the ``report.json``
    record, and the per-run powers the summary's lower-bound rule reads."""

    markdown: list[str]
    figures: dict[str, Figure]
    record: dict
    runs: dict[str, dict] = field(default_factory=dict)

    def qualify(self, lines: list[str]) -> list[str]:
        """The plain summary's lines with the lower-bound rule applied (see
        :func:`~.attack_power.qualify_summary`)."""
        return qualify_summary(lines, self.runs)


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _private(entry: dict) -> dict:
    """A run's private-set numbers: mean SSIM with the own original, top-1 by SSIM."""
    own = entry.get("table1", {}).get("ssim", {}).get("mean")
    t = entry.get("table3", {}).get("ssim")
    top1, n = (t["top1"], t["n"]) if t else (None, None)
    rate = top1 / n if t and n else None
    return {"ssim_own_mean": own, "top1": top1, "n": n, "top1_rate": rate}


def _stops(power: dict) -> str:
    folds = power["folds"]
    if not folds:
        return "no record"
    by: dict[str, list[str]] = {}
    for f in folds:
        by.setdefault(f["stopped_by"] or "not measured", []).append(str(f["fold"]))
    if len(by) == 1:
        return next(iter(by))
    return "; ".join(
        f"{stop} (fold{'s' if len(ks) > 1 else ''} {', '.join(ks)})"
        for stop, ks in sorted(by.items())
    )


def _epochs(power: dict) -> str:
    def one(f: dict) -> str:
        run = "?" if f["epochs_run"] is None else str(f["epochs_run"])
        budget = "?" if f["budget_epochs"] is None else str(f["budget_epochs"])
        return f"{run}/{budget}"

    return ", ".join(one(f) for f in power["folds"]) or "–"


def _table(runs: dict[str, dict], private: dict[str, dict]) -> list[str]:
    columns = [
        "run",
        "stopped by",
        "epochs run / budget (per fold)",
        "attacker validation SSIM",
        "attacker validation correlation",
        "private SSIM with own original",
        "private top-1 by SSIM",
        "identification rate",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, power in runs.items():
        p = private[name]
        top1 = "–" if p["top1"] is None else f"{p['top1']} of {p['n']}"
        cells = [
            name,
            _stops(power),
            _epochs(power),
            _f(power["val_ssim"]),
            _f(power["val_correlation"]),
            _f(p["ssim_own_mean"]),
            top1,
            "lower bound" if power["lower_bound"] else "converged attacker",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def attack_power_report(index: StudyIndex, summary: dict) -> AttackPowerSection:
    """The "Attack power" section of a study whose per-run numbers are ``summary``
    (:func:`~.summary.summarize_study`); decoders are read through ``index``."""
    powers = decoder_power(index)
    names = list(summary["runs"])
    runs = {name: run_power(powers, name) for name in names}
    private = {name: _private(summary["runs"][name]) for name in names}
    measured = [p for p in powers if p.stopped_by is not None]
    md = ["## Attack power", "", _INTRO, ""]
    if not powers:
        md.append(
            "No decoder records are in this folder (a folder written by `inversion-audit "
            "match`, or checkpoints removed): how far the attack was trained is unknown."
        )
    else:
        md += _table(runs, private)
        if not measured:
            md += [
                "",
                "Convergence was not measured: no decoder held out a validation split, so each "
                f"trained for its fixed budget. Set {ENABLE_HINT} in the study config to train "
                "each decoder until its validation loss stops improving and to report its "
                "attacker-side validation scores.",
            ]
    figures: dict[str, Figure] = {}
    if any(p.val_loss for p in powers):
        figures["attack_loss_curves"] = loss_curve_figure(powers)
    points = [
        (name, summary["runs"][name], runs[name]["val_ssim"], private[name]["top1_rate"])
        for name in names
        if runs[name]["val_ssim"] is not None and private[name]["top1_rate"] is not None
    ]
    if points:
        figures["attack_identification_vs_validation"] = identification_figure(points)
    record = {
        "measured": bool(measured),
        "enable": None if measured else ENABLE_HINT.replace("`", ""),
        "runs": {name: {**runs[name], "private": private[name]} for name in names},
    }
    return AttackPowerSection(md, figures, record, runs)


# -- figures ---------------------------------------------------------------------------------------
def loss_curve_figure(powers: list[DecoderPower]) -> Figure:
    """Training (solid) and validation (dashed) loss per epoch, one colour per run and fold."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    described = []
    for k, p in enumerate(p for p in powers if p.train_loss or p.val_loss):
        colour = f"C{k % 10}"
        label = f"{p.run} f{p.fold}"
        for curve, style, name in ((p.train_loss, "-", label), (p.val_loss, "--", None)):
            xs = [i + 1 for i, v in enumerate(curve) if v is not None]
            ys = [v for v in curve if v is not None]
            if xs:
                ax.plot(xs, ys, style, color=colour, label=name, linewidth=1.2)
        stop = p.stopped_by or "not measured"
        val = f", last validation loss {_f(p.val_loss[-1], 4)}" if p.val_loss else ""
        described.append(
            f"{p.run} fold {p.fold}: {stop}, {p.epochs_run} of {p.budget_epochs} epochs{val}"
        )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (solid: training, dashed: validation)")
    ax.set_yscale("log")
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    fig.tight_layout()
    alt = (
        "Line chart of the inversion decoders' training loss (solid) and attacker-side "
        "validation loss (dashed) per epoch. " + "; ".join(described) + "."
    )
    return Figure(
        png_base64(fig, dpi=110),
        "Attack power: each decoder's training (solid) and validation (dashed) loss per epoch, "
        "one colour per run and fold. A validation curve still falling at the last epoch means "
        "the budget, not the attacker, ended training.",
        {"alt": alt},
    )


def identification_figure(points: list[tuple[str, dict, float, float]]) -> Figure:
    """Top-1 identification by SSIM against the attacker's validation SSIM: one numbered
    point per run (the legend names it), one colour and marker per model (architecture, or
    an external model's variant)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    models: dict[str, int] = {}
    described = []
    for number, (name, entry, x, y) in enumerate(points, start=1):
        arch = entry["arch"]
        model = f"external ({entry['variant']})" if arch == "external" else arch
        k = models.setdefault(model, len(models))
        ax.scatter([x], [y], color=f"C{k % 10}", marker="osD^v<>"[k % 7], label=f"{number}: {name}")
        ax.annotate(str(number), (x, y), fontsize=7, xytext=(4, 2 + 7 * (number % 3)),
                    textcoords="offset points")  # fmt: skip
        described.append(f"{name} ({model}): validation SSIM {x:.3f}, top-1 {y:.0%}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    ax.set_xlabel("attacker's validation SSIM (no private data)")
    ax.set_ylabel("top-1 identification by SSIM")
    ax.set_xlim(min(-0.05, *(x - 0.05 for _, _, x, _ in points)), 1.05)
    ax.set_ylim(-0.05, 1.1)
    fig.tight_layout()
    alt = (
        "Scatter plot of each run's top-1 identification rate by SSIM on the private set "
        "against its decoder's mean validation SSIM on held-out attack subjects. "
        + "; ".join(described)
        + "."
    )
    return Figure(
        png_base64(fig, dpi=110),
        "Attack power: private-set identification (top-1 by SSIM) against the attacker's own "
        "validation SSIM, one numbered point per run, one colour and marker per model. An "
        "attacker can see how good its decoder is before it ever touches private data.",
        {"alt": alt},
    )
