"""The report's verdict: one card per audited model and threat model (its undefended run).

Each card answers four questions in plain words, from the report's own numbers:

- **risk**: high, moderate, low or "not shown", by :func:`~.summary.identification_risk`
  (top-1 by SSIM with its Wilson 95% interval against chance, the numbers of Table 3) and the
  attack-power rule (:func:`~.attack_power.qualify_risk`: a decoder stopped by its budget,
  or not measured, never makes a run "low"), with the rule that gave it;
- **who leaks**: members only, or anyone whose code is exposed (the members vs non-members
  section's SSIM verdict), or "non-members not tested" without a holdout;
- **attacker effort**: how far the decoder trained (:func:`~.attack_power.run_power`);
- **best defence tried** and its Dice cost (:func:`~.tradeoff.best_defence`), or "none tried".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .attack_power import decoder_power, qualify_risk, run_power
from .membership import membership_summary
from .summary import RISK_RULES, identification_risk, summarize_study
from .tables import defence_words, run_title
from .tradeoff import best_defence, privacy_utility

if TYPE_CHECKING:
    from ..study.index import StudyIndex

__all__ = [
    "GLOSSARY",
    "condense_membership",
    "leak_kind",
    "setting_words",
    "study_verdict_cards",
    "verdict_cards",
    "verdict_markdown",
]

#: one-line glosses of the words the cards use
GLOSSARY = (
    "*Latent code*: the features the network computes inside, from which an attacker's "
    "decoder redraws the scan (*skip features*: those passed between its layers). "
    "*Training patients* (members) trained the model; *non-members* did not. "
    "*SSIM*: structural similarity of two scans (1 = identical). "
    "*Dice*: overlap of the model's segmentation with the reference (1 = perfect)."
)

#: the members vs non-members verdict's category, by the words its sentence starts its
#: conclusion with (:func:`~inversion_audit.study.membership.verdict`)
_KINDS = (
    ("Members are identified more often", "members"),
    ("Suggestive, not established", "suggestive"),
    ("Non-members are identified about as well as members", "anyone"),
    ("Inconclusive", "inconclusive"),
    ("no comparison", "no comparison"),
)

#: per category: the card's short answer and what it means
LEAK_WORDS = {
    "members": (
        "mainly the training patients",
        "members are identified more often than non-members: the published weights carry "
        "their training patients",
    ),
    "anyone": (
        "anyone whose code is exposed",
        "patients who never trained the model are identified about as well as its training "
        "patients",
    ),
    "suggestive": (
        "not established (members possibly more)",
        "members look easier to identify, but the test does not confirm it",
    ),
    "inconclusive": (
        "not established",
        "too few non-members to tell whether training patients leak more than anyone else",
    ),
    "no comparison": ("not established", "no non-member reconstruction was scored"),
}


#: per category: the members vs non-members table's verdict column
LEAK_COLUMN = {
    "members": "members more",
    "anyone": "alike: anyone",
    "suggestive": "suggestive",
    "inconclusive": "inconclusive",
    "no comparison": "no comparison",
}


def leak_kind(verdict: str) -> str:
    """The category of a members vs non-members verdict: ``"members"``, ``"suggestive"``,
    ``"anyone"``, ``"inconclusive"`` or ``"no comparison"``."""
    for words, kind in _KINDS:
        if words in verdict:
            return kind
    return "inconclusive"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _risk(entry: dict, power: dict) -> dict:
    risk = identification_risk(entry)
    if risk is None:
        return {
            "level": "not shown",
            "rule": "no SSIM ranking: the study did not score SSIM",
            "text": "no SSIM ranking to judge identification by.",
            "identification": None,
            "lower_bound": power["lower_bound"],
        }
    level = qualify_risk(risk["level"], power)
    rule = RISK_RULES[level]
    if level == "not shown" and risk["level"] == "low":
        rule = (
            "low needs a decoder trained until it stopped improving; this one stopped at its "
            "budget or was not measured, so its rate is only a lower bound"
        )
    elif level == "not shown":
        rule = "high and moderate need the 95% interval of the rate above guessing"
    lo, hi = risk["top1_ci95"] or (None, None)
    interval = f"95% interval {_pct(lo)}–{_pct(hi)}; " if lo is not None else ""
    text = (
        f"{risk['top1']} of {risk['n']} training patients re-identified from their latent "
        f"codes as the best SSIM match ({interval}guessing finds 1 in "
        f"{risk['n_candidates']}, {_pct(risk['chance'])})."
    )
    if level == "not shown" and risk["level"] != "low":
        text += " Too few patients to tell this from guessing."
    if power["lower_bound"]:
        text += " A lower bound: a stronger attack may find more."
    return {
        "level": level,
        "rule": rule,
        "text": text,
        "identification": risk,
        "lower_bound": power["lower_bound"],
    }


def _who(run: str, membership: dict) -> dict:
    section = membership.get(run)
    c = (section or {}).get("metrics", {}).get("ssim")
    if c is None:
        return {
            "answer": "non-members not tested",
            "kind": None,
            "text": "the study has no holdout of patients outside training "
            "(`[cohort] holdout_n`), so it cannot tell whether anyone's code leaks.",
        }
    kind = leak_kind(c["verdict"])
    answer, meaning = LEAK_WORDS[kind]
    m, n = c["members"], c["nonmembers"]
    return {
        "answer": answer,
        "kind": kind,
        "members": {"top1": m["top1"], "n": m["n"]},
        "nonmembers": {"top1": n["top1"], "n": n["n"]},
        "text": f"{meaning} (by SSIM: members {m['top1']} of {m['n']}, non-members "
        f"{n['top1']} of {n['n']}).",
    }


def _span(values: list) -> str:
    v = sorted({x for x in values if x is not None})
    if not v:
        return "?"
    return str(v[0]) if len(v) == 1 else f"{v[0]}–{v[-1]}"


def _effort(power: dict) -> dict:
    folds = power["folds"]
    if not folds:
        return {
            "lower_bound": True,
            "text": "unknown: the study holds no record of the decoder's training.",
        }
    epochs = _span([f["epochs_run"] for f in folds])
    budget = _span([f["budget_epochs"] for f in folds])
    steps = [f["steps"] for f in folds if f.get("steps") is not None]
    losses = [f["final_loss"] for f in folds if f.get("final_loss") is not None]
    stops = power["stopped_by"]
    how = {
        ("plateau",): "stopped when it no longer improved",
        ("budget",): "stopped by its epoch budget, possibly still improving",
    }.get(tuple(stops), "convergence not measured (no validation split)")
    if len(stops) > 1:
        how = "stopped by " + " or ".join(stops)
    parts = [f"decoder trained {epochs} of {budget} epochs"]
    if steps:
        over = f" over {len(folds)} folds" if len(folds) > 1 else ""
        parts[0] += f" ({sum(steps)} steps{over})"
    parts.append(how)
    if losses:
        parts.append(f"final training loss {sum(losses) / len(losses):.4g}")
    if power["val_ssim"] is not None:
        parts.append(
            f"SSIM {power['val_ssim']:.3f} on scans the attacker held out (no private data)"
        )
    text = "; ".join(parts) + "."
    return {
        "lower_bound": power["lower_bound"],
        "stopped_by": stops,
        "epochs_run": epochs,
        "budget_epochs": budget,
        "steps": sum(steps) if steps else None,
        "final_loss": sum(losses) / len(losses) if losses else None,
        "val_ssim": power["val_ssim"],
        "val_correlation": power["val_correlation"],
        "text": text,
    }


def _defence(entry: dict, tradeoff: dict) -> dict:
    best = best_defence(tradeoff, entry["arch"], entry["variant"], entry["threat_model"])
    s = best["setting"]
    if best["answer"] == "none tried":
        text = "none tried."
    elif best["answer"] == "none closes":
        text = (
            f"tried {', '.join(best['tried'])}: no setting brought identification to chance "
            "against every attacker tried."
        )
    else:
        eps = f", ε = {s['epsilon']:.3g}" if s["epsilon"] is not None else ""
        cost = (
            f"for a Dice cost of {best['dice_cost']:.3f} ({best['dice_undefended']:.3f} → "
            f"{best['dice']:.3f})"
            if best["dice_cost"] is not None
            else "at a Dice cost that was not measured"
        )
        text = (
            f"{setting_words(s)}{eps} brings identification to chance "
            f"({s['top1']} of {s['n']} by {s['metric']}) {cost}."
        )
    return {**best, "text": text}


def setting_words(setting: dict) -> str:
    """A defence setting of :func:`~.tradeoff.best_defence` in words (``latent noise σ 2``)."""
    q = "q" if setting["quantise"] else ""
    return defence_words(f"{setting['kind']}-{q}{setting['strength']}")


def verdict_cards(
    summary: dict,
    membership: dict,
    tradeoff: dict,
    powers: dict[str, dict],
    links: dict[str, str] | None = None,
) -> list[dict]:
    """One card per undefended run of ``summary`` (JSON-safe dicts), see the module.

    ``powers``: per run, :func:`~.attack_power.run_power` (a run without one counts as
    unmeasured); ``links``: the anchors of the sections each item comes from.
    """
    cards = []
    for run, e in summary["runs"].items():
        if e.get("defence"):
            continue
        power = powers.get(run) or run_power([], run)
        cards.append(
            {
                "run": run,
                "title": run_title(e),
                "arch": e["arch"],
                "variant": e["variant"],
                "threat_model": e["threat_model"],
                "risk": _risk(e, power),
                "who_leaks": _who(run, membership),
                "attacker_effort": _effort(power),
                "best_defence": _defence(e, tradeoff),
                "links": dict(links or {}),
            }
        )
    return cards


def study_verdict_cards(index: StudyIndex) -> list[dict]:
    """The verdict cards of a scored study as ``report.json``'s ``verdict`` holds them, less
    the section links, from the study's own files and writing nothing (napari's Study tab).
    Raises :class:`~inversion_audit.errors.StudyError` when the study has no ``scores.csv``."""
    rows = index.score_table()
    holdout = index.holdout_ids
    summary = summarize_study(rows, holdout)
    membership = membership_summary(rows, holdout, record_losses=index.record_losses())
    tradeoff = privacy_utility(index.utility_records(), summary, membership)
    powers = decoder_power(index)
    runs = {name: run_power(powers, name) for name in summary["runs"]}
    return verdict_cards(summary, membership, tradeoff, runs)


def _link(card: dict, key: str, label: str) -> str:
    target = card["links"].get(key)
    return f" ([{label}]({target}))" if target else ""


def verdict_markdown(cards: list[dict]) -> list[str]:
    """The verdict section: a card per run (between verdict-card markers), then the glosses."""
    if not cards:
        return []
    lines = [
        "## Verdict",
        "",
        "One card per model and threat model audited: how identifiable its training "
        "patients are from what an attacker could hold.",
        "",
        "<!-- verdict -->",
    ]
    for c in cards:
        r = c["risk"]
        lines += [
            f"<!-- verdict-card {r['level']} -->",
            f"### {c['title']}",
            "",
            f"- **Risk: {r['level']}.** {r['text']} *Rule: {r['rule']}.*"
            + _link(c, "risk", "Table 3"),
            f"- **Who leaks:** {c['who_leaks']['answer']}: {c['who_leaks']['text']}"
            + _link(c, "who_leaks", "members vs non-members"),
            f"- **Attacker effort:** {c['attacker_effort']['text']}"
            + _link(c, "attacker_effort", "attack power"),
            f"- **Best defence tried:** {c['best_defence']['text']}"
            + _link(c, "best_defence", "privacy–utility"),
            "<!-- /verdict-card -->",
            "",
        ]
    rules = "; ".join(f"*{level}*: {rule}" for level, rule in RISK_RULES.items())
    lines += ["<!-- /verdict -->", "", GLOSSARY, "", f"Risk levels (by SSIM top-1): {rules}.", ""]
    return lines


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def condense_membership(lines: list[str], section: dict) -> list[str]:
    """The members vs non-members section's Markdown with each run's per-metric verdict
    paragraphs folded into a ``verdict`` column of its table, and one sentence per run (by
    SSIM) in their place. A run whose table is not found keeps its paragraphs."""
    out: list[str] = []
    run, header, folded, said = None, False, False, False
    for line in lines:
        words = line.split(" ")
        if line.startswith("## "):  # the section's end (or another section of it)
            run, header, folded = None, False, False
        if line.startswith("#") and len(words) > 1 and words[1] in section:
            run, header, folded, said = words[1], False, False, False
            out.append(line)
            continue
        metrics = section[run]["metrics"] if run else {}
        if run and line.startswith("| metric |"):
            header = True
            out.append(line.rstrip() + " verdict |")
        elif run and header and line.startswith("|---"):
            out.append(line.rstrip() + "---|")
        elif run and header and line.startswith("|") and _cells(line)[0] in metrics:
            kind = leak_kind(metrics[_cells(line)[0]]["verdict"])
            out.append(line.rstrip() + f" {LEAK_COLUMN[kind]} |")
            folded = True
        elif run and folded and line[2:] in {c["verdict"] for c in metrics.values()}:
            if not said and "ssim" in metrics:
                kind = leak_kind(metrics["ssim"]["verdict"])
                agree = sum(leak_kind(c["verdict"]) == kind for c in metrics.values())
                out.append(
                    f"- **In short:** {LEAK_WORDS[kind][1]} (by SSIM; {agree} of "
                    f"{len(metrics)} metrics give the same verdict, column *verdict*)."
                )
            said = True
        else:
            if not line.startswith("|"):
                header = False
            out.append(line)
    return out
