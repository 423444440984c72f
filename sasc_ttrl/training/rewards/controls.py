r"""The rewards that are not label-free votes: ``fixed_label`` (a builder's offline pseudo-labels) and two controls,
``oracle`` (the true answers: the ceiling) and ``format`` (box any answer)."""

from __future__ import annotations

from ...core.answers import boxed_answer, extract_answer, is_equivalent
from ...core.voting import VoteSettings
from .batch import completion_text
from .registry import RewardFunc, register_reward


@register_reward("fixed_label")
def make_fixed_label_reward(settings: VoteSettings | None = None) -> RewardFunc:
    r"""Reward 1.0 for agreeing with the row's fixed ``pseudo_label`` column (cheap offline TTRL).

    The labels come from a builder output (``sasc-ttrl build``, loaded with ``--use_builder_pseudo_labels``), chosen
    offline by a selection method; nothing is voted online. The hidden ``answer`` column, when present, only feeds
    the logged ``fixed_label/label_accuracy``.

    Example:

    ```python
    >>> from sasc_ttrl.training.rewards import make_fixed_label_reward
    >>> reward = make_fixed_label_reward()
    >>> completions = [r"\boxed{\frac{1}{2}}", r"\boxed{0.5}", r"\boxed{2}"]
    >>> reward(prompts=["q"] * 3, completions=completions, pseudo_label=["0.5"] * 3)
    [1.0, 1.0, 0.0]

    ```
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


@register_reward("oracle")
def make_oracle_reward(settings: VoteSettings | None = None) -> RewardFunc:
    r"""Reward 1.0 for a completion whose answer is equivalent to the row's true ``answer`` (GRPO with labels).

    Not label-free: this is the ceiling that test-time RL papers report beside their label-free runs, the same
    training with the true answers in place of the vote's pseudo-labels. Rows without an answer give 0.

    Example:

    ```python
    >>> from sasc_ttrl.training.rewards import make_oracle_reward
    >>> reward = make_oracle_reward()
    >>> reward(prompts=["q"] * 3, completions=[r"\boxed{12}", r"\boxed{13}", "12"], answer=["12", "12", None])
    [1.0, 0.0, 0.0]

    ```
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


@register_reward("format")
def make_format_reward(settings: VoteSettings | None = None) -> RewardFunc:
    r"""Reward 1.0 for a completion that boxes an answer, any answer (``boxed_answer``), else 0.0.

    A control: it teaches the answer format and nothing else, so it measures how much of a label-free run's gain is
    format.

    Example:

    ```python
    >>> from sasc_ttrl.training.rewards import make_format_reward
    >>> reward = make_format_reward()
    >>> reward(prompts=["q"] * 2, completions=[r"so \boxed{3}", "the answer is 3"])
    [1.0, 0.0]

    ```
    """

    def format_reward(prompts, completions, **kwargs):
        return [float(boxed_answer(completion_text(c)) is not None) for c in completions]

    return format_reward
