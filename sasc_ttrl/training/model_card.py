"""The model card (``README.md``) that [`SASCTrainer`] writes into its output folder when it saves.

TRL's card names the base model only when it is a hub id (otherwise "Model Card for None", a link to
``huggingface.co/None``) and knows nothing of the vote. This one states the base model (hub id or local folder), the
data, what SASC-TTRL (or the TTRL baseline) is, the vote and training settings that determine the run, how to load
the result (a full model or a LoRA adapter), and the BibTeX of TTRL, GRPO and TRL. The hub metadata (``base_model``,
``datasets``) is filled only with hub ids, as the hub requires.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from ..sampling.models import looks_like_path

TTRL_CITATION = textwrap.dedent("""\
    @article{zuo2025ttrl,
        title   = {{TTRL: Test-Time Reinforcement Learning}},
        author  = {Zuo, Yuxin and Zhang, Kaiyan and Sheng, Li and Qu, Shang and Cui, Ganqu and Zhu, Xuekai and
                   Li, Haozhan and Zhang, Yuchen and Long, Xinwei and Hua, Ermo and others},
        journal = {arXiv preprint arXiv:2504.16084},
        year    = {2025}
    }""")
# TRL 1.16's own citation (trl/templates/lm_model_card.md) and GRPO's (GRPOTrainer._paper).
TRL_CITATION = textwrap.dedent("""\
    @software{vonwerra2020trl,
        title   = {{TRL: Transformers Reinforcement Learning}},
        author  = {von Werra, Leandro and Belkada, Younes and Tunstall, Lewis and Beeching, Edward and
                   Thrush, Tristan and Lambert, Nathan and Huang, Shengyi and Rasul, Kashif and Gallouédec, Quentin},
        license = {Apache-2.0},
        url     = {https://github.com/huggingface/trl},
        year    = {2020}
    }""")
GRPO_CITATION = textwrap.dedent("""\
    @article{shao2024deepseekmath,
        title   = {{DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models}},
        author  = {Zhihong Shao and Peiyi Wang and Qihao Zhu and Runxin Xu and Junxiao Song and Mingchuan Zhang and
                   Y. K. Li and Y. Wu and Daya Guo},
        year    = {2024},
        eprint  = {arXiv:2402.03300}
    }""")

VOTE_REWARDS = {
    "sasc_reward": "sasc",
    "majority_reward": "majority",
    "fixed_label_reward": "fixed_label",
    "oracle_reward": "oracle",
    "format_reward": "format",
}


@dataclass
class CardFacts:
    """What the card says about one run (gathered by `SASCTrainer.create_model_card`).

    Args:
        model_name: Name of the trained model (the card's title).
        base_model: The model training started from: hub id or local folder.
        reward_names: Names of the reward functions (TRL's ``reward_func_names``).
        args: The run's [`SASCConfig`].
        dataset_name: Training data: hub id, local file or benchmark name; None when unknown.
        hub_model_id: Where the model is pushed, if it is.
        adapter: Whether the output folder holds a PEFT adapter rather than a full model.
        lora: The adapter's ``r``, ``lora_alpha`` and target modules, when it is one.
        global_step: Optimizer steps trained.
        num_processes: Processes that trained.
        tags: Extra hub tags.
        collapse_stop: When the collapse guard stopped training (``collapse_action: stop``): its message, the step it
            fired at and the step whose weights were kept (see `SASCTrainer`).
    """

    model_name: str
    base_model: str | None
    reward_names: list[str]
    args: Any
    dataset_name: str | None = None
    hub_model_id: str | None = None
    adapter: bool = False
    lora: dict[str, Any] = field(default_factory=dict)
    global_step: int = 0
    num_processes: int = 1
    tags: list[str] = field(default_factory=list)
    collapse_stop: dict[str, Any] | None = None


def is_hub_id(name: str | None) -> bool:
    """Whether ``name`` can be a hub repository id (``org/name`` or ``name``), not a local path or file."""
    if not name or looks_like_path(name) or os.path.exists(name):
        return False
    return name.count("/") <= 1 and not name.endswith((".json", ".jsonl", ".parquet", ".csv"))


def _link(name: str | None, kind: str = "") -> str:
    if not name:
        return "an unnamed data set"
    if is_hub_id(name) and "/" in name:
        return f"[{name}](https://huggingface.co/{kind}{name})"
    return f"`{name}`"


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def run_kind(reward_names: list[str]) -> str:
    """What the run's rewards make it, by the first of this package's rewards present in this order: ``"sasc"``,
    ``"ttrl"`` (plain majority), ``"fixed_label"`` (builder labels), ``"oracle"`` (true answers), ``"format"``;
    ``"grpo"`` when it has none of them (a user's own rewards)."""
    kinds = {VOTE_REWARDS[n] for n in reward_names if n in VOTE_REWARDS}
    for kind, name in (("sasc", "sasc"), ("majority", "ttrl"), ("fixed_label", "fixed_label"), ("oracle", "oracle")):
        if kind in kinds:
            return name
    return "format" if "format" in kinds else "grpo"


def _method(facts: CardFacts) -> str:
    kind = run_kind(facts.reward_names)
    sasc = (
        "**SASC-TTRL** (stability-aware self-consistency test-time reinforcement learning) trains a model on "
        "unlabeled questions: for each question it samples a group of rollouts, the rollouts vote on the answer, and "
        "GRPO rewards each rollout that agrees with the vote. The vote is stability-aware: each rollout's per-token "
        "top-k entropy sequence is reduced to its standard deviation, the least stable rollouts of the group are "
        "dropped, and the rest vote with weights that favour stable rollouts. Answers are never read from the data "
        "(a hidden answer column, if any, only feeds logged diagnostics)."
    )
    if kind == "ttrl":
        return (
            "This run is the **TTRL** baseline (Zuo et al., 2025): label-free test-time RL where each question's "
            "rollouts take a plain majority vote on the answer (no stability gate, equal weights) and GRPO rewards "
            "each rollout that agrees with it. It is the baseline of SASC-TTRL, whose vote is stability-aware.\n\n"
            + sasc
        )
    if kind == "fixed_label":
        return (
            sasc + "\n\nThis run rewards agreement with fixed pseudo-labels chosen offline by `sasc-ttrl build` "
            "(`fixed_label`): nothing was voted online."
        )
    if kind == "oracle":
        return (
            "This run is a **control, not label-free**: GRPO rewarded each rollout whose answer agrees with the true "
            "answer of its question (`oracle`): the ceiling that label-free test-time RL (TTRL, SASC-TTRL) is "
            "compared with."
        )
    if kind == "format":
        return (
            "This run is a **control**: GRPO rewarded each rollout that puts any answer in `\\boxed{}` (`format`), "
            "which teaches the answer format and nothing else."
        )
    if kind == "grpo":
        return "This run is GRPO with the reward functions below (none of them is one of `sasc-ttrl`'s votes)."
    return sasc + " Plain majority voting (TTRL, Zuo et al., 2025) is the baseline."


def _collapse_section(facts: CardFacts) -> str:
    stop = facts.collapse_stop
    if not stop:
        return ""
    return (
        f"## Stopped on collapse\n\nThe collapse guard (`collapse_action: stop`) ended training at step "
        f"{stop['stopped_at']}: {stop['message']}\n\nThe saved weights are those of {stop['restored']}, the last "
        f"saved before the collapse began (its first logged step: {stop['streak_start']}).\n\n"
    )


def _table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in rows if v is not None]
    return "\n".join(lines)


def _vote_rows(facts: CardFacts) -> list[tuple[str, Any]]:
    a = facts.args
    rows: list[tuple[str, Any]] = [("reward functions", ", ".join(f"`{n}`" for n in facts.reward_names))]
    if facts.args.reward_weights is not None:
        rows.append(("reward_weights", a.reward_weights))
    if "sasc_reward" in facts.reward_names:
        rows += [
            ("filter_ratio", f"{a.filter_ratio} (share of each group's answered rollouts dropped as least stable)"),
            ("gate_statistic", a.gate_statistic),
            ("vote_weighting", a.vote_weighting),
            ("weight_statistic", a.weight_statistic),
            ("weight_temperature", a.weight_temperature),
            ("weight_clip", a.weight_clip if a.vote_weighting == "clipped_exp" else None),
            ("entropy_top_k", a.entropy_top_k),
            ("entropy_source", a.entropy_source),
        ]
    if any(VOTE_REWARDS.get(n) in ("sasc", "majority") for n in facts.reward_names) and a.min_label_share > 0:
        rows.append(
            ("min_label_share", f"{a.min_label_share} (groups whose label holds less of the vote do not train)")
        )
    if a.collapse_action != "warn":
        rows.append(("collapse_action", a.collapse_action))
    rows.append(("answer_timeout", f"{a.answer_timeout} s per math-verify check"))
    return rows


def _training_rows(facts: CardFacts) -> list[tuple[str, Any]]:
    a = facts.args
    length = f"{a.max_steps} steps" if a.max_steps and a.max_steps > 0 else f"{a.num_train_epochs} epochs"
    rows: list[tuple[str, Any]] = [
        ("steps trained", f"{facts.global_step} (asked: {length})"),
        ("num_generations", f"{a.num_generations} rollouts per question (the vote's group)"),
        ("train_generations", a.train_generations),
        ("advantage_group", a.advantage_group if a.train_generations else None),
        (
            "batch",
            f"{a.per_device_train_batch_size} rollouts per device x {a.gradient_accumulation_steps} accumulation "
            f"steps x {facts.num_processes} processes",
        ),
        ("learning_rate", f"{a.learning_rate} ({getattr(a.lr_scheduler_type, 'value', a.lr_scheduler_type)})"),
        ("max_completion_length", a.max_completion_length),
        ("temperature / top_p / top_k", f"{a.temperature} / {a.top_p} / {a.top_k}"),
        ("beta (KL)", a.beta),
        ("loss_type", a.loss_type),
        ("scale_rewards", a.scale_rewards),
        ("seed", a.seed),
    ]
    if facts.adapter:
        targets = facts.lora.get("target_modules")
        targets = ", ".join(sorted(targets)) if isinstance(targets, (set, list, tuple)) else targets
        rows.append(("LoRA", f"r={facts.lora.get('r')}, alpha={facts.lora.get('lora_alpha')}, modules: {targets}"))
    return rows


def _usage(facts: CardFacts) -> str:
    where = facts.hub_model_id or facts.args.output_dir
    if facts.adapter:
        load = textwrap.dedent(f"""\
            ```python
            from peft import AutoPeftModelForCausalLM
            from transformers import AutoTokenizer

            model = AutoPeftModelForCausalLM.from_pretrained("{where}").merge_and_unload()
            tokenizer = AutoTokenizer.from_pretrained("{where}")
            ```

            This folder holds a LoRA adapter of `{facts.base_model}`; `sasc-ttrl eval` merges it before sampling
            (`<output_dir>/merged` holds a merged copy when the run set `save_merged_model: true`).""")
    else:
        load = textwrap.dedent(f"""\
            ```python
            from transformers import pipeline

            generator = pipeline("text-generation", model="{where}")
            question = "What is 12 + 30? Please reason step by step, and put your final answer within \\\\boxed{{}}."
            print(generator([{{"role": "user", "content": question}}], max_new_tokens=512)[0]["generated_text"])
            ```""")
    evaluate = (
        f"sasc-ttrl eval --model_name_or_path {where} --benchmarks math500 --n 16 --temperature 0.6 --top_p 0.95"
    )
    return f"{load}\n\nEvaluate (pass@k, maj@k, sasc@k):\n\n```bash\n{evaluate}\n```"


def build_model_card(facts: CardFacts) -> ModelCard:
    """The model card of one run (see the module docstring)."""
    hub_base = facts.base_model if is_hub_id(facts.base_model) else None
    hub_data = facts.dataset_name if is_hub_id(facts.dataset_name) and "/" in (facts.dataset_name or "") else None
    card_data = ModelCardData(
        base_model=hub_base,
        datasets=[hub_data] if hub_data else None,
        library_name="peft" if facts.adapter else "transformers",
        model_name=facts.model_name,
        tags=sorted({"sasc-ttrl", "trl", "grpo", "test-time-rl", "generated_from_trainer", *facts.tags}),
    )
    what = "a LoRA adapter of" if facts.adapter else "a fine-tuned version of"
    kind = run_kind(facts.reward_names)
    vote = {
        "ttrl": "the TTRL baseline (plain majority vote)",
        "fixed_label": "SASC-TTRL's offline pseudo-labels",
        "sasc": "SASC-TTRL",
        "oracle": "GRPO on the true answers (a control)",
        "format": "GRPO on a format-only reward (a control)",
        "grpo": "GRPO",
    }[kind]
    answers = "with their answers" if kind == "oracle" else "without their answers"
    versions = "\n".join(
        f"- {label}: {_package_version(pkg)}"
        for label, pkg in [
            ("sasc-ttrl", "sasc-ttrl"),
            ("TRL", "trl"),
            ("Transformers", "transformers"),
            ("PyTorch", "torch"),
            ("Datasets", "datasets"),
            ("PEFT", "peft" if facts.adapter else ""),
        ]
        if pkg
    )
    body = f"""
# {facts.model_name}

This model is {what} {_link(facts.base_model)}, trained with {vote} on the questions of
{_link(facts.dataset_name, "datasets/")}, {answers}, with the `sasc-ttrl` package on
[TRL](https://github.com/huggingface/trl)'s `GRPOTrainer`.

{_collapse_section(facts)}## Method

{_method(facts)}

## Vote

{_table(_vote_rows(facts))}

## Training

{_table(_training_rows(facts))}

## Use

{_usage(facts)}

## Framework versions

{versions}

## Citations

TTRL (test-time reinforcement learning with a majority-vote reward):

```bibtex
{TTRL_CITATION}
```

GRPO:

```bibtex
{GRPO_CITATION}
```

TRL:

```bibtex
{TRL_CITATION}
```
"""
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}")
