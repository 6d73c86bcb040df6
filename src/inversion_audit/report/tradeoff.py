"""The privacy–utility section of the report: what each defence costs and what it closes.

One row per run (undefended and defended), grouped by (arch, variant, threat model):

- utility: the target's Dice on the private set (``utility/*.json`` of the defended-run
  stages; mean over subjects of all folds), and on the holdout where there is one;
- privacy: top-1 identification by SSIM and by the run's best metric (with Wilson 95%
  intervals), SSIM verification AUC, ε (with δ and the sampling mode) for DP-SGD, and the
  membership-inference TPR at 1% FPR where the study has it.

The plain-language lines name, per defence, the weakest setting whose top-1 interval (by
the best metric) contains chance, and the Dice it costs against the undefended run; then
which setting at chance costs the least Dice (the defence to choose), or that none reached
chance.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..study.defences_config import format_strength, parse_defence_tag
from .figures import Figure, png_base64

__all__ = ["best_defence", "privacy_utility", "tradeoff_markdown", "tradeoff_figure"]


def _utility(records: Iterable[dict]) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    """(arch, variant, tag) -> Dice per subject over all folds, and the privacy records, from
    the study's ``utility/*.json`` records (:meth:`~inversion_audit.study.index.StudyIndex.utility_records`)."""
    out: dict = defaultdict(lambda: {"dice": {}, "holdout": {}, "privacy": []})
    for rec in records:
        entry = out[(rec["arch"], rec["variant"], rec.get("defence"))]
        entry["dice"].update({k: v for k, v in rec.get("dice", {}).items() if v is not None})
        entry["holdout"].update(
            {k: v for k, v in (rec.get("holdout_dice") or {}).items() if v is not None}
        )
        if rec.get("privacy"):
            entry["privacy"].append(rec["privacy"])
    return dict(out)


def _mean(values) -> float | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def _best(table3: dict) -> tuple[str | None, dict | None]:
    """The metric with the highest top-1 rate (ties: the first in table order)."""
    best, entry = None, None
    for metric, t in table3.items():
        if t.get("n") and (entry is None or t["top1"] / t["n"] > entry["top1"] / entry["n"]):
            best, entry = metric, t
    return best, entry


def _mia(record: dict | None) -> tuple[float | None, str | None]:
    """The highest TPR at 1% FPR over the membership-inference signals, and its signal."""
    results = [
        r
        for r in (record or {}).get("membership_inference", [])
        if r.get("tpr_at_1pct_fpr") is not None
    ]
    if not results:
        return None, None
    best = max(results, key=lambda r: r["tpr_at_1pct_fpr"])
    return float(best["tpr_at_1pct_fpr"]), best.get("signal")


def _row(run: str, entry: dict, utility: dict, membership: dict | None) -> dict[str, Any]:
    threat, tag = entry["threat_model"], entry.get("defence") or None
    kind, strength, quantise, known = parse_defence_tag(tag) if tag else (None, None, False, None)
    ssim = entry["table3"].get("ssim", {})
    best, best_t = _best(entry["table3"])
    n_candidates = len(ssim.get("rank_histogram") or []) or None
    chance = 1.0 / n_candidates if n_candidates else None
    u = utility.get((entry["arch"], entry["variant"], tag), {})
    privacy = u.get("privacy") or []
    row = {
        "run": run,
        "arch": entry["arch"],
        "variant": entry["variant"],
        "threat_model": threat,
        "defence": kind or "none",
        "strength": strength,
        "quantise": quantise,
        "knows_domain": known,
        "dice_private": _mean(u.get("dice", {}).values()),
        "dice_holdout": _mean(u.get("holdout", {}).values()),
        "n": ssim.get("n"),
        "n_candidates": n_candidates,
        "chance": chance,
        "top1_ssim": ssim.get("top1"),
        "top1_ssim_ci95": ssim.get("top1_ci95"),
        "best_metric": best,
        "top1_best": best_t["top1"] if best_t else None,
        "top1_best_ci95": best_t["top1_ci95"] if best_t else None,
        "auc_ssim": ssim.get("auc"),
        "epsilon": max((p["epsilon"] for p in privacy), default=None),
        "delta": privacy[0]["delta"] if privacy else None,
        "sampling": privacy[0]["sampling"] if privacy else None,
        # membership inference (issue 18), where the study has a holdout
        "mia_tpr_at_1pct_fpr": _mia((membership or {}).get(run))[0],
        "mia_signal": _mia((membership or {}).get(run))[1],
    }
    ci = row["top1_best_ci95"]
    row["at_chance"] = bool(ci and chance is not None and ci[0] <= chance <= ci[1])
    return row


