"""Label-free reward functions for GRPO, in a registry.

A reward here is "agree with the group's pseudo-label". TRL calls reward functions on each process's local
slice of completions, and a group of ``num_generations`` rollouts can be split across processes, so every reward
function here first gathers the whole batch from all processes, votes per group, and returns only its local
slice. All ranks call reward functions in the same order, so the collective inside is safe.

Keyword arguments read from TRL (``f(prompts, completions, completion_ids, **kwargs)``):

* ``token_entropies``: per-completion top-k entropy sequences, added by [`SASCTrainer`]. Required by ``sasc``.
  A NaN or infinite entropy (broken logits) marks its rollout as maximally unstable: the rollout does not vote
  (as if the gate had dropped it), is rewarded like any other for agreeing with the label, and its finite entropies
  alone feed the logged diagnostics. Rewards are always finite.
* ``rollout_group``: per-completion group index, added by [`SASCTrainer`]. Without it, consecutive completions
  of the same prompt form a group.
* ``answer``: the hidden answer, used ONLY for logged diagnostics.
* ``log_metric`` / ``log_extra``: TRL's logging hooks.

Besides the batch's diagnostics, a vote reward logs ``<vote>/recent_top_label_share``: the share of the last 16
distinct questions (across batches, once 8 are known) whose pseudo-label is the most common one, which
[`CollapseGuard`] watches for a run that gives every question the same answer.

Registry: ``sasc`` (stability-aware vote), ``majority`` (TTRL), ``fixed_label`` (agree with a builder output's
``pseudo_label`` column), and two controls that are not label-free: ``oracle`` (agree with the true ``answer``: the
ceiling) and ``format`` (box any answer). Other rewards can be named by dotted path.

A vote reward with ``VoteSettings.min_label_share`` set gives reward 0 to every rollout of a group whose
pseudo-label holds less than that share of the vote (it does not train) and logs ``<vote>/filtered_fraction``.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from ..core.answers import boxed_answer, extract_answer, group_equivalent, is_equivalent
from ..core.label_diagnostics import RecentLabels, group_diagnostics
from ..core.stability import instability
from ..core.voting import VoteResult, VoteSettings, majority_vote, stability_vote

logger = logging.getLogger(__name__)

# What SASCTrainer can hand to the rewards besides TRL's own keyword arguments (see `rollout_fields_requested`).
ROLLOUT_FIELDS = ("token_entropies", "rollout_group")


def completion_text(completion: Any) -> str:
    """Text of a completion, plain (``str``) or conversational (list of messages, the last one answering)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # typed content blocks
            return "".join(block.get("text", "") for block in content if isinstance(block, dict))
        return str(content)
    raise TypeError(f"cannot read the text of a completion of type {type(completion).__name__}")


def _groups(group_ids: Sequence[Any] | None, prompts: Sequence[Any]) -> list[list[int]]:
    """Indices of each group: by ``group_ids`` when given, else runs of consecutive identical prompts."""
    keys = group_ids if group_ids is not None else [repr(p) for p in prompts]
    groups: list[list[int]] = []
    positions: dict[Any, int] = {}
    previous = object()
    for i, key in enumerate(keys):
        if group_ids is not None:
            if key not in positions:
                positions[key] = len(groups)
                groups.append([])
            groups[positions[key]].append(i)
        else:
            if key != previous:
                groups.append([])
            groups[-1].append(i)
            previous = key
    return groups


def _gather_records(records: list[dict]) -> tuple[list[dict], int, bool]:
    """Gather the records of every process in rank order.

    Returns:
        The records of all processes, the offset of this process's slice, and whether this is the main process.
    """
    from accelerate import PartialState

    state = PartialState()
    for record in records:
        record["rank"] = state.process_index
    if state.num_processes == 1:
        return records, 0, True
    from accelerate.utils import gather_object

    per_rank = gather_object([(state.process_index, records)])
    per_rank = sorted(per_rank, key=lambda item: item[0])
    offset = sum(len(r) for rank, r in per_rank if rank < state.process_index)
    return [rec for _, r in per_rank for rec in r], offset, state.is_main_process


