"""Arguments of ``sasc-ttrl build`` ([`BuildArguments`]) and the settings that decide whether a rerun may resume.

The builder itself is [`build_data`]; these fields also read from ``--config build.yaml`` through `TrlParser`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.vote_arguments import VoteArguments
from ..data.prompts import check_prompt_style
from ..sampling.arguments import SamplingArguments, sampling_field
from ..sampling.dynamic_temperature import DynamicTemperatureArguments
from ..sampling.generation import BACKENDS, SamplingSettings, resolve_backend
from .adapters.reward_model import VERIFIER_KINDS
from .base import CALIBRATION_CONFIDENCES, DEEPCONF_MODES, STEP_AGGREGATIONS, SelectionSettings
from .registry import ALL, SELECTION_METHODS, get_method, resolve_methods

CONFIG_FILE = "build_config.json"
# Arguments that change neither the candidates nor their selection: a rerun may change them freely.
FREE_KEYS = (
    "methods",
    "limit",
    "output_dir",
    "overwrite",
    "batch_size",
    "feature_batch_size",
    "save_candidates",
    "answer_timeout",
    "key_step_api_base",
    "key_step_api_model",
    "key_step_temperature",
    "key_step_api_key_env",
    "key_step_max_retries",
    "key_step_backoff",
    "key_step_timeout",
)
GUIDED_SEED_OFFSET = 1_000_003


@dataclass
class BuildArguments(VoteArguments, DynamicTemperatureArguments, SamplingArguments):
    """Arguments of ``sasc-ttrl build``.

    Args:
        model_name_or_path: The model that samples (and, for ``self-eval``, judges) the candidates.
        dataset_name: ``math500``, ``amc``, ``aime24``, ``gsm8k``, a hub data set or a local json/jsonl/parquet/csv
            file. Questions need no answer; a hidden answer, when present, only grades the selections.
        methods: Selection methods (see `sasc_ttrl.selection`), or ``all``.
        n_candidates: Candidates sampled per question.
        temperature: Sampling temperature (0.1 as in the original pipeline; recipes may raise it).
        top_p: Nucleus sampling mass.
        max_tokens: Maximum completion length.
        prompt_style: How questions are asked (``data.prompts.PROMPT_STYLES``): ``math`` (step by step, ``\\boxed{}``)
            or ``word_problem_one_shot`` (one worked example; for small instruct models).
        limit: Subset size: only the first N questions.
        lambda_weight: Balance of token-level (``lambda``) and step-level (``1 - lambda``) confidence in methods
            that combine two (``self-certainty``, ``self-eval``), in ``[0, 1]``.
        output_dir: Where the rows and the report go.
        dynamic_temperature, dt_base, dt_n, dt_theta, dt_entropy: sample the candidates at an entropy-based
            temperature per token ([`DynamicTemperatureArguments`]; transformers backend), as Self-Calibration
            builds its data.
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "Model that samples the candidates."})
    dataset_name: str = field(
        default="math500", metadata={"help": "math500, amc, aime24, gsm8k, a hub data set, or a local file."}
    )
    dataset_split: str | None = field(default=None, metadata={"help": "Split of hub data sets (default: test)."})
    prompt_column: str | None = field(default=None, metadata={"help": "Question column (default: auto-detect)."})
    answer_column: str | None = field(
        default=None, metadata={"help": "Hidden answer column, for grading only (default: auto-detect, optional)."}
    )
    limit: int | None = field(default=None, metadata={"help": "Subset size: only the first N questions."})
    methods: list[str] = field(
        default_factory=lambda: ["self-consistency", "sasc"],
        metadata={"help": f"Selection methods: {', '.join(SELECTION_METHODS)}, or {ALL}."},
    )
    n_candidates: int = field(default=4, metadata={"help": "Candidates sampled per question."})
    temperature: float = sampling_field("temperature", 0.1)
    max_tokens: int = sampling_field("max_tokens", 3072)
    seed: int = field(default=42, metadata={"help": "Base seed; sample j of question i comes from (seed, i, j)."})
    batch_size: int = field(default=4, metadata={"help": "Questions per generation call."})
    feature_batch_size: int = field(default=4, metadata={"help": "Sequences per scoring forward pass."})
    backend: str = field(default="auto", metadata={"help": "Sampling backend: auto, transformers or vllm."})
    dtype: str = field(default="auto", metadata={"help": "Model dtype: auto, float32, bfloat16, float16."})
    lambda_weight: float = field(
        default=0.5, metadata={"help": "Weight of token-level vs step-level confidence, in [0, 1]."}
    )
    step_aggregation: str = field(
        default="min", metadata={"help": f"Per-step confidences -> one: {', '.join(STEP_AGGREGATIONS)}."}
    )
    entropy_top_k: int = field(default=20, metadata={"help": "k of the top-k entropy (sasc) and top-k logprobs."})
    deepconf_window: int = field(default=2048, metadata={"help": "DeepConf: sliding-window size in tokens."})
    deepconf_eta: float = field(default=0.9, metadata={"help": "DeepConf: share of answered traces kept."})
    deepconf_mode: str = field(
        default="lowest", metadata={"help": f"DeepConf trace confidence: {', '.join(DEEPCONF_MODES)}."}
    )
    calibration_threshold: float = field(
        default=0.9, metadata={"help": "Self-Calibration early stopping: confidence that stops sampling."}
    )
    calibration_confidence: str = field(
        default="token", metadata={"help": f"Self-Calibration confidence: {', '.join(CALIBRATION_CONFIDENCES)}."}
    )
    verifier_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Reward model for the verifier method (sequence classification)."}
    )
    verifier_kind: str = field(
        default="orm", metadata={"help": "orm (scores the solution) or prm (scores every step prefix)."}
    )
    guided_resample: bool = field(
        default=False, metadata={"help": "Re-sample questions without consensus with a Socratic hint."}
    )
    consensus_threshold: float = field(
        default=0.5, metadata={"help": "Guided re-sampling: re-sample when the majority ratio is below this."}
    )
    key_step_api_base: str | None = field(
        default=None, metadata={"help": "OpenAI-compatible API base for key-step extraction (none: no gpt_response)."}
    )
    key_step_api_model: str = field(default="gpt-4o-mini", metadata={"help": "Model name of the key-step API."})
    key_step_temperature: float = field(default=0.0, metadata={"help": "Temperature of the key-step API model."})
    key_step_api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "Environment variable holding the key-step API key."}
    )
    key_step_max_retries: int = field(default=3, metadata={"help": "Key-step API retries after the first attempt."})
    key_step_backoff: float = field(default=1.0, metadata={"help": "Seconds before the first key-step retry."})
    key_step_timeout: float = field(default=60.0, metadata={"help": "Seconds allowed per key-step request."})
    save_candidates: bool = field(default=False, metadata={"help": "Also write every candidate with its score."})
    output_dir: str = field(default="outputs/build", metadata={"help": "Output directory."})
    overwrite: bool = field(default=False, metadata={"help": "Delete an earlier build in output_dir first."})

    def __post_init__(self):
        if isinstance(self.methods, str):
            self.methods = self.methods.replace(",", " ").split()
        resolve_methods(self.methods)  # unknown names fail here, listing the valid ones
        check_prompt_style(self.prompt_style)
        if self.model_name_or_path is None:
            raise ValueError("model_name_or_path is required")
        if self.n_candidates < 1:
            raise ValueError(f"n_candidates must be >= 1, got {self.n_candidates}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.verifier_kind not in VERIFIER_KINDS:
            raise ValueError(f"verifier_kind must be one of {VERIFIER_KINDS}, got {self.verifier_kind!r}")
        needs_verifier = [n for n in self.methods if n != ALL and "verifier" in get_method(n).needs]
        if needs_verifier and self.verifier_model_name_or_path is None:
            raise ValueError(f"the {' and '.join(needs_verifier)} method needs --verifier_model_name_or_path")
        if not 0.0 <= self.consensus_threshold <= 1.0:
            raise ValueError(f"consensus_threshold must be in [0, 1], got {self.consensus_threshold}")
        self.selection_settings()  # validates lambda_weight, deepconf and calibration settings
        self.sampling_settings  # noqa: B018 - validates the dynamic-temperature fields
        resolve_backend(self.backend, self.dynamic_temperature)  # refuses vllm with --dynamic_temperature

    @property
    def sampling_settings(self) -> SamplingSettings:
        """How the candidates are drawn ([`SamplingSettings`])."""
        return SamplingSettings.from_arguments(self, n=self.n_candidates)

    def selection_settings(self) -> SelectionSettings:
        """The methods' hyper-parameters."""
        return SelectionSettings(
            lambda_weight=self.lambda_weight,
            step_aggregation=self.step_aggregation,
            vote=self.vote_settings,
            deepconf_window=self.deepconf_window,
            deepconf_eta=self.deepconf_eta,
            deepconf_mode=self.deepconf_mode,
            calibration_threshold=self.calibration_threshold,
            calibration_confidence=self.calibration_confidence,
        )


def build_settings(args: BuildArguments, backend: str) -> dict[str, Any]:
    """The settings that determine a build's rows: every argument but ``FREE_KEYS``, plus the backend used."""
    from dataclasses import asdict

    return {k: v for k, v in {**asdict(args), "backend": backend}.items() if k not in FREE_KEYS}


def check_build_settings(output_dir: str | Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Record ``settings`` in ``output_dir``, or refuse to resume a build made with other ones (see
    `sasc_ttrl.data.store.check_run_settings`); ``overwrite`` deletes the earlier build instead."""
    from ..data.store import check_run_settings, field_defaults

    check_run_settings(
        Path(output_dir), CONFIG_FILE, settings, overwrite, field_defaults(BuildArguments), what="a build"
    )
