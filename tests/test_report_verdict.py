"""The report a privacy officer reads in one minute (issue 31): the verdict cards, "What to do",
headings in words, figures beside their tables, no raw Markdown in the HTML, report.pdf."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser

import pytest

from inversion_audit.report import write_report
from inversion_audit.report.advice import advice
from inversion_audit.report.attack_power import run_power
from inversion_audit.report.html import md_to_html, report_markdown, slug
from inversion_audit.report.membership import REFERENCE_KEY
from inversion_audit.report.summary import identification_risk
from inversion_audit.report.tables import run_title
from inversion_audit.report.verdict import leak_kind, verdict_cards

ITEMS = ("Risk:", "Who leaks:", "Attacker effort:", "Best defence tried:")


class _Page(HTMLParser):
    """The page as the reader sees it: text nodes with their enclosing tags, the ``h2``
    section each lies in, the verdict cards' text, figures and links."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict]] = []
        self.texts: list[tuple[str, str, str]] = []  # (tag, section, text)
        self.section = ""
        self.cards: list[str] = []
        self.card_depth: int | None = None
        self.figures: list[tuple[str, str, str]] = []  # (id, section, alt)
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.heading: list[str] | None = None
        self.headings: list[tuple[str, str]] = []
        self.paragraphs: list[str] = []
        self.block: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("img", "meta", "br"):
            self.stack.append((tag, a))
        if "id" in a:
            self.ids.add(a["id"])
        if "href" in a:
            self.hrefs.append(a["href"])
        if "verdict-card" in (a.get("class") or "").split():
            self.cards.append("")
            self.card_depth = len(self.stack)
        if re.fullmatch(r"h[1-6]", tag):
            self.heading = []
        if tag in ("p", "li"):
            self.block = []
        if tag == "figure":
            self.figures.append([a.get("id", ""), self.section, ""])
        if tag == "img" and self.figures:
            self.figures[-1][2] = a.get("alt", "")

    def handle_endtag(self, tag):
        if re.fullmatch(r"h[1-6]", tag) and self.heading is not None:
            text = "".join(self.heading).strip()
            self.headings.append((tag, text))
            if tag == "h2":
                self.section = text
            self.heading = None
        if tag in ("p", "li") and self.block is not None:
            self.paragraphs.append("".join(self.block).strip())
            self.block = None
        while self.stack:
            top, _ = self.stack.pop()
            if self.card_depth is not None and len(self.stack) < self.card_depth:
                self.card_depth = None
            if top == tag:
                break

    def handle_data(self, data):
        if not data.strip():
            return
        tag = self.stack[-1][0] if self.stack else ""
        self.texts.append((tag, self.section, data))
        if self.heading is not None:
            self.heading.append(data)
        if self.block is not None:
            self.block.append(data)
        if self.card_depth is not None:
            self.cards[-1] += data