class VoteLogCounter:
    """Numbers the groups a reward function votes on, so that each vote-log line has an id unique across the run.

    A group's id is ``"<step>-<i>"``: ``step`` is the training step its batch is generated for (``global_step + 1``
    of the ``trainer_state`` TRL hands to rewards, the step under which TRL logs the vote's metrics) and ``i`` counts
    the groups voted on at that step (several generation batches can fall in one step when
    ``gradient_accumulation_steps`` exceeds ``steps_per_generation``). Without a trainer state (a reward called
    outside a trainer), the id is ``i`` counted over every call.
    """

    def __init__(self):
        self.step: int | None = None
        self.count = 0

    def ids(self, trainer_state: Any, n_groups: int) -> tuple[int | None, list[str]]:
        """The step and the ids of the next ``n_groups`` groups."""
        step = None if trainer_state is None else int(trainer_state.global_step) + 1
        if step != self.step:
            self.step, self.count = step, 0
        first, self.count = self.count, self.count + n_groups
        prefix = "" if step is None else f"{step}-"
        return step, [f"{prefix}{first + j}" for j in range(n_groups)]


def _append_vote_log(
    path: str,
    vote: str,
    groups: list[list[int]],
    records: list[dict],
    votes: list[VoteResult],
    step: int | None = None,
    group_ids: Sequence[str] | None = None,
    filtered: Sequence[bool] | None = None,
):
    """Append one JSON line per group to ``path`` (flushed line by line).

    Each line holds ``step`` and ``group`` (see [`VoteLogCounter`]), ``batch_group`` (the group's index in its batch:
    its ``rollout_group``, or its position when there is none), the rollouts' answers, instabilities and ranks, and
    the vote's outcome: kept, weights, ``pseudo_label``, ``label_share``, ``filtered`` (below ``min_label_share``)
    and the rewards given.
    """
    import json
    import os

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        for position, (idx, result) in enumerate(zip(groups, votes)):
            batch_group = records[idx[0]]["group"]
            line = {
                "vote": vote,
                "step": step,
                "group": group_ids[position] if group_ids is not None else str(position),
                "batch_group": position if batch_group is None else batch_group,
                "answers": [records[i]["answer"] for i in idx],
                "instabilities": [records[i]["instability"] for i in idx],
                "ranks": [records[i]["rank"] for i in idx],
                "kept": result.kept,
                "weights": result.weights,
                "pseudo_label": result.pseudo_label,
                "label_share": result.label_share,
                "filtered": bool(filtered[position]) if filtered is not None else False,
                "rewards": [0.0] * len(idx) if filtered is not None and filtered[position] else result.rewards,
            }
            handle.write(json.dumps(line) + "\n")


