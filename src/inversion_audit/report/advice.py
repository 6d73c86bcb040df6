"""The report's "What to do": recommendations drawn from the study's own numbers.

Each recommendation is made only when the numbers support it, and links to the section
whose table supports it:

- latent codes (and skip features) not to share, for runs whose risk is high or moderate
  (Table 3);
- every patient's code to protect, when non-members are identified about as well as
  members; the weights not to publish bare, when members are identified more often
  (members vs non-members);
- the defence setting that brings identification to chance at the least Dice, or that none
  tried does (privacy–utility);
- that the weights alone showed no membership signal at this attack power, or that they
  did (membership inference on the target's own loss, and with reference models: RMIA);
- a stronger attack before calling a run low, where identification is a lower bound
  (attack power).
"""

from __future__ import annotations

from .membership import REFERENCE_KEY
from .verdict import setting_words

__all__ = ["WEIGHT_SIGNALS", "advice", "advice_markdown"]

#: membership-inference signals computed from the target's weights alone (no decoder)
WEIGHT_SIGNALS = ("segmentation_loss",)


def _names(cards: list[dict]) -> str:
    titles = [c["title"] for c in cards]
    return titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]


def _share(cards: list[dict]) -> list[dict]:
    leaking = [c for c in cards if c["risk"]["level"] in ("high", "moderate")]
    out = []
    for skips in (False, True):
        group = [c for c in leaking if ("skips" in c["threat_model"]) == skips]
        if not group:
            continue
        what = "latent codes and skip features" if skips else "latent codes (bottleneck features)"
        counts = "; ".join(
            f"{c['title']}: {c['risk']['identification']['top1']} of "
            f"{c['risk']['identification']['n']}"
            for c in group
        )
        models = "this model" if len(group) == 1 else "these models"
        out.append(
            {
                "text": f"Do not share the {what} of {models}: from them an attacker "
                f"re-identified training patients as the best SSIM match ({counts}).",
                "link": "table3",
                "runs": [c["run"] for c in group],
            }
        )
    return out


def _who(cards: list[dict]) -> list[dict]:
    out = []
    anyone = [c for c in cards if c["who_leaks"]["kind"] == "anyone"]
    if anyone:
        out.append(
            {
                "text": "Protect the codes of every patient, not only the training patients': "
                f"for {_names(anyone)} patients who never trained the model were identified "
                "about as well.",
                "link": "membership",
                "runs": [c["run"] for c in anyone],
            }
        )
    members = [c for c in cards if c["who_leaks"]["kind"] == "members"]
    if members:
        out.append(
            {
                "text": f"Do not publish the weights of {_names(members)} without a defence: "
                "its training patients are identified more often than other patients.",
                "link": "membership",
                "runs": [c["run"] for c in members],
            }
        )
    return out


def _defences(cards: list[dict]) -> list[dict]:
    out = []
    for c in cards:
        d, s = c["best_defence"], c["best_defence"]["setting"]
        if c["risk"]["level"] not in ("high", "moderate"):
            continue
        if s is not None:
            eps = f", ε = {s['epsilon']:.3g}" if s["epsilon"] is not None else ""
            cost = (
                f"for a Dice cost of {d['dice_cost']:.3f}"
                if d["dice_cost"] is not None
                else "at a Dice cost not measured"
            )
            text = (
                f"If {c['title']} must be released, release it with {setting_words(s)}{eps}: "
                "it brings identification to chance "
                f"({s['top1']} of {s['n']} by {s['metric']}) {cost}."
            )
        elif d["answer"] == "none closes":
            text = (
                f"No defence tried closes the leak of {c['title']} ({', '.join(d['tried'])}): "
                "try stronger settings before release."
            )
        else:
            continue
        out.append({"text": text, "link": "privacy_utility", "runs": [c["run"]]})
    return out


