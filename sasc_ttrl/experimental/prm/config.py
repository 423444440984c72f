"""The arguments of ``sasc-ttrl prm`` ([`PRMArguments`]) and the stages it runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...data.prompts import PROMPT_STYLES, check_prompt_style
from ...data.rollouts import builder_prompt_style
from ...sampling.arguments import SamplingArguments
from ...sampling.generation import BACKENDS
from ...selection.step_labels import RULES, StepLabelSettings
from ...training.sft import TrainSettings
from .prm800k import NEUTRAL_MODES, PATH_MODES, PRM800KSettings

STAGES = ("label", "prm", "orm")


@dataclass
class PRMArguments(SamplingArguments, TrainSettings):
    """Arguments of ``sasc-ttrl prm``: the sampling fields ([`SamplingArguments`]) are those of the continuations,
    the training settings apply to both the PRM and the outcome verifier."""

    dataset_path: str | None = field(
        default=None, metadata={"help": "Builder output (<method>.jsonl) written with --save_candidates."}
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Samples the continuations; initialises the PRM and the verifier."}
    )
    output_dir: str = field(default="outputs/prm", metadata={"help": "Output directory."})
    stages: list[str] | None = field(
        default=None,
        metadata={"help": f"Stages: {STAGES} (default: all on builder data, label and prm on PRM800K)."},
    )
    prm800k_data: list[str] | None = field(
        default=None,
        metadata={
            "help": "PRM800K-format step labels (JSONL files, folders or hub names) instead of Monte-Carlo ones."
        },
    )
    prm800k_split: str = field(default="train", metadata={"help": "Split of PRM800K hub data sets."})
    prm800k_paths: str = field(
        default="chosen",
        metadata={"help": f"PRM800K row -> paths: {' or '.join(PATH_MODES)} (every combination of the alternatives)."},
    )
    prm800k_neutral: str = field(
        default="good", metadata={"help": f"Label of a neutral (0) PRM800K step: {', '.join(NEUTRAL_MODES)}."}
    )
    prm800k_max_paths: int = field(default=64, metadata={"help": "prm800k_paths=prod: at most this many per row."})
    prm800k_keep_control_rows: bool = field(
        default=False, metadata={"help": "Keep PRM800K's quality-control and initial-screening rows."}
    )
    k: int = field(default=4, metadata={"help": "Continuations sampled per step prefix."})
    rule: str = field(default="any", metadata={"help": f"Step label rule: {' or '.join(RULES)}."})
    threshold: float = field(default=0.5, metadata={"help": "rule=share: share of continuations that must agree."})
    target: str = field(
        default="pseudo_label",
        metadata={"help": "pseudo_label (label-free) or gold (the reference answer, when you may use it)."},
    )
    prompt_style: str | None = field(
        default=None,
        metadata={
            "help": f"Prompt of the continuations ({', '.join(PROMPT_STYLES)}); default: the builder output's own "
            "(its build_config.json), so that continuations extend the rollouts in the prompt they were sampled in."
        },
    )
    batch_size: int = field(default=4, metadata={"help": "Prefixes per generation call."})
    backend: str = field(default="auto", metadata={"help": "Sampling backend: auto, transformers or vllm."})
    limit: int | None = field(default=None, metadata={"help": "Only the first N questions."})
    separator: str = field(default="\n", metadata={"help": "Text after each step; the PRM reads its last token."})
    max_pairs_per_question: int = field(default=4, metadata={"help": "Outcome verifier pairs per question."})
    overwrite: bool = field(default=False, metadata={"help": "Delete an earlier run in output_dir first."})

    def __post_init__(self):
        if isinstance(self.prm800k_data, str):
            self.prm800k_data = [self.prm800k_data]
        if self.stages is None:
            self.stages = ["label", "prm"] if self.prm800k_data else list(STAGES)
        if isinstance(self.stages, str):
            self.stages = self.stages.replace(",", " ").split()
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages:
            raise ValueError(f"stages must be a non-empty subset of {STAGES}, got {self.stages}")
        if self.model_name_or_path is None:
            raise ValueError("model_name_or_path is required")
        if self.prm800k_data:
            self.prm800k_settings()
            if "orm" in self.stages:
                raise ValueError("the orm stage pairs sampled candidates: it needs a builder output, not PRM800K rows")
        elif self.dataset_path is None:
            raise ValueError("dataset_path (a builder output) or prm800k_data (human step labels) is required")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.prompt_style is None:
            self.prompt_style = builder_prompt_style(self.dataset_path) if self.dataset_path else "math"
        check_prompt_style(self.prompt_style)
        if self.max_pairs_per_question < 1:
            raise ValueError(f"max_pairs_per_question must be >= 1, got {self.max_pairs_per_question}")
        self.label_settings()
        self.check_training()

    def prm800k_settings(self) -> PRM800KSettings:
        """How PRM800K rows become labelled paths (validated)."""
        return PRM800KSettings(
            mode=self.prm800k_paths,
            neutral=self.prm800k_neutral,
            max_paths=self.prm800k_max_paths,
            keep_control_rows=self.prm800k_keep_control_rows,
        )

    def label_settings(self) -> StepLabelSettings:
        """The Monte-Carlo labelling settings (validated)."""
        return StepLabelSettings(k=self.k, rule=self.rule, threshold=self.threshold, target=self.target)