def vote_and_reward(
    vote: str,
    prompts: Sequence[Any],
    completions: Sequence[Any],
    settings: VoteSettings,
    token_entropies: Sequence[Sequence[float]] | None = None,
    rollout_group: Sequence[Any] | None = None,
    answer: Sequence[Any] | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    log_extra: Callable[[str, list], None] | None = None,
    trainer_state: Any = None,
    log_counter: VoteLogCounter | None = None,
    recent_labels: RecentLabels | None = None,
) -> list[float]:
    """Gather the batch across processes, vote per group, log diagnostics, return the local rewards.

    Args:
        vote: ``"sasc"`` or ``"majority"``.
        prompts, completions: TRL's local prompts and completions.
        settings: Vote hyper-parameters.
        token_entropies: Local per-completion top-k entropy sequences (required for ``"sasc"``).
        rollout_group: Local per-completion group indices (global across processes).
        answer: Local hidden answers, for diagnostics only.
        log_metric, log_extra: TRL's logging hooks.
        trainer_state: TRL's ``TrainerState``; its step goes into the vote log.
        log_counter: Numbers the vote log's groups across calls (one per reward function).
        recent_labels: The last questions' pseudo-labels across calls (one per reward function); with
            ``log_metric``, their ``top_label_share`` is logged as ``<vote>/recent_top_label_share``.
    """
    if vote == "sasc" and token_entropies is None:
        raise ValueError(
            "the 'sasc' reward needs per-token entropies in the `token_entropies` column; train with SASCTrainer, "
            "which captures them for rewards that ask for them (a wrapper around this reward must keep its "
            "`rollout_fields` attribute: functools.wraps does), or pass them explicitly"
        )
    n_local = len(completions)
    for name, column in (("token_entropies", token_entropies), ("rollout_group", rollout_group), ("answer", answer)):
        if column is not None and len(column) != n_local:
            raise ValueError(f"column '{name}' has {len(column)} values for {n_local} completions")
    records = []
    for i in range(n_local):
        text = completion_text(completions[i])
        entropies = None if token_entropies is None else [float(v) for v in token_entropies[i]]
        finite = None if entropies is None else [v for v in entropies if math.isfinite(v)]
        records.append(
            {
                "answer": extract_answer(text),
                "instability": instability(finite) if finite is not None else None,
                "entropies": finite if vote == "sasc" else None,
                "broken": finite is not None and len(finite) < len(entropies),
                "group": rollout_group[i] if rollout_group is not None else None,
                "prompt": None if rollout_group is not None else repr(prompts[i]),
                "question": hashlib.blake2b(repr(prompts[i]).encode(), digest_size=8).hexdigest(),
                "gold": None if answer is None or answer[i] is None else str(answer[i]),
            }
        )
    all_records, offset, is_main = _gather_records(records)
    group_ids = [r["group"] for r in all_records] if rollout_group is not None else None
    groups = _groups(group_ids, [r["prompt"] for r in all_records])

    rewards = [0.0] * len(all_records)
    labels: list[str | None] = [None] * len(all_records)
    votes: list[VoteResult] = []
    reference: list[VoteResult] = []
    group_answers, group_instabilities, golds = [], [], []
    filtered: list[bool] = []  # groups below settings.min_label_share: every rollout gets reward 0
    for idx in groups:
        answers = [all_records[i]["answer"] for i in idx]
        classes = group_equivalent(answers, timeout=settings.answer_timeout)
        majority = majority_vote(answers, classes=classes)
        if vote == "sasc":
            broken = [all_records[i]["broken"] for i in idx]
            voters = [None if b else c for b, c in zip(broken, classes)]
            voter_answers = [None if b else a for b, a in zip(broken, answers)]
            result = stability_vote(
                voter_answers, [all_records[i]["entropies"] for i in idx], settings, classes=voters
            )
            if any(broken):  # the non-voters are back in the group and rewarded for agreeing, like gated rollouts
                result.classes = list(classes)
                result.rewards = [float(c is not None and c == result.label_class) for c in classes]
            group_instabilities.append([all_records[i]["instability"] for i in idx])
        else:
            result = majority
            if token_entropies is not None:
                group_instabilities.append([all_records[i]["instability"] for i in idx])
        unsure = settings.min_label_share > 0 and result.label_share < settings.min_label_share
        filtered.append(unsure)
        for j, i in enumerate(idx):
            rewards[i] = 0.0 if unsure else result.rewards[j]
            labels[i] = result.pseudo_label
        votes.append(result)
        reference.append(majority)
        group_answers.append(answers)
        golds.append(all_records[idx[0]]["gold"])

    if settings.vote_log_path:
        step, ids = (log_counter or VoteLogCounter()).ids(trainer_state, len(groups))
        if is_main:
            _append_vote_log(
                settings.vote_log_path, vote, groups, all_records, votes, step=step, group_ids=ids, filtered=filtered
            )
    if log_metric is not None:
        metrics = group_diagnostics(
            votes,
            group_answers,
            instabilities=group_instabilities or None,
            golds=golds if answer is not None else None,
            reference_votes=reference if vote == "sasc" else None,
            timeout=settings.answer_timeout,
        )
        metrics.update(filter_diagnostics(votes, filtered, golds if answer is not None else None, settings))
        for name, value in metrics.items():
            log_metric(f"{vote}/{name}", value)
    if recent_labels is not None:
        recent_labels.update((all_records[idx[0]]["question"], v.pseudo_label) for idx, v in zip(groups, votes))
        share = recent_labels.top_label_share()
        if log_metric is not None and share is not None:
            log_metric(f"{vote}/recent_top_label_share", share)
    local = slice(offset, offset + n_local)
    if log_extra is not None:
        log_extra(f"{vote}_pseudo_label", [str(x) for x in labels[local]])
        log_extra("extracted_answer", [str(r["answer"]) for r in records])
    return rewards[local]


def filter_diagnostics(
    votes: Sequence[VoteResult], filtered: Sequence[bool], golds: Sequence[str | None] | None, settings: VoteSettings
) -> dict[str, float]:
    """What the confidence filter did to a batch: ``label_share`` (mean over groups of the pseudo-label's share of
    the vote), ``filtered_fraction`` (groups that did not train) and, with hidden answers and the filter on,
    ``trained_label_accuracy`` (label accuracy over the groups that did train; absent when none did)."""
    metrics = {
        "label_share": float(sum(v.label_share for v in votes) / max(len(votes), 1)),
        "filtered_fraction": float(sum(filtered) / max(len(filtered), 1)),
    }
    if golds is not None and settings.min_label_share > 0:
        graded = [
            is_equivalent(str(gold), v.pseudo_label, timeout=settings.answer_timeout)
            for v, f, gold in zip(votes, filtered, golds)
            if not f and gold is not None
        ]
        if graded:
            metrics["trained_label_accuracy"] = float(sum(graded) / len(graded))
    return metrics