def _page(path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def reported(runner_study, tmp_path_factory):
    """A copy of the session's runner-made study with its report written."""
    study = tmp_path_factory.mktemp("verdict") / "study"
    shutil.copytree(runner_study, study)
    write_report(study)
    return study


def _doc(study) -> dict:
    return json.loads((study / "report.json").read_text(encoding="utf-8"))


# -- the verdict cards --------------------------------------------------------------------------------
def test_one_verdict_card_per_run_with_its_four_items(reported):
    doc, page = _doc(reported), _page(reported / "report.html")
    runs = [name for name, e in doc["runs"].items() if not e["defence"]]
    assert len(runs) == 2 and len(page.cards) == len(runs) == len(doc["verdict"])
    for card, text in zip(doc["verdict"], page.cards, strict=True):
        entry = doc["runs"][card["run"]]
        assert card["title"] == run_title(entry) and text.startswith(card["title"])
        for item in ITEMS:
            assert text.count(item) == 1, (item, text)
        assert card["risk"]["level"] in ("high", "moderate", "low", "not shown")
        assert card["risk"]["rule"] and card["risk"]["rule"] in text
        # no holdout in this study, no defence, decoders without a validation split
        assert card["who_leaks"]["answer"] == "non-members not tested"
        assert card["best_defence"]["answer"] == "none tried" and "none tried" in text
        assert card["attacker_effort"]["lower_bound"] and "lower bound" in text
    # the verdict comes first: the cards precede every other section
    assert [h for tag, h in page.headings if tag == "h2"][:2] == ["Verdict", "What to do"]


def test_card_numbers_are_the_reports_own(reported):
    """Each card's identification is Table 3's SSIM row, its effort the attack-power record."""
    doc = _doc(reported)
    table3 = {(r[0], r[1]): r for r in doc["tables"]["table3"]["rows"]}
    columns = doc["tables"]["table3"]["columns"]
    for card in doc["verdict"]:
        ident = card["risk"]["identification"]
        row = dict(zip(columns, table3[(card["run"], "ssim")], strict=True))
        assert (str(ident["top1"]), str(ident["n"]), str(ident["top5"])) == (
            row["top-1"],
            row["n"],
            row["top-5"],
        )
        lo, hi = ident["top1_ci95"]
        assert row["top-1 95% CI"] == f"{100 * lo:.0f}–{100 * hi:.0f}%"
        assert ident["top1_ci95"] == doc["runs"][card["run"]]["table3"]["ssim"]["top1_ci95"]
        assert f"{ident['top1']} of {ident['n']} training patients" in card["risk"]["text"]
        assert f"{100 * lo:.0f}%–{100 * hi:.0f}%" in card["risk"]["text"]
        assert ident["n_candidates"] == len(
            doc["runs"][card["run"]]["table3"]["ssim"]["rank_histogram"]
        )
        power = doc["attack_power"]["runs"][card["run"]]
        effort = card["attacker_effort"]
        assert effort["lower_bound"] == power["lower_bound"]
        (epochs,) = {f["epochs_run"] for f in power["folds"]}  # every fold: the same budget
        assert effort["epochs_run"] == str(epochs)
        assert f"decoder trained {epochs} of" in effort["text"]
        # the summary's risk level is the card's (one rule)
        line = next(t for t in doc["summary_text"] if t.startswith(card["run"] + ":"))
        assert f"Identifiability risk: {card['risk']['level']}." in line


def test_risk_rule_levels():
    def entry(top1: int, n: int, n_cand: int) -> dict:
        hist = [0] * n_cand
        return {"table3": {"ssim": {"top1": top1, "n": n, "top5": n, "rank_histogram": hist}}}

    assert identification_risk(entry(20, 40, 40))["level"] == "high"
    assert identification_risk(entry(8, 40, 40))["level"] == "moderate"
    assert identification_risk(entry(7, 40, 40))["level"] == "low"
    # a high rate on two patients cannot be told from guessing one in five
    assert identification_risk(entry(1, 2, 5))["level"] == "not shown"
    assert identification_risk({"table3": {}}) is None
    # a decoder stopped by its budget turns "low" into "not shown", and keeps "high"
    summary = {"runs": {"r": {**entry(0, 40, 40), "arch": "unet", "variant": "v"}}}
    summary["runs"]["r"].update(threat_model="bottleneck", defence="")
    budget = {**run_power([], "r"), "lower_bound": True}
    converged = {**budget, "lower_bound": False, "folds": [], "stopped_by": ["plateau"]}
    (card,) = verdict_cards(summary, {}, {"rows": []}, {"r": budget})
    assert card["risk"]["level"] == "not shown" and "lower bound" in card["risk"]["rule"]
    (card,) = verdict_cards(summary, {}, {"rows": []}, {"r": converged})
    assert card["risk"]["level"] == "low"
    summary["runs"]["r"]["table3"]["ssim"]["top1"] = 30
    (card,) = verdict_cards(summary, {}, {"rows": []}, {"r": budget})
    assert card["risk"]["level"] == "high" and "lower bound" in card["risk"]["text"]


# -- what to do ----------------------------------------------------------------------------------
def _card(run: str, level: str, kind: str | None, defence: dict | None = None) -> dict:
    return {
        "run": run,
        "title": run,
        "threat_model": "bottleneck",
        "risk": {"level": level, "identification": {"top1": 5, "n": 6}},
        "who_leaks": {"kind": kind},
        "attacker_effort": {"lower_bound": False},
        "best_defence": defence or {"answer": "none tried", "setting": None, "tried": []},
    }


def test_advice_follows_the_numbers():
    closes = {
        "answer": "closes",
        "tried": ["latent-noise"],
        "setting": {
            "defence": "latent-noise",
            "kind": "latent-noise",
            "quantise": False,
            "strength": "2",
            "epsilon": None,
            "top1": 1,
            "n": 6,
            "metric": "ssim",
        },
        "dice_cost": 0.05,
    }
    membership = {
        "a": {
            "membership_inference": [
                {"signal": "segmentation_loss", "auc": 0.55, "auc_interval": [0.2, 0.9]},
                {"signal": "reconstruction_error", "auc": 0.9, "auc_interval": [0.7, 1.0]},
            ]
        }
    }
    items = advice([_card("a", "high", "anyone", closes), _card("b", "low", None)], membership)
    text = " ".join(i["text"] for i in items)
    assert "Do not share the latent codes" in text and "a: 5 of 6" in text
    assert "every patient" in text and "latent noise σ 2" in text and "0.050" in text
    assert "weights alone showed no membership signal" in text
    assert {i["link"] for i in items} == {"table3", "membership", "privacy_utility"}
    # membership inference with reference models (RMIA) whose interval lies above guessing
    rmia = {"attack": "RMIA (offline)", "auc": 0.8, "auc_interval": [0.6, 0.95]}
    membership[REFERENCE_KEY] = {"unet_v": {"arch": "unet", "variant": "v", "attacks": [rmia]}}
    items = advice([_card("a", "high", "anyone", closes)], membership)
    (loud,) = [i for i in items if i["link"] == "reference"]
    assert "weights alone tell training patients" in loud["text"] and "RMIA" in loud["text"]
    # nothing leaks clearly, the decoder converged: no advice against sharing
    quiet = advice([_card("b", "low", None)], {})
    assert len(quiet) == 1 and "No model identified" in quiet[0]["text"]
    assert not any("Do not" in i["text"] for i in quiet)


def test_advice_links_resolve_in_the_page(reported):
    doc, page = _doc(reported), _page(reported / "report.html")
    assert doc["advice"], "the runner study's decoders are lower bounds: advice expected"
    for item in doc["advice"]:
        assert item["anchor"] and item["anchor"][1:] in page.ids
    # every in-page link (contents, cards, advice) has its target
    assert page.hrefs and all(h.startswith("#") and h[1:] in page.ids for h in page.hrefs)


# -- structure -------------------------------------------------------------------------------------
def test_no_markdown_shows_as_text(reported):
    page = _page(reported / "report.html")
    raw = (reported / "report.html").read_text(encoding="utf-8")
    for _tag, _section, text in page.texts:
        assert not re.match(r"^\s*#{1,6}\s", text), text
        assert "**" not in text and not text.strip().startswith("|"), text
        assert "<!--" not in text, text
    assert "<!--" not in raw  # markers become elements


def test_contents_and_headings_in_words(reported):
    doc, page = _doc(reported), _page(reported / "report.html")
    h2 = [h for tag, h in page.headings if tag == "h2"]
    assert "Contents" in h2
    after = h2[h2.index("Contents") + 1 :]
    md = (reported / "report.md").read_text(encoding="utf-8")
    for heading in after:
        assert f"- [{heading}](#{slug(heading)})" in md
    runs = set(doc["runs"])
    for _tag, heading in page.headings:
        assert not any(run in heading for run in runs), heading
    for e in doc["runs"].values():
        assert f"{run_title(e)}: rank of the true original" in [h for _, h in page.headings]
    # Table 3's title is short, its details in a note under the table
    assert doc["tables"]["table3"]["title"] == "Table 3: identification of the true original"
    assert "open-set verification" in md.split("## Table 3", 1)[1].split("\n## ", 1)[0]


def test_every_figure_sits_in_the_section_of_its_table(reported):
    doc, page = _doc(reported), _page(reported / "report.html")
    home = {
        "case_": "Table 1",
        "box_": "Table 2",
        "ranks_": "Table 3",
        "roc_": "Table 3",
        "privacy_utility": "Privacy",
        "attack_": "Attack power",
    }
    placed = {fid.removeprefix("figure-"): (section, alt) for fid, section, alt in page.figures}
    assert set(placed) == set(doc["figures"])
    for key, (section, alt) in placed.items():
        (want,) = [s for prefix, s in home.items() if key.startswith(prefix)]
        assert section.startswith(want), (key, section)
        assert alt and alt != key
    css = (reported / "report.html").read_text(encoding="utf-8")
    width = re.search(r"figure\.report-figure img\{width:(\d+)%", css)
    assert width and int(width.group(1)) >= 60


def test_no_verdict_paragraph_repeated_per_metric():
    """Members vs non-members: one verdict column, one sentence per run (a synthetic section)."""
    from inversion_audit.report.membership import membership_markdown
    from inversion_audit.report.verdict import condense_membership

    def comparison(metric: str) -> dict:
        group = {"top1": 3, "n": 4, "mean_rank": 1.2, "auc": 0.9, "tpr_at_1pct_fpr": 0.5}
        return {
            "members": {**group, "own_mean": 0.5},
            "nonmembers": {**group, "own_mean": 0.5},
            "difference": 0.0,
            "interval": [-0.5, 0.5],
            "fisher_p": 1.0,
            "fisher_p_holm": 1.0,
            "verdict": f"{metric}: members identified 3/4, non-members 3/4. Inconclusive: "
            "with 4 members and 4 non-members the interval allows anything.",
        }

    metrics = {m: comparison(m) for m in ("ssim", "correlation", "psnr")}
    section = {
        "unet_skull-stripped_bottleneck": {
            "n_members": 4,
            "n_nonmembers": 4,
            "metrics": metrics,
            "membership_inference": [],
        }
    }
    lines = condense_membership(membership_markdown(section), section)
    text = "\n".join(lines)
    for c in metrics.values():
        assert c["verdict"] not in text
    assert text.count("**In short:**") == 1
    header = next(line for line in lines if line.startswith("| metric |"))
    assert header.endswith("| verdict |")
    assert sum(line.endswith("| inconclusive |") for line in lines) == 3
    assert leak_kind(metrics["ssim"]["verdict"]) == "inconclusive"


def test_markdown_to_html_renders_what_the_report_uses():
    lines = [
        "# Title",
        "### run, in words (8 members)",
        "- item with **bold**, *italic*, `code` and [a link](#title)",
        "  - nested",
        "- [outside](https://example.org)",
        "| a | b |",
        "|---|---|",
        "| 1 | 2 |",
    ]
    out = md_to_html(lines)
    assert "<h3 id='run-in-words-8-members'>" in out and "###" not in out
    assert "<b>bold</b>" in out and "<i>italic</i>" in out and "<code>code</code>" in out
    assert "<a href='#title'>a link</a>" in out and "https://" in out and "href='https" not in out
    assert out.count("<ul>") == 2 and "<td>1</td>" in out
    assert report_markdown(lines, {}).startswith("# Title\n")


# -- the PDF ------------------------------------------------------------------------------------
def test_pdf_beside_html_with_the_verdict_on_page_one(reported):
    import pypdf

    doc = _doc(reported)
    path = reported / "report.pdf"
    assert path.read_bytes().startswith(b"%PDF")
    reader = pypdf.PdfReader(path)
    assert len(reader.pages) > 1
    first = re.sub(r"\s+", " ", reader.pages[0].extract_text())
    assert "Verdict" in first and "What to do" in first
    for card in doc["verdict"]:
        assert card["title"] in first
        ident = card["risk"]["identification"]
        assert f"Risk: {card['risk']['level']}. {ident['top1']} of {ident['n']}" in first
    for item in ITEMS:
        assert first.count(item) == len(doc["verdict"])
    # the rest: tables as text
    rest = " ".join(p.extract_text() for p in reader.pages[1:])
    assert "Table 3: identification of the true original" in rest


# -- a study with a holdout and a defence, by the real runner -----------------------------------------
@pytest.mark.slow
def test_holdout_and_defence_fill_who_leaks_and_best_defence(tmp_path):
    from conftest import write_blob_cohort
    from inversion_audit.report import run_and_report
    from inversion_audit.study.config import study_config_from_dict

    cohort = write_blob_cohort(tmp_path / "cohort", {f"sub{k:02d}": k for k in range(8)})
    config = {
        "study": {"name": "verdict", "seed": 1, "device": "cpu", "threads": 1},
        "cohort": {"path": str(cohort), "n_subjects": 6, "holdout_n": 2},
        "folds": {"n_folds": 2, "seed": 0, "run_folds": [0]},
        "variants": ["skull-stripped"],
        "archs": ["unet"],
        "threat_models": ["bottleneck"],
        "preprocess": {
            "spacing": [2.0, 2.0, 2.0],
            "shape": [32, 32, 32],
            "divisible_by": 4,
            "bias_correction": False,
        },
        "target": {"depth": 2, "base_filters": 4, "epochs": 1, "batch_size": 2, "lr": 0.01},
        "inversion": {"epochs": 1, "batch_size": 2, "lr": 0.01},
        "matching": {"metrics": ["ssim", "psnr", "dice"], "top_k": 1},
        "defences": [{"kind": "latent-noise", "strengths": [8.0]}],
    }
    out = run_and_report(study_config_from_dict(config), tmp_path / "study")
    doc, page = _doc(out), _page(out / "report.html")
    (card,) = doc["verdict"]
    assert len(page.cards) == 1 and card["run"] == "unet_skull-stripped_bottleneck"
    verdict = doc["membership"][card["run"]]["metrics"]["ssim"]["verdict"]
    assert card["who_leaks"]["kind"] == leak_kind(verdict)
    assert card["who_leaks"]["answer"] != "non-members not tested"
    assert card["links"]["who_leaks"][1:] in page.ids
    # the best defence is the privacy–utility table's answer, with its Dice cost
    rows = {r["run"]: r for r in doc["privacy_utility"]["rows"]}
    defended = rows["unet_skull-stripped_bottleneck_latent-noise-8"]
    best = card["best_defence"]
    assert best["tried"] == ["latent-noise"]
    if defended["at_chance"]:
        assert best["answer"] == "closes" and best["setting"]["strength"] == "8"
        cost = rows[card["run"]]["dice_private"] - defended["dice_private"]
        assert best["dice_cost"] == pytest.approx(cost)
        assert f"{cost:.3f}" in best["text"]
    else:
        assert best["answer"] == "none closes"
    assert card["links"]["best_defence"][1:] in page.ids
    # the members vs non-members verdicts: a column, not a paragraph per metric
    section = " ".join(t for _, s, t in page.texts if s.startswith("Who leaks"))
    for run in doc["membership"]:
        for c in doc["membership"][run]["metrics"].values():
            assert c["verdict"] not in section
    assert section.count("In short:") == len(doc["membership"]) == 2
    # the privacy–utility figure is in its section
    assert any(
        fid == "figure-privacy_utility" and s.startswith("Privacy") for fid, s, _ in page.figures
    )


# -- the bundled demo study (File > Open Sample), its report written again -----------------------------
@pytest.mark.slow
def test_the_demo_studys_report_reads_in_one_minute(tmp_path):
    """On the demo study: a verdict card per run with its four items, no Markdown as text,
    every figure in the section of its table, no per-metric verdict paragraph, and the
    verdict on page 1 of report.pdf, with the numbers of report.json."""
    import pypdf

    from inversion_audit.gui.demo_study import demo_study_dir

    study = tmp_path / "demo"
    shutil.copytree(demo_study_dir(), study)
    for kind in ("md", "html", "json", "pdf"):
        (study / f"report.{kind}").unlink(missing_ok=True)
    write_report(study)
    doc, page = _doc(study), _page(study / "report.html")
    runs = [name for name, e in doc["runs"].items() if not e["defence"]]
    assert runs and len(page.cards) == len(runs) == len(doc["verdict"])
    for card, text in zip(doc["verdict"], page.cards, strict=True):
        for item in ITEMS:
            assert text.count(item) == 1, (item, text)
        ident = card["risk"]["identification"]
        table3 = doc["runs"][card["run"]]["table3"]["ssim"]
        assert (ident["top1"], ident["n"]) == (table3["top1"], table3["n"])
    for _tag, _section, text in page.texts:
        assert not re.match(r"^\s*#{1,6}\s", text), text
    sections = {section for _fid, section, _alt in page.figures}
    assert all(section for section in sections) and all(alt for *_, alt in page.figures)
    # who leaks: one sentence per run (the per-metric verdicts are a table column)
    assert sum(p.startswith("In short:") for p in page.paragraphs) == len(runs)
    first = re.sub(r"\s+", " ", pypdf.PdfReader(study / "report.pdf").pages[0].extract_text())
    for card in doc["verdict"]:
        assert card["title"] in first and f"Risk: {card['risk']['level']}." in first
