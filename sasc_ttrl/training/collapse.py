"""A warning when label-free training collapses onto a unanimous vote (the failure mode TTRL users report).

Test-time RL rewards agreement, so one way to maximise the reward is for every rollout to give the same answer,
right or wrong. A vote that is unanimous is not a problem in itself (easy questions), so [`CollapseGuard`] warns,
once, only when the vote has been unanimous on at least ``threshold`` of the groups for ``patience`` logged steps in
a row *and* either some rollouts still give no answer (so the agreement is not that of a model that simply knows)
or a held-out score the user logs (``heldout_metric``, e.g. a pass@k of an evaluation callback) has fallen below
its best value.

The same warning also fires, on its own, when most questions get one answer: the vote rewards reaching any answer
the group agrees on, and the cheapest such answer is one that fits every question ("3 + 2 = 5. The answer is
\\boxed{5}."). It watches ``<vote>/recent_top_label_share`` (the share of the last 16 questions whose pseudo-label
is the most common one, see `sasc_ttrl.core.label_diagnostics.RecentLabels`) and warns when it has been at least
``label_share`` for ``patience`` logged steps in a row. Such a run need not be unanimous within its groups, nor
miss answers, so the first condition alone does not see it.

With ``action="stop"`` the guard also ends training when it fires; [`SASCTrainer`] then puts back the weights of
the last checkpoint saved before the streak that made it fire began (see `SASCTrainer.restore_before_collapse`).

A second guard, [`NoAnswerGuard`], warns once when no rollout has given any answer since training started: every
reward is then 0 and the run learns nothing.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)


class CollapseGuard(TrainerCallback):
    """Watches ``<vote>/unanimous_fraction``, ``<vote>/no_answer_fraction`` and ``<vote>/recent_top_label_share``.

    Args:
        threshold: Share of unanimous groups that counts as a unanimous step.
        action: ``"warn"`` (once) or ``"stop"`` (warn, then end training).
        patience: Consecutive logged unanimous steps before the other conditions are checked; also the consecutive
            logged steps of one dominant label.
        heldout_metric: Name of a logged held-out score; a value below the best seen so far counts as a fall.
        label_share: Share of the recent questions with the most common pseudo-label that counts as one label for
            most questions (``None``: not watched).
    """

    def __init__(
        self,
        threshold: float = 0.9,
        patience: int = 3,
        heldout_metric: str | None = None,
        label_share: float | None = 0.5,
        action: str = "warn",
    ):
        if not 0.0 < threshold <= 1.0 or patience < 1:
            raise ValueError(f"need 0 < threshold <= 1 and patience >= 1, got {threshold}, {patience}")
        if label_share is not None and not 0.0 < label_share <= 1.0:
            raise ValueError(f"need 0 < label_share <= 1 (or None), got {label_share}")
        if action not in ("warn", "stop"):
            raise ValueError(f"action must be 'warn' or 'stop', got {action!r}")
        self.threshold = threshold
        self.patience = patience
        self.heldout_metric = heldout_metric
        self.label_share = label_share
        self.action = action
        self.streak = 0
        self.share_streak = 0
        self.streak_start: int | None = None  # global step of the first logged step of the current streak
        self.share_streak_start: int | None = None
        self.last_share = 0.0
        self.best_heldout: float | None = None
        self.heldout_fell = False
        self.warned = False
        self.message: str | None = None
        self.fired_at: int | None = None  # global step at which the guard fired
        self.fired_streak_start: int | None = None  # first logged step of the streak that made it fire

    @property
    def stopped(self) -> bool:
        """Whether the guard fired with ``action="stop"`` (it asked the trainer to stop)."""
        return self.action == "stop" and self.fired_at is not None

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs):
        logs = logs or {}
        step = state.global_step
        if self.heldout_metric is not None and self.heldout_metric in logs:
            value = float(logs[self.heldout_metric])
            if self.best_heldout is not None and value < self.best_heldout:
                self.heldout_fell = True
            self.best_heldout = value if self.best_heldout is None else max(self.best_heldout, value)
        shares = [float(logs[k]) for k in logs if k.endswith("/recent_top_label_share")]
        if self.label_share is not None and shares:
            self.last_share = min(shares)
            self.share_streak = self.share_streak + 1 if self.last_share >= self.label_share else 0
            self.share_streak_start = (self.share_streak_start or step) if self.share_streak else None
        keys = [k for k in logs if k.endswith("/unanimous_fraction")]
        if self.warned or not keys:
            return
        unanimous = min(float(logs[k]) for k in keys)
        self.streak = self.streak + 1 if unanimous >= self.threshold else 0
        self.streak_start = (self.streak_start or step) if self.streak else None
        answered = 1.0 - max(float(logs.get(k.replace("unanimous_fraction", "no_answer_fraction"), 0.0)) for k in keys)
        if self.action == "stop":
            advice = "collapse_action is 'stop': training stops here."
        else:
            advice = (
                "The reward now mostly pays for agreement; check a held-out score, lower the learning rate, or stop "
                "here (collapse_action: stop does it for you; collapse_patience: 0 turns this off)."
            )
        if self.share_streak >= self.patience:
            self.message = (
                f"possible collapse at step {step}: {100 * self.last_share:.0f}% of the last questions "
                f"got the same pseudo-label, for {self.share_streak} logged steps (recent_top_label_share >= "
                f"{self.label_share}): the model gives one answer whatever the question. {advice}"
            )
            self.fired_streak_start = self.share_streak_start
        elif self.streak >= self.patience and (answered < 1.0 or self.heldout_fell):
            why = f"answer rate {100 * answered:.0f}%" if answered < 1.0 else f"{self.heldout_metric} fell"
            self.message = (
                f"possible collapse at step {step}: the vote was unanimous on >= "
                f"{100 * self.threshold:.0f}% of the groups for {self.streak} logged steps while {why}. {advice}"
            )
            self.fired_streak_start = self.streak_start
        else:
            return
        logger.warning(self.message)
        warnings.warn(self.message, UserWarning, stacklevel=2)
        self.warned = True
        self.fired_at = step
        if self.action == "stop":
            control.should_training_stop = True


class NoAnswerGuard(TrainerCallback):
    """Warns once when no rollout has given an answer since training started.

    A reward that pays for agreeing with the vote is 0 for every rollout when no rollout gives an answer (nothing to
    vote on), so GRPO has no signal: the loss stays 0 and the model is saved unchanged. This watches
    ``<vote>/no_answer_fraction`` and warns when it has been 1.0 for the first ``patience`` logged steps, or, in a run
    shorter than that, at the end of training. The usual causes: a prompt that does not ask for a final answer in
    ``\\boxed{}``, a ``max_completion_length`` too short to reach it, or a missing chat template.

    Args:
        patience: Logged steps without any answer before the warning.
    """

    def __init__(self, patience: int = 3):
        if patience < 1:
            raise ValueError(f"need patience >= 1, got {patience}")
        self.patience = patience
        self.silent_steps = 0
        self.armed = True  # until a logged step shows an answer
        self.warned = False
        self.message: str | None = None

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs):
        keys = [k for k in (logs or {}) if k.endswith("/no_answer_fraction")]
        if not keys or not self.armed:
            return
        if min(float(logs[k]) for k in keys) < 1.0:
            self.armed = False
            return
        self.silent_steps += 1
        if self.silent_steps >= self.patience:
            self._warn(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.armed and self.silent_steps > 0:
            self._warn(state.global_step)

    def _warn(self, step: int) -> None:
        if self.warned:
            return
        self.message = (
            f"no rollout gave an answer in the first {self.silent_steps} logged step(s), up to step {step} "
            "(no_answer_fraction = 1.0): every reward is 0, so the model gets no training signal. Check that the "
            "prompt asks for a final answer in \\boxed{} (prompt_style), that max_completion_length leaves room to "
            "reach it, and that the model has a chat template (no_answer_patience: 0 turns this off)."
        )
        logger.warning(self.message)
        warnings.warn(self.message, UserWarning, stacklevel=2)
        self.warned = True
