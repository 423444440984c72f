"""A reward model that scores solutions (``orm``) or solution steps (``prm``), for the ``verifier`` method.

Two kinds of reward model, both loaded with ``AutoModelForSequenceClassification``:

* ``orm`` (outcome reward model): one score per candidate, from question + full solution;
* ``prm`` (process reward model): one score per reasoning step, from question + the solution up to and including
  that step.

A ``prm`` folder holding a token-classification model (as ``sasc-ttrl prm`` trains it) is loaded with
``AutoModelForTokenClassification`` instead and reads the whole solution once: the steps, each followed by the
separator saved in its config, and a step's score is P(label 1) on its separator's last token
([`selection.step_labels.encode_steps`]).

A score is ``sigmoid(logit)`` for a one-label head, else the probability of the last label (by convention the
"correct" / "good" label). The input is the chat template with the question as the user turn and the solution as
the assistant turn when the reward model's tokenizer has one, else ``question + "\\n\\n" + solution``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from ..base import aggregate_steps
from ..candidates import Candidate

logger = logging.getLogger(__name__)

VERIFIER_KINDS = ("orm", "prm")


class RewardModelVerifier:
    """A sequence-classification reward model scoring solutions (``orm``) or solution prefixes (``prm``).

    Args:
        model_name_or_path: Folder or hub name of the reward model.
        kind: ``orm`` or ``prm``.
        batch_size: Texts per forward pass.
        device: Torch device (default: the GPU when there is one).
        dtype: Torch dtype name, or ``auto``.
    """

    def __init__(
        self,
        model_name_or_path: str,
        kind: str = "orm",
        batch_size: int = 8,
        device: str | None = None,
        dtype: str = "auto",
    ):
        from transformers import (
            AutoConfig,
            AutoModelForSequenceClassification,
            AutoModelForTokenClassification,
            AutoTokenizer,
        )

        if kind not in VERIFIER_KINDS:
            raise ValueError(f"verifier kind must be one of {VERIFIER_KINDS}, got {kind!r}")
        self.kind = kind
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        architectures = AutoConfig.from_pretrained(model_name_or_path).architectures or []
        self.token_level = kind == "prm" and any(a.endswith("ForTokenClassification") for a in architectures)
        auto = AutoModelForTokenClassification if self.token_level else AutoModelForSequenceClassification
        self.model = auto.from_pretrained(model_name_or_path, dtype=torch_dtype)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(self.device).eval()
        logger.info("verifier %s (%s, %d labels) loaded", model_name_or_path, kind, self.model.config.num_labels)

    def render(self, question: str, solution: str) -> str:
        """The text the reward model reads for one (question, solution)."""
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return f"{question}\n\n{solution}"

    @torch.no_grad()
    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """The reward model's score of each rendered text (see the module docstring)."""
        add_special_tokens = not getattr(self.tokenizer, "chat_template", None)
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                return_tensors="pt",
                padding=True,
                add_special_tokens=add_special_tokens,
            ).to(self.device)
            logits = self.model(**batch).logits.float()
            if logits.shape[-1] == 1:
                scores.extend(torch.sigmoid(logits[:, 0]).cpu().tolist())
            else:
                scores.extend(torch.softmax(logits, dim=-1)[:, -1].cpu().tolist())
        return scores

    def score(self, question: str, candidates: Sequence[Candidate], step_aggregation: str = "min") -> list[float]:
        """One score per candidate: the ORM score, or the aggregated PRM step scores."""
        if self.kind == "orm":
            return self.score_texts([self.render(question, c.text) for c in candidates])
        if self.token_level:
            return [aggregate_steps(s, step_aggregation) for s in self.step_scores(question, candidates)]
        texts, owners = [], []
        for i, c in enumerate(candidates):
            steps = c.steps or [c.text]
            for j in range(len(steps)):
                texts.append(self.render(question, "\n".join(steps[: j + 1])))
                owners.append(i)
        per_step: list[list[float]] = [[] for _ in candidates]
        for owner, s in zip(owners, self.score_texts(texts) if texts else []):
            per_step[owner].append(s)
        return [aggregate_steps(s, step_aggregation) for s in per_step]

    @torch.no_grad()
    def step_scores(self, question: str, candidates: Sequence[Candidate]) -> list[list[float]]:
        """A token-classification PRM's P(good) of every step of every candidate, at the step separators."""
        from ..step_labels import encode_steps

        separator = getattr(self.model.config, "prm_step_separator", "\n")
        encoded = [
            encode_steps(self.tokenizer, question, c.steps or [c.text], separator=separator) for c in candidates
        ]
        out: list[list[float]] = []
        for start in range(0, len(encoded), self.batch_size):
            batch = encoded[start : start + self.batch_size]
            width = max(len(e["input_ids"]) for e in batch)
            ids = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, e in enumerate(batch):  # right padding: the separator positions stay where they are
                ids[i, : len(e["input_ids"])] = torch.tensor(e["input_ids"], dtype=torch.long)
                mask[i, : len(e["input_ids"])] = 1
            probs = torch.softmax(
                self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits.float(), -1
            )
            out.extend(probs[i, e["positions"], -1].cpu().tolist() for i, e in enumerate(batch))
        return out