def _make_vote_reward(vote: str, name: str, doc: str):
    def factory(settings: VoteSettings | None = None) -> Callable[..., list[float]]:
        settings = settings or VoteSettings()
        counter = VoteLogCounter()
        recent = RecentLabels()

        def reward(prompts, completions, token_entropies=None, rollout_group=None, answer=None, **kwargs):
            return vote_and_reward(
                vote,
                prompts,
                completions,
                settings,
                token_entropies=token_entropies,
                rollout_group=rollout_group,
                answer=answer,
                log_metric=kwargs.get("log_metric"),
                log_extra=kwargs.get("log_extra"),
                trainer_state=kwargs.get("trainer_state"),
                log_counter=counter,
                recent_labels=recent,
            )

        reward.__name__ = reward.__qualname__ = name  # TRL logs it as rewards/<name>/mean
        reward.__doc__ = doc
        reward.rollout_fields = ROLLOUT_FIELDS
        return reward

    factory.__doc__ = doc
    return factory


make_sasc_reward = _make_vote_reward(
    "sasc", "sasc_reward", "Reward 1.0 for agreeing with the stability-aware pseudo-label of the rollout's group."
)
make_majority_reward = _make_vote_reward(
    "majority",
    "majority_reward",
    "Reward 1.0 for agreeing with the plain majority answer of the rollout's group (TTRL).",
)


REWARD_FACTORIES: dict[str, Callable[[VoteSettings], Callable[..., list[float]]]] = {}


def rollout_fields_requested(reward_funcs: Sequence[Any]) -> set[str]:
    """The per-rollout fields of ``ROLLOUT_FIELDS`` that [`SASCTrainer`] must add for these reward functions.

    A reward asks for a field by a ``rollout_fields`` attribute (this package's vote rewards ask for both) or by
    naming it as a parameter (``def my_reward(completions, token_entropies, **kwargs)``); a ``**kwargs`` parameter
    alone asks for nothing, and reward models ask for nothing. With no field asked for, the trainer captures no
    entropies and behaves as TRL's ``GRPOTrainer``.
    """
    import inspect

    wanted: set[str] = set()
    for func in reward_funcs:
        if callable(func) and not isinstance(func, str):
            func = inspect.unwrap(func, stop=lambda f: hasattr(f, "rollout_fields"))
        declared = getattr(func, "rollout_fields", None)
        if declared is not None:
            wanted.update(declared)
            continue
        if not callable(func) or isinstance(func, str):
            continue
        try:
            parameters = inspect.signature(func).parameters
        except (TypeError, ValueError):  # builtins and some C callables have no signature
            continue
        wanted.update(name for name in ROLLOUT_FIELDS if name in parameters)
    return wanted


def register_reward(name: str, factory: Callable[[VoteSettings], Callable[..., list[float]]]) -> None:
    """Register a reward factory under ``name``; a duplicate name is refused."""
    if name in REWARD_FACTORIES:
        raise ValueError(f"a reward named {name!r} is already registered")
    REWARD_FACTORIES[name] = factory


register_reward("sasc", make_sasc_reward)
register_reward("majority", make_majority_reward)


def make_fixed_label_reward(settings: VoteSettings | None = None) -> Callable[..., list[float]]:
    """Reward 1.0 for agreeing with the row's fixed ``pseudo_label`` column (cheap offline TTRL).

    The labels come from a builder output (``sasc-ttrl build``, loaded with ``--use_builder_pseudo_labels``), chosen
    offline by a selection method; nothing is voted online. The hidden ``answer`` column, when present, only feeds
    the logged ``fixed_label/label_accuracy``.
    """
    settings = settings or VoteSettings()

    def fixed_label_reward(prompts, completions, pseudo_label=None, answer=None, **kwargs):
        if pseudo_label is None:
            raise ValueError(
                "the 'fixed_label' reward needs a `pseudo_label` column: train on a builder output "
                "(sasc-ttrl build) with --use_builder_pseudo_labels"
            )
        if len(pseudo_label) != len(completions):
            n_labels, n_completions = len(pseudo_label), len(completions)
            raise ValueError(f"column 'pseudo_label' has {n_labels} values for {n_completions} completions")
        rewards = []
        for completion, label in zip(completions, pseudo_label):
            predicted = extract_answer(completion_text(completion))
            agree = label is not None and is_equivalent(str(label), predicted, timeout=settings.answer_timeout)
            rewards.append(1.0 if agree else 0.0)
        log_metric = kwargs.get("log_metric")
        if log_metric is not None and answer is not None:
            # A missing label counts as a wrong one, as in the online votes' diagnostics.
            graded = [(lab, str(gold)) for lab, gold in zip(pseudo_label, answer) if gold is not None]
            if graded:
                hits = sum(
                    lab is not None and is_equivalent(gold, str(lab), timeout=settings.answer_timeout)
                    for lab, gold in graded
                )
                log_metric("fixed_label/label_accuracy", hits / len(graded))
        return rewards

    return fixed_label_reward


