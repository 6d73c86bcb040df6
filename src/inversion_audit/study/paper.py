"""The paper's published figures (Subbanna et al., Sensors 2021), shown beside each study's."""

from __future__ import annotations

__all__ = ["PAPER_TABLE1", "PAPER_TABLE2", "PAPER_TABLE3", "PAPER_MEAN_RANK", "PAPER_DICE"]

#: Table 1: mean (sd) over 40 reconstructions, keyed by (arch, variant) then metric
PAPER_TABLE1 = {
    ("unet", "skull-stripped"): {"correlation": (0.60, 0.14), "ssim": (0.73, 0.12)},
    ("segnet", "skull-stripped"): {"correlation": (0.53, 0.13), "ssim": (0.61, 0.12)},
    ("unet", "with-skull"): {"correlation": (0.43, 0.15), "ssim": (0.50, 0.11)},
    ("segnet", "with-skull"): {"correlation": (0.39, 0.13), "ssim": (0.43, 0.13)},
}
#: Table 2: SSIM with own original vs with others (skull-stripped)
PAPER_TABLE2 = {"unet": (0.73, 0.50), "segnet": (0.61, 0.49)}
#: Table 3: top-1 matches out of 40 (skull-stripped)
PAPER_TABLE3 = {
    "unet": {"correlation": 16, "ssim": 30, "deformation": 24},
    "segnet": {"correlation": 14, "ssim": 26, "deformation": 22},
}
PAPER_MEAN_RANK = {
    "unet": {"ssim": 1.5, "deformation": 1.8},
    "segnet": {"ssim": 1.6, "deformation": 1.8},
}
#: Dice of the target network on originals and on reconstructions
PAPER_DICE = {"unet": (0.53, 0.37), "segnet": (0.48, 0.32)}