def _defence_name(kind: str, quantise: bool, known: bool | None) -> str:
    name = kind + (" (quantised)" if quantise else "")
    if known is not None:
        name += " (attacker knows the domain)" if known else " (attacker does not know the domain)"
    return name


def _closing(group: list[dict]) -> tuple[list[dict], dict | None]:
    """The defended settings of ``group`` at chance against every attacker tried on them
    (obfuscation: with and without the domain), and of those the one with the highest Dice
    (``None`` when none has a Dice)."""
    settings: dict[tuple, list[dict]] = defaultdict(list)
    for r in group:
        if r["defence"] != "none":
            settings[(r["defence"], r["strength"], r["quantise"])].append(r)
    hits = [rows[0] for rows in settings.values() if all(r["at_chance"] for r in rows)]
    scored = [h for h in hits if h["dice_private"] is not None]
    return hits, max(scored, key=lambda h: h["dice_private"]) if scored else None


def _cheapest_line(group: list[dict], undefended: dict | None) -> str:
    """Which defended setting brings identification to chance at the smallest Dice loss (the
    audit's answer). A setting counts only when every attacker tried on it (obfuscation: with
    and without the domain) is at chance."""
    hits, best = _closing(group)
    if not hits:
        return "no defence setting tried brings identification to chance against every attacker."
    if best is None:
        return "defences reach chance, but no Dice was measured to compare their cost."
    name = _defence_name(best["defence"], best["quantise"], None)
    loss = ""
    if undefended and undefended["dice_private"] is not None:
        loss = f", a Dice loss of {undefended['dice_private'] - best['dice_private']:.3f}"
    return (
        f"of the settings at chance against every attacker tried, {name} at "
        f"{format_strength(best['strength'])} costs the least utility "
        f"(Dice {best['dice_private']:.3f}{loss})."
    )


def best_defence(table: dict, arch: str, variant: str, threat_model: str) -> dict[str, Any]:
    """The privacy–utility table's answer for one (arch, variant, threat model), as data.

    ``answer`` is ``"none tried"``, ``"none closes"`` (no setting at chance against every
    attacker tried), ``"closes"`` (``setting``: the one at chance with the highest Dice,
    ``dice_cost``: undefended Dice minus its Dice, where both were measured) or ``"closes,
    cost not measured"``. ``tried``: the defences tried, in words.
    """
    group = [
        r
        for r in table.get("rows", [])
        if (r["arch"], r["variant"], r["threat_model"]) == (arch, variant, threat_model)
    ]
    defended = [r for r in group if r["defence"] != "none"]
    undefended = next((r for r in group if r["defence"] == "none"), None)
    out: dict[str, Any] = {
        "answer": "none tried",
        "tried": sorted({_defence_name(r["defence"], r["quantise"], None) for r in defended}),
        "setting": None,
        "dice": None,
        "dice_undefended": undefended["dice_private"] if undefended else None,
        "dice_cost": None,
    }
    if not defended:
        return out
    hits, best = _closing(group)
    if not hits:
        return {**out, "answer": "none closes"}
    pick = best or hits[0]
    setting = {
        "run": pick["run"],
        "defence": _defence_name(pick["defence"], pick["quantise"], None),
        "kind": pick["defence"],
        "quantise": pick["quantise"],
        "strength": format_strength(pick["strength"]),
        "epsilon": pick["epsilon"],
        "top1": pick["top1_best"],
        "n": pick["n"],
        "metric": pick["best_metric"],
    }
    cost = None
    if best is not None and out["dice_undefended"] is not None:
        cost = out["dice_undefended"] - best["dice_private"]
    return {
        **out,
        "answer": "closes" if best is not None else "closes, cost not measured",
        "setting": setting,
        "dice": pick["dice_private"],
        "dice_cost": cost,
    }


