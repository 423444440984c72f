"""Entropy-based dynamic temperature (EDT, Zhang et al. 2024, arXiv 2403.14541), the sampler Self-Calibration
builds its training data with, as a batched ``transformers`` logits processor.

At every decoding step each row gets its own temperature from the entropy ``H`` of its next-token distribution::

    T = T0 * N ** (theta / H)        (T0 = 0.8, N = 0.8, theta = 1.0 in Self-Calibration)

With ``0 < N < 1`` the temperature grows with the entropy towards ``T0``: a confident step is sampled almost
greedily, an uncertain one at nearly ``T0``. A row whose temperature falls below ``GREEDY_BELOW`` (``H == 0``
included) is decoded greedily, as the authors' generator does.

Two readings of ``H`` (``entropy=``):

* ``"paper"`` (default): the Shannon entropy of ``softmax(logits)`` over the whole vocabulary,
  ``-sum p log p``, the entropy EDT defines;
* ``"authors"``: what Self-Calibration's ``calculate_entropy_from_logits`` computes,
  ``-sum softmax(l) * (l - max l)``. That drops the ``+ log Z`` term (``log Z = logsumexp(l - max l) >= 0``), so it
  is ``H - log Z``: never larger than the entropy, and 0 for a flat distribution (which it then decodes greedily),
  where the entropy is largest.

[`DynamicTemperatureProcessor`] rescales the scores of each row by that row's temperature inside
``model.generate`` -- many prompts and samples per call, instead of the authors' loop that decodes one prompt a
token at a time -- and keeps the temperature it used at every step, so that the top-k entropies recorded with a
sample (`sasc_ttrl.sampling.generation`) are those of the distribution actually sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor

ENTROPY_READINGS = ("paper", "authors")
GREEDY_BELOW = 1e-3  # a temperature below this decodes greedily (Self-Calibration's threshold)


@dataclass(frozen=True)
class DynamicTemperature:
    """The rule ``T = base * n ** (theta / H)`` and how ``H`` is read.

    Args:
        base: ``T0``, the temperature approached as the entropy grows (> 0).
        n: ``N``, in ``(0, 1)`` for a temperature that grows with the entropy.
        theta: ``theta`` (>= 0); 0 gives the fixed temperature ``base``.
        entropy: ``"paper"`` (Shannon entropy) or ``"authors"`` (Self-Calibration's ``H - log Z``).
    """

    base: float = 0.8
    n: float = 0.8
    theta: float = 1.0
    entropy: str = "paper"

    def __post_init__(self) -> None:
        if self.base <= 0:
            raise ValueError(f"dt_base must be > 0, got {self.base}")
        if not 0 < self.n < 1:
            raise ValueError(f"dt_n must be in (0, 1), got {self.n}")
        if self.theta < 0:
            raise ValueError(f"dt_theta must be >= 0, got {self.theta}")
        if self.entropy not in ENTROPY_READINGS:
            raise ValueError(f"dt_entropy must be one of {ENTROPY_READINGS}, got {self.entropy!r}")


def next_token_entropy(logits: torch.Tensor, reading: str = "paper") -> torch.Tensor:
    """``H`` of each row of ``(rows, vocab)`` logits, in float32, over the whole vocabulary.

    ``"paper"``: ``-sum p log p``; ``"authors"``: ``-sum p (l - max l)`` (see the module docstring). A ``-inf``
    logit (a token a processor removed) contributes 0.
    """
    if reading not in ENTROPY_READINGS:
        raise ValueError(f"entropy reading must be one of {ENTROPY_READINGS}, got {reading!r}")
    logits = logits.float()
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    log_p = torch.log_softmax(shifted, dim=-1)
    term = log_p if reading == "paper" else shifted
    entropy = -(log_p.exp() * torch.nan_to_num(term, neginf=0.0)).sum(dim=-1)
    return entropy.clamp(min=0.0)


def dynamic_temperatures(logits: torch.Tensor, rule: DynamicTemperature) -> torch.Tensor:
    """Each row's temperature under ``rule`` (float32, shape ``(rows,)``); 0 marks a row decoded greedily
    (``H == 0``, or a temperature below ``GREEDY_BELOW``)."""
    if rule.theta == 0:
        return torch.full(logits.shape[:-1], rule.base, dtype=torch.float32, device=logits.device)
    entropy = next_token_entropy(logits, rule.entropy)
    positive = entropy > 0
    exponent = rule.theta / torch.where(positive, entropy, torch.ones_like(entropy))
    temperature = rule.base * torch.pow(torch.tensor(rule.n, dtype=torch.float32), exponent)
    greedy = ~positive | (temperature < GREEDY_BELOW)
    return torch.where(greedy, torch.zeros_like(temperature), temperature)


def scale_rows(scores: torch.Tensor, temperatures: torch.Tensor) -> torch.Tensor:
    """``scores / T`` row by row; a row with ``T == 0`` keeps only its largest score (the rest ``-inf``)."""
    greedy = temperatures == 0
    scaled = scores / torch.where(greedy, torch.ones_like(temperatures), temperatures).to(scores.dtype)[:, None]
    if greedy.any():
        one_hot = torch.full_like(scores, -float("inf"))
        one_hot.scatter_(-1, scores.argmax(dim=-1, keepdim=True), 0.0)
        scaled = torch.where(greedy[:, None], one_hot, scaled)
    return scaled


class DynamicTemperatureProcessor(LogitsProcessor):
    """A ``transformers`` logits processor that samples every row at its own entropy-based temperature.

    Each call computes the rows' temperatures from the scores it receives ([`dynamic_temperatures`]) and returns
    the scores divided by them ([`scale_rows`]), so ``generate(do_sample=True, temperature=1.0, top_k=0,
    logits_processor=[processor])`` draws from ``softmax(logits / T_row)``. The temperatures of every step are
    kept in ``history`` (one ``(rows,)`` tensor per step) for the entropies of the sampled distributions.

    Example:
        ```python
        processor = DynamicTemperatureProcessor(DynamicTemperature(base=0.8, n=0.8, theta=1.0))
        out = model.generate(**inputs, do_sample=True, temperature=1.0, top_k=0, logits_processor=[processor])
        per_step = torch.stack(processor.history, dim=1)  # (rows, steps) temperatures, 0 = greedy
        ```
    """

    def __init__(self, rule: DynamicTemperature):
        self.rule = rule
        self.history: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        temperatures = dynamic_temperatures(scores, self.rule)
        self.history.append(temperatures.detach().cpu())
        return scale_rows(scores, temperatures)

    def temperatures(self) -> torch.Tensor:
        """The temperatures used so far, ``(rows, steps)`` (0 = greedy)."""
        if not self.history:
            return torch.empty(0, 0)
        return torch.stack(self.history, dim=1)


@dataclass
class DynamicTemperatureArguments:
    """The command-line fields of the dynamic temperature, shared by the commands that sample (``build``, ``eval``);
    read into `sasc_ttrl.sampling.generation.SamplingSettings` by name."""

    dynamic_temperature: bool = field(
        default=False,
        metadata={"help": "Sample every token at an entropy-based temperature T = dt_base * dt_n ** (dt_theta / H) "
                  "(EDT, as Self-Calibration builds its data); transformers backend only."},
    )  # fmt: skip
    dt_base: float | None = field(
        default=None, metadata={"help": "T0 of the dynamic temperature (default: --temperature)."}
    )
    dt_n: float = field(default=0.8, metadata={"help": "N of the dynamic temperature, in (0, 1)."})
    dt_theta: float = field(default=1.0, metadata={"help": "theta of the dynamic temperature (>= 0)."})
    dt_entropy: str = field(
        default="paper",
        metadata={"help": "The H the dynamic temperature reads: paper (Shannon entropy) or authors "
                  "(Self-Calibration's code: H - log Z)."},
    )  # fmt: skip
