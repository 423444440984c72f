"""``sasc-ttrl calibrate``: calibration SFT of the model's P(Yes) on the soft self-consistency of builder
candidates, measured by ECE / Brier / AUROC before and after (see `runner`)."""

from .config import CalibrationArguments
from .runner import main, make_parser

__all__ = ["CalibrationArguments", "main", "make_parser"]