def _weakest_line(group: list[dict], undefended: dict | None) -> list[str]:
    """Per defence, the weakest setting at chance (or that none is)."""
    lines = []
    by_defence: dict[tuple, list[dict]] = defaultdict(list)
    for r in group:
        if r["defence"] != "none":
            by_defence[(r["defence"], r["quantise"], r["knows_domain"])].append(r)
    for (kind, quantise, known), rows in by_defence.items():
        larger_stronger = not (kind == "obfuscation" or quantise)
        rows = sorted(rows, key=lambda r: r["strength"], reverse=not larger_stronger)
        name = _defence_name(kind, quantise, known)
        hit = next((r for r in rows if r["at_chance"]), None)
        if hit is None:
            lines.append(
                f"{name}: no setting tried brings identification to chance "
                f"(strongest: {format_strength(rows[-1]['strength'])}, "
                f"top-1 {rows[-1]['top1_best']} of {rows[-1]['n']} by {rows[-1]['best_metric']})."
            )
            continue
        cost = ""
        if (
            hit["dice_private"] is not None
            and undefended
            and undefended["dice_private"] is not None
        ):
            cost = (
                f", at a Dice of {hit['dice_private']:.3f} vs {undefended['dice_private']:.3f} "
                f"undefended ({hit['dice_private'] - undefended['dice_private']:+.3f})"
            )
        eps = f", ε = {hit['epsilon']:.3g} at δ = {hit['delta']:g}" if hit["epsilon"] else ""
        lines.append(
            f"{name}: the weakest setting at chance is {format_strength(hit['strength'])} "
            f"(top-1 {hit['top1_best']} of {hit['n']} by {hit['best_metric']}, "
            f"interval {hit['top1_best_ci95'][0]:.2f}–{hit['top1_best_ci95'][1]:.2f} "
            f"contains chance {hit['chance']:.2f}){eps}{cost}."
        )
    return lines


def privacy_utility(
    utility_records: Iterable[dict], summary: dict, membership: dict | None = None
) -> dict[str, Any]:
    """The privacy–utility table (``rows``), its plain-language ``lines``, and per (arch,
    variant, threat model) the ``answers`` for the report's summary: which defence setting
    closes the leak at the least Dice.

    ``utility_records`` are the study's ``utility/*.json`` records
    (:meth:`~inversion_audit.study.index.StudyIndex.utility_records`); ``membership`` is the
    report's membership section (per run, ``membership_inference`` signals with
    ``tpr_at_1pct_fpr``), if any. Empty (no rows) without a defended run.
    """
    runs = summary.get("runs", {})
    if not any(e.get("defence") for e in runs.values()):
        return {"rows": [], "lines": [], "answers": []}
    utility = _utility(utility_records)
    rows = [_row(run, e, utility, membership) for run, e in runs.items()]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["arch"], r["variant"], r["threat_model"])].append(r)
    lines, answers = [], []
    for (arch, variant, threat), group in groups.items():
        undefended = next((r for r in group if r["defence"] == "none"), None)
        answer = _cheapest_line(group, undefended)
        texts = [*_weakest_line(group, undefended), answer]
        lines += [f"{arch} {variant} {threat}: {t}" for t in texts]
        answers.append(f"Which defence closes the leak ({arch} {variant} {threat}): {answer}")
    return {"rows": rows, "lines": lines, "answers": answers}


def _f(x: Any, fmt: str = ".3f") -> str:
    return "–" if x is None else format(x, fmt)


