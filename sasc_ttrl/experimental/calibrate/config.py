"""The arguments of ``sasc-ttrl calibrate`` ([`CalibrationArguments`])."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...core.answers import DEFAULT_TIMEOUT_SECONDS
from ...training.sft import TrainSettings

CONFIDENCES = ("token", "uniform")


@dataclass
class CalibrationArguments(TrainSettings):
    """Arguments of ``sasc-ttrl calibrate``."""

    dataset_path: str | None = field(
        default=None, metadata={"help": "Builder output (<method>.jsonl) written with --save_candidates."}
    )
    model_name_or_path: str | None = field(default=None, metadata={"help": "The model to calibrate."})
    eval_dataset_path: str | None = field(
        default=None, metadata={"help": "Builder output of held-out questions with reference answers."}
    )
    eval_fraction: float = field(
        default=0.5, metadata={"help": "Without eval_dataset_path: share of the questions (the last ones) held out."}
    )
    confidence: str = field(
        default="token", metadata={"help": f"Candidate confidence in the SSC target: {' or '.join(CONFIDENCES)}."}
    )
    resolution: int = field(default=10, metadata={"help": "Copies per example; targets are rounded to 1/resolution."})
    num_bins: int = field(default=10, metadata={"help": "Equal-width bins of the expected calibration error."})
    limit: int | None = field(
        default=None, metadata={"help": "Only the first N questions of dataset_path (before eval_fraction)."}
    )
    judge_batch_size: int = field(default=8, metadata={"help": "Questions per P(Yes) forward pass."})
    output_dir: str = field(default="outputs/calibrate", metadata={"help": "Output directory."})
    overwrite: bool = field(default=False, metadata={"help": "Delete an earlier run in output_dir first."})
    answer_timeout: float = field(default=DEFAULT_TIMEOUT_SECONDS, metadata={"help": "Seconds per math-verify check."})

    def __post_init__(self):
        if self.dataset_path is None or self.model_name_or_path is None:
            raise ValueError("dataset_path (a builder output) and model_name_or_path are required")
        if self.confidence not in CONFIDENCES:
            raise ValueError(f"confidence must be one of {CONFIDENCES}, got {self.confidence!r}")
        if self.eval_dataset_path is None and not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in (0, 1), got {self.eval_fraction}")
        if self.resolution < 1 or self.num_bins < 1:
            raise ValueError("resolution and num_bins must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        self.check_training()
