"""Which scale counts fit an image: the rule of each multi-scale flow, without torch.

Real NVP and Flow++ (Dinh et al. 2017 §3.6) run ``n_scales`` scales; every scale but the
last squeezes 2x2 pixels into channels, so an ``H x W`` image is squeezed ``n_scales - 1``
times. Glow (Kingma & Dhariwal 2018 §3) squeezes at the start of each of its ``n_levels``
levels, ``n_levels`` times. ``s`` squeezes need ``H`` and ``W`` divisible by ``2^s``, and the
couplings of the last scale need some pixels left: Real NVP's checkerboard at least 2x2,
Flow++'s at least 2 pixels.

The models' constructors and the study-configuration check (:mod:`vaeflow.config`, which
runs while Snakemake plans and must not import torch) both ask these rules, so a value the
configuration accepts is one the model builds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScaleRule:
    """How a multi-scale flow's count option fits an image ``(C, H, W)``."""

    model: str
    """the class name, for messages"""
    option: str
    """the constructor option that counts scales or levels"""
    default: int
    """that option's default (the constructor's signature reads it from here)"""
    unsqueezed: int
    """scales that do not squeeze: 1 (the last scale) for Real NVP and Flow++, 0 for Glow"""
    min_side: int = 1
    """least height and width left after the last squeeze"""
    min_pixels: int = 1
    """least ``H·W`` left after the last squeeze"""
    needs: str = ""
    """what the image needs for the smallest value, for the message when none fits"""

    def fits(self, value: int, height: int, width: int) -> bool:
        squeezes = value - self.unsqueezed
        if squeezes < 0:
            return False
        factor = 2**squeezes
        return (
            height % factor == 0
            and width % factor == 0
            and min(height, width) // factor >= self.min_side
            and (height // factor) * (width // factor) >= self.min_pixels
        )

    def largest(self, height: int, width: int) -> int:
        """The largest value that fits an ``H x W`` image; 0 when not even 1 fits."""
        value = 0
        while self.fits(value + 1, height, width):
            value += 1
        return value

    def why(self, value: int) -> str:
        """What ``value`` asks of an image's height and width."""
        exponent = f"({self.option}-{self.unsqueezed})" if self.unsqueezed else self.option
        text = (
            f"every {'scale but the last' if self.unsqueezed else 'level'} squeezes 2x2 pixels into channels, so "
            f"height and width must be divisible by 2^{exponent} = {2 ** max(value - self.unsqueezed, 0)}"
        )
        if self.min_side > 1:
            text += f" and leave at least {self.min_side}x{self.min_side} pixels for the last scale"
        if self.min_pixels > 1:
            text += f" and leave at least {self.min_pixels} pixels for the last scale"
        return text

    def check(self, value: int, data_shape: tuple[int, ...]) -> None:
        """Raise ValueError naming the value, the shape and the largest value that fits (images only)."""
        if len(data_shape) != 3 or self.fits(value, *data_shape[1:]):
            return
        largest = self.largest(*data_shape[1:])
        advice = (
            f"use {self.option} <= {largest} for this shape"
            if largest
            else f"{self.model} needs {self.needs}; pad or crop the images"
        )
        raise ValueError(
            f"{self.model} option {self.option}={value} does not fit data_shape {tuple(data_shape)}: "
            f"{self.why(value)}; {advice}"
        )


REALNVP_SCALES = ScaleRule(
    "RealNVP", "n_scales", default=2, unsqueezed=1, min_side=2, needs="images of at least 2x2 pixels"
)
GLOW_LEVELS = ScaleRule("Glow", "n_levels", default=2, unsqueezed=0, needs="an even height and width")
FLOWPP_SCALES = ScaleRule(
    "FlowPP", "n_scales", default=2, unsqueezed=1, min_pixels=2, needs="images of at least 2 pixels"
)

#: the rule of each multi-scale model of :data:`vaeflow.models.MODELS`, by its config name
SCALE_RULES: dict[str, ScaleRule] = {"realnvp": REALNVP_SCALES, "glow": GLOW_LEVELS, "flowpp": FLOWPP_SCALES}