def tradeoff_markdown(table: dict) -> list[str]:
    """The report's privacy–utility section as Markdown lines."""
    if not table["rows"]:
        return []
    out = ["## Privacy–utility", "", *[f"- {line}" for line in table["lines"]], ""]
    out += [
        "| run | defence | strength | Dice (private) | Dice (holdout) | top-1 SSIM | "
        "top-1 best (metric) | AUC SSIM | ε (δ, sampling) | MIA TPR@1%FPR |",
        "|" + "---|" * 10,
    ]
    for r in table["rows"]:
        eps = (
            f"{r['epsilon']:.3g} ({r['delta']:g}, {r['sampling']})"
            if r["epsilon"] is not None
            else "–"
        )
        strength = "–" if r["strength"] is None else format_strength(r["strength"])
        out.append(
            f"| {r['run']} | {r['defence']} | {strength} | {_f(r['dice_private'])} | "
            f"{_f(r['dice_holdout'])} | {r['top1_ssim']}/{r['n']} | "
            f"{r['top1_best']}/{r['n']} ({r['best_metric']}) | {_f(r['auc_ssim'])} | {eps} | "
            f"{_f(r['mia_tpr_at_1pct_fpr'])} |"
        )
    out.append("")
    out.append(
        "Chance: one in the number of candidates. A setting is at chance when the Wilson 95% "
        "interval of its top-1 rate (best metric) contains chance."
    )
    return out


def tradeoff_figure(table: dict) -> Figure | None:
    """Top-1 rate (best metric) against Dice: one curve per defence, with the undefended point."""
    if not table["rows"]:
        return None
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in table["rows"]:
        groups[(r["arch"], r["variant"], r["threat_model"])].append(r)
    width = max(7.0, 5.0 * len(groups))
    fig, axes = plt.subplots(1, len(groups), figsize=(width, 4.2), squeeze=False)
    for ax, (key, group) in zip(axes[0], groups.items(), strict=True):
        base = [r for r in group if r["defence"] == "none"]
        curves: dict[str, list[dict]] = defaultdict(list)
        for r in group:
            if r["defence"] != "none":
                name = r["defence"] + ("-q" if r["quantise"] else "")
                if r["knows_domain"] is not None:
                    name += "-known" if r["knows_domain"] else "-unknown"
                curves[name].append(r)
        for name, rows in curves.items():
            rows = sorted(rows, key=lambda r: r["strength"])
            xs = [r["dice_private"] if r["dice_private"] is not None else np.nan for r in rows]
            ys = [r["top1_best"] / r["n"] if r["n"] else np.nan for r in rows]
            ax.plot(xs, ys, "o-", label=name)
            for x, y, r in zip(xs, ys, rows, strict=True):
                label = format_strength(r["strength"])
                if r["epsilon"] is not None:
                    label += f" (ε={r['epsilon']:.2g})"
                ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for r in base:
            ax.plot(
                [r["dice_private"] if r["dice_private"] is not None else np.nan],
                [r["top1_best"] / r["n"] if r["n"] else np.nan],
                "k*",
                markersize=12,
                label="undefended",
            )
        chance = next((r["chance"] for r in group if r["chance"]), None)
        if chance:
            ax.axhline(chance, color="grey", linestyle=":", label="chance")
        ax.set_title(" ".join(key), fontsize=9)
        ax.set_xlabel("target Dice on the private set (utility)")
        ax.set_ylabel("top-1 identification rate, best metric")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    fig.tight_layout()
    points = "; ".join(
        f"{r['run']}: top-1 {r['top1_best']} of {r['n']}, Dice "
        + ("–" if r["dice_private"] is None else f"{r['dice_private']:.3f}")
        for r in table["rows"]
    )
    return Figure(
        png_base64(fig, dpi=130),
        "Privacy–utility: identification (top-1, best metric) against the target's Dice, "
        "one curve per defence (labels: strength, ε for DP-SGD), the undefended run as a star.",
        {
            "runs": [r["run"] for r in table["rows"]],
            "alt": "Line chart of top-1 identification rate against the target's Dice per "
            f"defence setting, with chance as a dotted line. {points}.",
        },
    )
