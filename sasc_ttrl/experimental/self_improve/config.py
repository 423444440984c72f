"""The arguments of ``sasc-ttrl self-improve`` ([`SelfImproveArguments`])."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...core.vote_arguments import VoteArguments
from ...core.voting import WEIGHTINGS
from ...data.prompts import check_prompt_style
from ...data.rollouts import TARGETS
from ...sampling.arguments import SamplingArguments
from ...sampling.guidance import GUIDANCE_STRATEGIES
from ...sampling.openai_client import KeyStepClient, api_key_from_env
from ...training.sft import TrainSettings


@dataclass
class SelfImproveArguments(VoteArguments, SamplingArguments, TrainSettings):
    """Arguments of ``sasc-ttrl self-improve`` (the training settings apply to every round's fine-tuning).

    The pseudo-label is [`core.voting.stability_vote`]'s with the vote fields of [`VoteArguments`]. Their defaults
    here differ in two fields, ``filter_ratio=0.0`` and ``vote_weighting="uniform"``: no gate and equal weights, a
    plain majority vote (ties to the answer that comes first). ``--filter_ratio 0.2 --vote_weighting clipped_exp``
    is the stability-aware vote of ``train`` (`VoteSettings`' defaults).
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "The starting model."})
    dataset_name: str | None = field(default=None, metadata={"help": "Questions: benchmark name or local file."})
    dataset_split: str | None = field(default=None, metadata={"help": "Split of hub data sets (default: test)."})
    prompt_column: str | None = field(default=None, metadata={"help": "Question column (default: auto-detect)."})
    answer_column: str | None = field(default=None, metadata={"help": "Reference answer column (optional)."})
    limit: int | None = field(default=None, metadata={"help": "Only the first N questions."})
    rounds: int = field(default=2, metadata={"help": "Fine-tuning rounds R (then one measuring pass)."})
    n_samples: int = field(default=4, metadata={"help": "Rollouts per question and round."})
    batch_size: int = field(default=4, metadata={"help": "Questions per generation call."})
    target: str = field(
        default="pseudo_label",
        metadata={"help": "pseudo_label (label-free) or gold (the reference answer, when you may use it)."},
    )
    filter_ratio: float = field(
        default=0.0,
        metadata={
            "help": "Share of answered rollouts per group dropped as least stable, in [0, 1) (default 0: no gate)."
        },
    )
    vote_weighting: str = field(
        default="uniform",
        metadata={
            "help": f"Vote weights: {', '.join(WEIGHTINGS)} (default uniform: with filter_ratio 0 a plain majority; "
            "--filter_ratio 0.2 --vote_weighting clipped_exp is train's stability-aware vote)."
        },
    )
    hard_threshold: float = field(
        default=0.5, metadata={"help": "A question is hard when fewer rollouts than this share agree with the target."}
    )
    guided: bool = field(default=True, metadata={"help": "Re-sample hard questions with guidance (--guidance)."})
    guidance: str = field(
        default="socratic", metadata={"help": f"How hard questions are guided: {', '.join(GUIDANCE_STRATEGIES)}."}
    )
    solution_column: str | None = field(
        default=None,
        metadata={
            "help": "Reference solution column (rationale guidance; state_reset's fallback). Default: solution."
        },
    )
    teacher_api_base: str | None = field(
        default=None, metadata={"help": "OpenAI-compatible API base of the teacher (--guidance interactive)."}
    )
    teacher_api_model: str = field(default="gpt-4o-mini", metadata={"help": "Model name of the teacher API."})
    teacher_api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "Environment variable holding the teacher API key."}
    )
    teacher_temperature: float = field(default=0.0, metadata={"help": "Temperature of the teacher."})
    teacher_max_tokens: int = field(default=512, metadata={"help": "Longest teacher reply in tokens."})
    teacher_max_retries: int = field(default=3, metadata={"help": "Teacher API retries after the first attempt."})
    teacher_timeout: float = field(default=60.0, metadata={"help": "Seconds allowed per teacher request."})
    max_kept_per_question: int = field(default=2, metadata={"help": "Distinct kept rollouts per question."})
    output_dir: str = field(default="outputs/self_improve", metadata={"help": "Output directory."})
    overwrite: bool = field(default=False, metadata={"help": "Delete an earlier run in output_dir first."})
    stop_after_round: int | None = field(
        default=None, metadata={"help": "Stop once this round is finished (a rerun without it goes on)."}
    )

    def __post_init__(self):
        if self.model_name_or_path is None or self.dataset_name is None:
            raise ValueError("model_name_or_path and dataset_name are required")
        check_prompt_style(self.prompt_style)
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.rounds < 1 or self.n_samples < 1 or self.max_kept_per_question < 1:
            raise ValueError("rounds, n_samples and max_kept_per_question must be >= 1")
        if not 0.0 < self.hard_threshold <= 1.0:
            raise ValueError(f"hard_threshold must be in (0, 1], got {self.hard_threshold}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.guidance not in GUIDANCE_STRATEGIES:
            raise ValueError(f"guidance must be one of {GUIDANCE_STRATEGIES}, got {self.guidance!r}")
        if self.guided and self.guidance == "interactive" and not self.teacher_api_base:
            raise ValueError("guidance='interactive' needs a teacher: pass --teacher_api_base (OpenAI-compatible)")
        self.vote_settings  # noqa: B018 - validates the vote fields and answer_timeout
        self.check_training()

    def teacher(self) -> KeyStepClient | None:
        """The teacher's chat client (``interactive`` guidance only)."""
        if not (self.guided and self.guidance == "interactive"):
            return None
        return KeyStepClient(
            api_base=str(self.teacher_api_base),
            model=self.teacher_api_model,
            temperature=self.teacher_temperature,
            api_key=api_key_from_env(self.teacher_api_key_env, "teacher"),
            max_retries=self.teacher_max_retries,
            timeout=self.teacher_timeout,
            max_tokens=self.teacher_max_tokens,
        )
