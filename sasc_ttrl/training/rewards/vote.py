r"""The two label-free rewards, ``sasc`` (the stability-aware vote) and ``majority`` (TTRL): agree with the group's
pseudo-label.

TRL calls reward functions on each process's local slice of completions, and a group of ``num_generations``
rollouts can be split across processes, so a vote reward first gathers the whole batch from all processes, votes per
group, and returns only its local slice. All ranks call reward functions in the same order, so the collective inside
is safe.

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

With ``VoteSettings.min_label_share`` set, a group whose pseudo-label holds less than that share of the vote gives
reward 0 to every rollout (it does not train), and ``<vote>/filtered_fraction`` is logged.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

from ...core.answers import extract_answer, group_equivalent, is_equivalent
from ...core.label_diagnostics import RecentLabels, group_diagnostics
from ...core.stability import instability
from ...core.voting import VoteResult, VoteSettings, majority_vote, stability_vote
from .batch import completion_text, gather_records, groups_of
from .registry import ROLLOUT_FIELDS, RewardFunc, register_reward
from .vote_log import VoteLogCounter, append_vote_log


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
    vote_log_path: str | None = None,
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
        vote_log_path: JSONL file where the main process appends one line per group (see [`append_vote_log`]).
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
    all_records, offset, is_main = gather_records(records)
    group_ids = [r["group"] for r in all_records] if rollout_group is not None else None
    groups = groups_of(group_ids, [r["prompt"] for r in all_records])

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

    if vote_log_path:
        step, ids = (log_counter or VoteLogCounter()).ids(trainer_state, len(groups))
        if is_main:
            append_vote_log(
                vote_log_path, vote, groups, all_records, votes, step=step, group_ids=ids, filtered=filtered
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


def _vote_reward(vote: str, factory: Callable, settings: VoteSettings | None, vote_log_path: str | None):
    """The TRL reward function ``<vote>_reward`` of one vote (documented by the first line of its factory's
    docstring), with its own vote-log counter and recent-labels window."""
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
            vote_log_path=vote_log_path,
        )

    reward.__name__ = reward.__qualname__ = f"{vote}_reward"  # TRL logs it as rewards/<name>/mean
    reward.__doc__ = (factory.__doc__ or "").strip().splitlines()[0]
    reward.rollout_fields = ROLLOUT_FIELDS
    return reward


@register_reward("sasc", logs_votes=True)
def make_sasc_reward(settings: VoteSettings | None = None, vote_log_path: str | None = None) -> RewardFunc:
    r"""Reward 1.0 for agreeing with the stability-aware pseudo-label of the rollout's group.

    The group's least stable rollouts (the highest std of their top-k token entropies) are dropped, the rest vote
    with weights favouring the stable ones (see [`stability_vote`]), and every rollout is rewarded for agreeing
    with the winner (math equivalence).

    Example:

    ```python
    >>> from sasc_ttrl.training.rewards import make_sasc_reward
    >>> reward = make_sasc_reward()
    >>> completions = [r"\boxed{7}", r"\boxed{7}", r"\boxed{9}", r"\boxed{9}", r"\boxed{9}"]
    >>> steady, swinging = [0.3, 0.3, 0.3], [0.1, 2.0, 0.1]  # the 9s' entropies swing: unstable
    >>> reward(prompts=["q"] * 5, completions=completions, token_entropies=[steady, steady] + [swinging] * 3)
    [1.0, 1.0, 0.0, 0.0, 0.0]

    ```
    """
    return _vote_reward("sasc", make_sasc_reward, settings, vote_log_path)


@register_reward("majority", logs_votes=True)
def make_majority_reward(settings: VoteSettings | None = None, vote_log_path: str | None = None) -> RewardFunc:
    r"""Reward 1.0 for agreeing with the plain majority answer of the rollout's group (TTRL).

    Example:

    ```python
    >>> from sasc_ttrl.training.rewards import make_majority_reward
    >>> reward = make_majority_reward()
    >>> reward(prompts=["q"] * 3, completions=[r"\boxed{4}", r"\boxed{\frac{8}{2}}", r"\boxed{5}"])
    [1.0, 1.0, 0.0]

    ```
    """
    return _vote_reward("majority", make_majority_reward, settings, vote_log_path)
