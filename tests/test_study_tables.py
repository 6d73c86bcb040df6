"""The report's plain-language summary: counts, chance level and risk level."""

from __future__ import annotations

import pytest

from inversion_audit.report.tables import plain_summary


def _entry(n: int, top1: int, top5: int, n_cand: int = 40) -> dict:
    return {"n": n, "top1": top1, "top5": top5, "rank_histogram": [0] * n_cand}


@pytest.mark.parametrize(
    ("top1", "level"),
    [(20, "high"), (40, "high"), (19, "moderate"), (8, "moderate"), (7, "low"), (0, "low")],
)
def test_risk_level_follows_the_top1_rate(top1: int, level: str) -> None:
    summary = {"runs": {"run": {"table3": {"ssim": _entry(40, top1, 40)}}}}
    (line,) = plain_summary(summary)
    assert f"**{top1} of 40**" in line
    assert f"risk: **{level}**" in line


def test_summary_names_the_best_metric_with_its_own_count() -> None:
    """A metric that ranked fewer reconstructions (deformation: own original outside the
    SSIM top-k) is reported against the number it ranked, not the run's n."""
    table3 = {
        "ssim": _entry(10, 6, 9),
        "correlation": _entry(10, 4, 8),
        "deformation": _entry(9, 8, 9),
    }
    (line,) = plain_summary({"runs": {"unet_x": {"table3": table3}}})
    assert line.startswith("- **unet_x**:")
    assert "**6 of 10**" in line and "top 5 for 9 of 10" in line
    assert "guessing among 40 candidates would find about 0.25" in line
    assert "most identifying metric was deformation (8 of the 9 it ranked)" in line
    table3["deformation"] = _entry(10, 5, 9)
    (line,) = plain_summary({"runs": {"unet_x": {"table3": table3}}})
    assert "most identifying metric was ssim (6 of 10)" in line


def test_runs_without_ssim_are_left_out() -> None:
    summary = {"runs": {"a": {"table3": {}}, "b": {"table3": {"ssim": _entry(5, 5, 5, 5)}}}}
    lines = plain_summary(summary)
    assert len(lines) == 1 and lines[0].startswith("- **b**")