register_reward("fixed_label", make_fixed_label_reward)


def make_oracle_reward(settings: VoteSettings | None = None) -> Callable[..., list[float]]:
    """Reward 1.0 for a completion whose answer is equivalent to the row's true ``answer`` (GRPO with labels).

    Not label-free: this is the ceiling that test-time RL papers report beside their label-free runs, the same
    training with the true answers in place of the vote's pseudo-labels. Rows without an answer give 0.
    """
    settings = settings or VoteSettings()

    def oracle_reward(prompts, completions, answer=None, **kwargs):
        if answer is None:
            raise ValueError("the 'oracle' reward needs the true answers in an `answer` column (answer_column)")
        if len(answer) != len(completions):
            raise ValueError(f"column 'answer' has {len(answer)} values for {len(completions)} completions")
        return [
            float(
                gold is not None
                and is_equivalent(str(gold), extract_answer(completion_text(c)), timeout=settings.answer_timeout)
            )  # fmt: skip
            for c, gold in zip(completions, answer)
        ]

    return oracle_reward


def make_format_reward(settings: VoteSettings | None = None) -> Callable[..., list[float]]:
    """Reward 1.0 for a completion that boxes an answer, any answer (``boxed_answer``), else 0.0.

    A control: it teaches the answer format and nothing else, so it measures how much of a label-free run's gain is
    format.
    """

    def format_reward(prompts, completions, **kwargs):
        return [float(boxed_answer(completion_text(c)) is not None) for c in completions]

    return format_reward


register_reward("oracle", make_oracle_reward)
register_reward("format", make_format_reward)


def is_registry_reference(name: str) -> bool:
    """Whether a reward given as a string is ours to resolve: a registered name or a dotted import path.

    Anything else (``org/model``, a local folder) is left to TRL, which loads strings as reward models. A dotted path
    here is a Python path: dot-separated identifiers, no ``/``, and not an existing local folder.
    """
    import os

    if name in REWARD_FACTORIES:
        return True
    parts = name.split(".")
    return len(parts) > 1 and all(p.isidentifier() for p in parts) and not os.path.exists(name)


def resolve_reward_funcs(reward_funcs: Any, settings: VoteSettings | None = None) -> list[Any]:
    """Turn the registry names and dotted paths among ``reward_funcs`` into reward functions; keep the rest.

    ``SASCTrainer(reward_funcs=["sasc", my_fn])`` gives TRL ``[<sasc reward with settings>, my_fn]``; reward-model
    ids and model objects pass through unchanged for TRL to load. A single value counts as a list of one.
    """
    funcs = reward_funcs if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
    return [
        get_reward_funcs([f], settings)[0] if isinstance(f, str) and is_registry_reference(f) else f for f in funcs
    ]


def get_reward_funcs(names: Sequence[str], settings: VoteSettings | None = None) -> list[Callable[..., list[float]]]:
    """Resolve reward names: a registered name, or a dotted import path to a TRL reward function.

    Raises:
        ValueError: naming the unknown reward and listing the registered names.
    """
    settings = settings or VoteSettings()
    funcs = []
    for name in names:
        if name in REWARD_FACTORIES:
            funcs.append(REWARD_FACTORIES[name](settings))
        elif "." in name:
            module_path, attr = name.rsplit(".", 1)
            try:
                funcs.append(getattr(importlib.import_module(module_path), attr))
            except (ImportError, AttributeError) as err:
                raise ValueError(f"could not import reward function {name!r}: {err}") from err
        else:
            raise ValueError(
                f"unknown reward {name!r}: expected one of {sorted(REWARD_FACTORIES)} or a dotted import path "
                "(e.g. my_pkg.rewards.my_reward)"
            )
    return funcs