def _evidence(membership: dict, cards: list[dict]) -> dict[str, list[tuple[str, str, dict]]]:
    """Membership inference from the weights alone, per supporting section: the target's own
    segmentation loss per undefended run (``membership``), and the attacks with reference
    models per architecture and variant (``reference``), as ``(run, label, result)``."""
    out: dict[str, list[tuple[str, str, dict]]] = {"membership": [], "reference": []}
    for c in cards:
        for s in (membership.get(c["run"]) or {}).get("membership_inference", []):
            if s.get("signal") in WEIGHT_SIGNALS:
                out["membership"].append((c["run"], f"{c['title']}, the target's own loss", s))
    for e in (membership.get(REFERENCE_KEY) or {}).values():
        for a in e.get("attacks", []):
            label = f"{e['arch']} {e['variant']}, {a['attack']}"
            runs = [
                c["run"]
                for c in cards
                if (c.get("arch"), c.get("variant")) == (e["arch"], e["variant"])
            ]
            out["reference"] += [(run, label, a) for run in runs[:1] or [""]]
    return out


def _weights(membership: dict, cards: list[dict]) -> list[dict]:
    """Whether the weights alone told training patients from others (AUC interval above 0.5)
    or showed no membership signal (0.5 inside it), per supporting section."""
    out = []
    for link, results in _evidence(membership, cards).items():
        quiet, loud, runs = [], [], sorted({run for run, _, _ in results if run})
        for _run, label, r in results:
            lo, hi = r.get("auc_interval") or (None, None)
            if lo is None or hi is None or r.get("auc") is None:
                continue
            figure = f"{label}: AUC {r['auc']:.2f}, interval {lo:.2f}–{hi:.2f}"
            (loud if lo > 0.5 else quiet).append(figure)
        if loud:
            out.append(
                {
                    "text": "The weights alone tell training patients from others ("
                    + "; ".join(loud)
                    + "): publishing them reveals who was in the training set.",
                    "link": link,
                    "runs": runs,
                }
            )
        elif quiet:
            out.append(
                {
                    "text": "The weights alone showed no membership signal at this attack "
                    "power: membership inference did not tell training patients from others "
                    "clearly better than guessing (AUC 0.5 inside the 95% interval; "
                    + "; ".join(quiet)
                    + "). With few non-members a weak signal can still be missed.",
                    "link": link,
                    "runs": runs,
                }
            )
    return out


def _power(cards: list[dict]) -> list[dict]:
    weak = [
        c
        for c in cards
        if c["attacker_effort"]["lower_bound"] and c["risk"]["level"] in ("not shown", "low")
    ]
    if not weak:
        return []
    return [
        {
            "text": f"Before calling {_names(weak)} low risk, train the attack to convergence "
            "(a validation split and a larger epoch budget): its identification is only a "
            "lower bound.",
            "link": "attack_power",
            "runs": [c["run"] for c in weak],
        }
    ]


def _quiet(cards: list[dict]) -> list[dict]:
    low = [c for c in cards if c["risk"]["level"] == "low"]
    if not low or len(low) < len(cards):
        return []
    return [
        {
            "text": f"No model identified its training patients clearly at this attack power "
            f"({_names(low)}: risk low against a decoder trained until it stopped improving); "
            "repeat the audit when the model or its training data change.",
            "link": "table3",
            "runs": [c["run"] for c in low],
        }
    ]


def advice(cards: list[dict], membership: dict) -> list[dict]:
    """The recommendations (``text``, ``link``: the key of the supporting section, ``runs``)
    that the verdict ``cards`` and the ``membership`` section support, most urgent first."""
    return [
        *_share(cards),
        *_who(cards),
        *_defences(cards),
        *_weights(membership, cards),
        *_power(cards),
        *_quiet(cards),
    ]


def advice_markdown(
    items: list[dict], anchors: dict[str, str], labels: dict[str, str]
) -> list[str]:
    """The "What to do" section: one list item per recommendation, with a link to the
    section supporting it (``anchors``: link key -> ``#anchor``; ``labels``: its name)."""
    if not items:
        return []
    lines = ["## What to do", ""]
    for item in items:
        target = anchors.get(item["link"])
        link = f" ([{labels.get(item['link'], 'details')}]({target}))" if target else ""
        lines.append(f"- {item['text']}{link}")
    return [*lines, ""]
