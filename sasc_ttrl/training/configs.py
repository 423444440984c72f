"""Configuration dataclasses: `SASCConfig` extends TRL's `GRPOConfig`; `SASCScriptArguments` extends TRL's
`ScriptArguments` with the data columns."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass, field, replace

from trl import GRPOConfig, ScriptArguments

from ..core.vote_arguments import VoteArguments
from ..core.voting import VoteSettings
from ..data.prompts import PROMPT_STYLES, check_prompt_style
from .rewards import REWARD_FACTORIES, is_registry_reference

logger = logging.getLogger(__name__)

ENTROPY_SOURCES = ("generation", "forward")
TRAIN_SELECTIONS = ("first", "random")
ADVANTAGE_GROUPS = ("voted", "trained")
COLLAPSE_ACTIONS = ("warn", "stop")


@dataclass
class SASCConfig(GRPOConfig, VoteArguments):
    """Configuration of [`SASCTrainer`]: every `GRPOConfig` field, plus the stability-aware vote.

    Args:
        reward_funcs (`list[str]`, defaults to `["sasc"]`):
            Reward functions by registry name (`sasc`, `majority`) or dotted import path. `majority` is plain TTRL.
        entropy_top_k (`int`, defaults to `20`):
            Number of top logits over which each token's local entropy is taken.
        filter_ratio (`float`, defaults to `0.2`):
            Share of a group's answered rollouts dropped by the stability gate as least stable (top-k entropy std);
            0 turns the gate off.
        weight_temperature (`float`, defaults to `1.0`):
            Temperature `T` of the `exp` / `clipped_exp` weights.
        vote_weighting (`str`, defaults to `"clipped_exp"`):
            The kept rollouts' vote weights: `clipped_exp`, `exp(-clip(z, -c, c) / T)` (the vote study's winner),
            `exp` (the literal, unbounded `exp(-z / T)`), `rank` or `uniform` (the gate, then a plain majority).
        gate_statistic (`str`, defaults to `"std"`):
            Instability statistic the gate ranks by (`std` is the method's).
        weight_statistic (`str`, defaults to `"std"`):
            Instability statistic whose within-group z-score sets the weights.
        weight_clip (`float`, defaults to `1.0`):
            `c` of `clipped_exp`: z is clipped to `[-c, c]`.
        tail_tokens (`int`, defaults to `32`):
            Tokens of the `tail` statistic.
        window_tokens (`int`, defaults to `16`):
            Window of the `bottom_window` statistic.
        entropy_source (`str`, defaults to `"generation"`):
            `"generation"` records the entropies while the model generates (no extra cost); `"forward"` recomputes
            them with one extra no-grad forward pass (needed with `use_transformers_continuous_batching`).
        answer_timeout (`float`, defaults to `5.0`):
            Seconds allowed for one math-verify equivalence check.
        train_generations (`int` or `None`):
            Vote on N, train on M (TTRL votes on 64 and trains on 32): the vote and the advantages use all
            `num_generations` rollouts of a group, the loss only `train_generations` of them.
        train_selection (`str`, defaults to `"first"`):
            Which M rollouts of each group are trained on. `"first"`: the first M in sampling order -- rollouts are
            i.i.d., so this is a uniformly random subset, identical on every process; `"random"`: a fresh random
            subset per group and step (seeded by `seed`).
        advantage_group (`str`, defaults to `"voted"`):
            With `train_generations`, the rollouts over which GRPO's advantages are normalised: `"voted"`, all N
            (every reward is known, so the group baseline uses them all), or `"trained"`, the M kept ones (TTRL
            down-samples before it computes advantages; its recipes use this). Either way the vote uses all N.
        save_merged_model (`bool`, defaults to `False`):
            With a PEFT adapter, also save the merged model to `<output_dir>/merged` (ready for `sasc-ttrl eval`).
        vote_log_path (`str` or `None`):
            JSONL file where the main process appends every group's vote, for auditing pseudo-labels.
        collapse_threshold (`float`, defaults to `0.9`):
            The collapse warning ([`CollapseGuard`]): the share of a step's groups whose vote is unanimous that counts
            as a unanimous step. It warns once after `collapse_patience` such logged steps in a row while answers are
            missing or `collapse_heldout_metric` (if given) fell.
        collapse_patience (`int`, defaults to `3`):
            Consecutive logged steps a collapse condition must hold before the guard fires; 0 turns the guard off.
        collapse_heldout_metric (`str` or `None`):
            A logged held-out score whose fall, with unanimous votes, counts as collapse.
        collapse_label_share (`float` or `None`, defaults to `0.5`):
            The guard also fires when at least this share of the last 16 questions got the same pseudo-label for
            `collapse_patience` logged steps; `None` turns this condition off.
        no_answer_patience (`int`, defaults to `3`):
            The no-answer warning ([`NoAnswerGuard`]): warn once when no rollout gave an answer in the first
            `no_answer_patience` logged steps (or in a shorter run, at its end); 0 turns it off.
        min_label_share (`float`, defaults to `0.5`):
            The vote-confidence filter: a group whose pseudo-label holds less than this share of the vote
            ([`VoteResult.label_share`]: of the kept weight in the stability-aware vote, of the answers in the majority
            vote) gives every rollout the same reward, 0, so it does not train; the share of such groups is logged as
            `<vote>/filtered_fraction`. 0 turns it off. The default is the dev choice of the label-free
            training study (docs/studies/label_free.md, docs/safeguards.md).
        collapse_action (`str`, defaults to `"warn"`):
            What [`CollapseGuard`] does when it fires: `"warn"` (once), or `"stop"`: training ends, and the model
            left in the trainer (and saved) is the last checkpoint from before the collapse began, or the weights
            training started from when there is none (see [`SASCTrainer`]); the logs and the model card say so.
    """

    reward_funcs: list[str] = field(
        default_factory=lambda: ["sasc"],
        metadata={"help": "Reward functions: registry names (sasc, majority) or dotted import paths."},
    )
    entropy_top_k: int = field(default=20, metadata={"help": "Top-k logits per token for the local entropy."})
    entropy_source: str = field(
        default="generation",
        metadata={"help": "'generation' (hook during generation) or 'forward' (extra no-grad forward pass)."},
    )
    train_generations: int | None = field(
        default=None,
        metadata={
            "help": "Vote on N, train on M: vote over all num_generations (N) rollouts of a prompt but compute the "
            "loss on train_generations (M <= N) of them. None trains on all N."
        },
    )
    train_selection: str = field(
        default="first",
        metadata={"help": "Which M rollouts are trained on: 'first' (sampling order) or 'random' (seeded)."},
    )
    advantage_group: str = field(
        default="voted",
        metadata={
            "help": "With train_generations: normalise the advantages over all N voted rollouts of a group ('voted') "
            "or over the M trained ones ('trained', as TTRL)."
        },
    )
    save_merged_model: bool = field(
        default=False,
        metadata={
            "help": "With use_peft: also save the base model merged with the LoRA adapter to <output_dir>/merged."
        },
    )
    vote_log_path: str | None = field(
        default=None,
        metadata={"help": "JSONL file where the main process appends every group's vote (answers, label, rewards)."},
    )
    collapse_threshold: float = field(
        default=0.9, metadata={"help": "Collapse warning: share of groups whose vote is unanimous."}
    )
    collapse_patience: int = field(
        default=3, metadata={"help": "Collapse warning: consecutive unanimous logged steps (0 turns it off)."}
    )
    collapse_heldout_metric: str | None = field(
        default=None, metadata={"help": "Collapse warning: a logged held-out score whose fall counts (optional)."}
    )
    collapse_label_share: float | None = field(
        default=0.5,
        metadata={
            "help": "Collapse warning: also warn when this share of the last 16 questions got one pseudo-label for "
            "collapse_patience logged steps (none turns this condition off)."
        },
    )
    no_answer_patience: int = field(
        default=3, metadata={"help": "Warn when no rollout answers in the first N logged steps (0 turns it off)."}
    )
    min_label_share: float = field(
        default=0.5,
        metadata={
            "help": "Confidence filter: a group whose pseudo-label holds less than this share of the vote (kept "
            "weight; for majority, answers) gives every rollout reward 0 and does not train (0 = off; 0.5 is the "
            "training study's choice)."
        },
    )
    collapse_action: str = field(
        default="warn",
        metadata={
            "help": "What the collapse guard does when it fires: 'warn', or 'stop' (end training and keep the last "
            "checkpoint from before the collapse began)."
        },
    )

    @classmethod
    def default(cls, output_dir: str) -> SASCConfig:
        """Every field at its default, as ``GRPOConfig(output_dir)`` -- except on a machine without a GPU, where
        GRPOConfig's default ``bf16=True`` is refused: there the run trains on the CPU in float32 (``use_cpu``)."""
        from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available

        if is_torch_bf16_gpu_available() or is_torch_xla_available():
            return cls(output_dir=output_dir)
        logger.warning("no GPU for GRPOConfig's default bf16: training on the CPU in float32 (use_cpu=True)")
        return cls(output_dir=output_dir, use_cpu=True, bf16=False)

    @classmethod
    def from_grpo_config(cls, args: GRPOConfig, **overrides) -> SASCConfig:
        """An `SASCConfig` with every field of ``args`` (a `GRPOConfig`) and the vote's fields at their defaults.

        ``generation_batch_size`` is left for `GRPOConfig` to derive again from ``steps_per_generation`` (the two are
        both set after ``args`` was built, and may not both be given), which gives it the same value.
        """
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(GRPOConfig) if f.init}
        values["generation_batch_size"] = None
        values.update(overrides)
        return cls(**values)

    @property
    def vote_settings(self) -> VoteSettings:
        """The vote hyper-parameters as the pure core takes them, with the reward's confidence filter."""
        return replace(super().vote_settings, min_label_share=self.min_label_share)

    def __post_init__(self):
        with warnings.catch_warnings():
            # GRPOConfig's own default (gradient_checkpointing=True) trips transformers' rename warning on every
            # config, whatever the user wrote; the old name still works (it is an alias of activation_checkpointing).
            warnings.filterwarnings("ignore", message="`gradient_checkpointing", category=FutureWarning)
            super().__post_init__()
        if isinstance(self.reward_funcs, str):
            self.reward_funcs = [self.reward_funcs]
        if not self.reward_funcs:
            raise ValueError(f"reward_funcs is empty: name at least one of {sorted(REWARD_FACTORIES)}")
        for name in self.reward_funcs:
            if not is_registry_reference(name):
                raise ValueError(
                    f"reward_funcs: unknown reward {name!r}; expected one of {sorted(REWARD_FACTORIES)} or a dotted "
                    "import path"
                )
        if self.entropy_top_k < 1:
            raise ValueError(f"entropy_top_k must be >= 1, got {self.entropy_top_k}")
        self.vote_settings  # noqa: B018 - VoteSettings validates the vote fields and answer_timeout
        if self.no_answer_patience < 0:
            raise ValueError(f"no_answer_patience must be >= 0, got {self.no_answer_patience}")
        if not 0.0 < self.collapse_threshold <= 1.0 or self.collapse_patience < 0:
            raise ValueError(
                f"collapse_threshold must be in (0, 1] and collapse_patience >= 0, got {self.collapse_threshold}, "
                f"{self.collapse_patience}"
            )
        if self.collapse_label_share is not None and not 0.0 < self.collapse_label_share <= 1.0:
            raise ValueError(f"collapse_label_share must be in (0, 1] or None, got {self.collapse_label_share}")
        if self.collapse_action not in COLLAPSE_ACTIONS:
            raise ValueError(f"collapse_action must be one of {COLLAPSE_ACTIONS}, got {self.collapse_action!r}")
        if self.collapse_action == "stop" and self.collapse_patience == 0:
            raise ValueError("collapse_action 'stop' needs the collapse guard: collapse_patience must be >= 1")
        if self.entropy_source not in ENTROPY_SOURCES:
            raise ValueError(f"entropy_source must be one of {ENTROPY_SOURCES}, got {self.entropy_source!r}")
        if self.train_selection not in TRAIN_SELECTIONS:
            raise ValueError(f"train_selection must be one of {TRAIN_SELECTIONS}, got {self.train_selection!r}")
        if self.advantage_group not in ADVANTAGE_GROUPS:
            raise ValueError(f"advantage_group must be one of {ADVANTAGE_GROUPS}, got {self.advantage_group!r}")
        if self.train_generations is not None:
            n = self.num_generations
            if not 1 <= self.train_generations <= n:
                raise ValueError(
                    f"train_generations must be in [1, num_generations={n}], got {self.train_generations}"
                )
            local = self.per_device_train_batch_size * self.steps_per_generation
            if local % n != 0:
                raise ValueError(
                    "train_generations needs whole groups on every process: per_device_train_batch_size x "
                    f"steps_per_generation ({local}) must be a multiple of num_generations ({n})"
                )
            if (local // n * self.train_generations) % self.steps_per_generation != 0:
                raise ValueError(
                    f"train_generations: the {local // n * self.train_generations} kept rollouts per process must "
                    f"split evenly into steps_per_generation ({self.steps_per_generation}) micro-batches"
                )


@dataclass
class SASCScriptArguments(ScriptArguments):
    """Data arguments of `scripts/train.py` (plus TRL's `dataset_name`, `dataset_config`, `dataset_train_split`).

    Args:
        prompt_column (`str`, defaults to `"prompt"`):
            Column holding the question.
        prompt_style (`str`, defaults to `"math"`):
            How text questions are asked (`data.prompts.PROMPT_STYLES`): `math` (step by step, `\\boxed{}`),
            `word_problem_one_shot` (one worked example; for small instruct models) or `raw` (as they are).
            Prompts already in TRL's conversational format pass through unchanged.
        system_prompt (`str` or `None`):
            A system message put in front of every prompt.
        answer_column (`str` or `None`, defaults to `"answer"`):
            Column holding the hidden answer; used only for logged diagnostics, never for the reward.
        max_train_samples (`int` or `None`):
            Keep only the first N questions.
        builder_min_majority_ratio (`float` or `None`):
            With a builder output (`sasc-ttrl build`) as `dataset_name`: keep only questions whose `majority_ratio`
            is at least this (drops questions without consensus).
        builder_max_majority_ratio (`float` or `None`):
            With a builder output: keep only questions whose `majority_ratio` is at most this (e.g. `0.99` drops
            questions where every candidate agrees).
        use_builder_pseudo_labels (`bool`, defaults to `False`):
            With a builder output: reward agreement with its fixed `pseudo_label` column (the `fixed_label` reward,
            cheap offline TTRL) instead of voting online.
        curriculum_fraction (`float` or `None`):
            Curriculum by agreement (SRT's easiest-first selection): keep this share of the training questions, those
            whose samples from the base model agree most (the builder's `majority_ratio`), ordered from the most
            agreed, and train on them in that order (`shuffle_dataset` is turned off). With a builder output as
            `dataset_name` its rows are used; otherwise `sasc-ttrl train` first samples the base model
            `curriculum_samples` times per question with the builder (self-consistency, at the run's `temperature`,
            `top_p` and `max_completion_length`) into `<output_dir>/curriculum/` (resumable). Text questions only.
        curriculum_samples (`int`, defaults to `16`):
            Samples per question that measure the base model's agreement for the curriculum.
    """

    prompt_column: str = field(default="prompt", metadata={"help": "Column holding the question."})
    prompt_style: str = field(
        default="math", metadata={"help": f"How questions are asked: {', '.join(PROMPT_STYLES)}."}
    )
    system_prompt: str | None = field(default=None, metadata={"help": "A system message in front of every prompt."})
    answer_column: str | None = field(
        default="answer", metadata={"help": "Column holding the hidden answer (diagnostics only); null for none."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N questions."})
    builder_min_majority_ratio: float | None = field(
        default=None, metadata={"help": "Builder output: keep questions with majority_ratio >= this."}
    )
    builder_max_majority_ratio: float | None = field(
        default=None, metadata={"help": "Builder output: keep questions with majority_ratio <= this."}
    )
    use_builder_pseudo_labels: bool = field(
        default=False, metadata={"help": "Builder output: reward agreement with its pseudo_label (fixed_label)."}
    )
    curriculum_fraction: float | None = field(
        default=None,
        metadata={
            "help": "Curriculum by agreement: train only on this share of the questions, those the base model agrees "
            "with itself on most (builder majority_ratio), most agreed first, unshuffled (none = off)."
        },
    )
    curriculum_samples: int = field(
        default=16,
        metadata={"help": "Curriculum: samples of the base model per question that measure its agreement."},
    )

    def __post_init__(self):
        if hasattr(super(), "__post_init__"):
            super().__post_init__()
        check_prompt_style(self.prompt_style)
        low, high = self.builder_min_majority_ratio, self.builder_max_majority_ratio
        for name, value in (("builder_min_majority_ratio", low), ("builder_max_majority_ratio", high)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if low is not None and high is not None and low > high:
            raise ValueError(f"builder_min_majority_ratio ({low}) is above builder_max_majority_ratio ({high})")
        if self.curriculum_fraction is not None and not 0.0 < self.curriculum_fraction <= 1.0:
            raise ValueError(f"curriculum_fraction must be in (0, 1], got {self.curriculum_fraction}")
        if self.curriculum_samples < 2:
            raise ValueError(
                f"curriculum_samples must be >= 2 (a vote needs two samples), got {self.curriculum_samples}"
            )
