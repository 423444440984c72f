"""Capture per-token top-k entropies from a transformers model while it generates, and recompute them.

[`capture_topk_entropies`] registers a forward hook on the model's output embedding (``lm_head``). During
``generate`` the head runs once per generated token (the prefill, then one decoding step per token), and the
last position of each call holds the logits that token was sampled from. The hook reduces them to a top-k
entropy right away, so only ``batch x steps`` floats are kept -- never the vocabulary. The entropies are
those of ``logits / temperature`` *before* logits processors (repetition penalty, top-k/top-p truncation).

[`forward_topk_entropies`] recomputes the same quantity with one no-grad forward pass over prompt + completion.
It is the reference in tests and the fallback where the hook cannot follow generation (continuous batching).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from .entropy import entropy_of_logits, topk_entropy_from_logits, topk_values


class EntropyRecorder:
    """What [`capture_topk_entropies`] records: each decoding step's top-k logits, reduced to entropies at the end.

    A decoding step only takes the top-k logits ([`topk_values`], on the logits' device); the softmax and entropy
    over the ``batch x steps x k`` values run once, in [`per_sequence`]. Memory is ``O(tokens x k)``, never the
    vocabulary.
    """

    def __init__(self, k: int, temperature: float):
        self.k = k
        self.temperature = temperature
        self.steps: list[torch.Tensor] = []  # one (batch, k) tensor of top-k logits per decoding step

    def __call__(self, module, args, output) -> None:
        logits = output[0] if isinstance(output, tuple) else output
        if hasattr(logits, "logits"):
            logits = logits.logits
        last = logits[:, -1, :] if logits.dim() == 3 else logits
        with torch.no_grad():
            self.steps.append(topk_values(last.detach(), self.k))

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    def per_sequence(self, lengths: Sequence[int], temperatures: torch.Tensor | None = None) -> list[list[float]]:
        """Split the record into one entropy list per sequence, truncated to each sequence's length.

        Args:
            lengths: Each sequence's completion length.
            temperatures: The temperature of every row and step, ``(batch, steps)``, when they were not all the
                recorder's (dynamic temperature, `sasc_ttrl.sampling.dynamic_temperature`); a 0 marks a greedy step,
                whose sampled distribution is one token: entropy 0.

        Raises:
            RuntimeError: if fewer steps were recorded than the longest sequence needs.
        """
        if not lengths:
            return []
        if max(lengths) > len(self.steps):
            raise RuntimeError(
                f"recorded {len(self.steps)} generation steps but a completion has {max(lengths)} tokens; "
                "the output-embedding hook did not see every decoding step"
            )
        if max(lengths) == 0:
            return [[] for _ in lengths]
        top = torch.stack(self.steps[: max(lengths)], dim=1)  # (batch, steps, k)
        if top.shape[0] != len(lengths):
            raise RuntimeError(f"recorded entropies for {top.shape[0]} sequences, expected {len(lengths)}")
        if temperatures is None:
            # The values are already the top k: the same entropies as topk_entropy_from_logits on the full logits.
            table = topk_entropy_from_logits(top, k=self.k, temperature=self.temperature).cpu()
        else:
            table = _entropy_at_temperatures(top.cpu(), temperatures[:, : top.shape[1]])
        return [table[i, :n].tolist() if n > 0 else [] for i, n in enumerate(lengths)]


def _entropy_at_temperatures(top: torch.Tensor, temperatures: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(top / T)`` per ``(row, step)``, 0 where ``T == 0`` (greedy)."""
    if temperatures.shape != top.shape[:2]:
        raise RuntimeError(f"got temperatures of shape {tuple(temperatures.shape)} for {tuple(top.shape[:2])} steps")
    greedy = temperatures == 0
    scaled = top.float() / torch.where(greedy, torch.ones_like(temperatures), temperatures).float()[..., None]
    return torch.where(greedy, torch.zeros(()), entropy_of_logits(scaled))


def _output_embedding(model: torch.nn.Module) -> torch.nn.Module:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output embedding (lm_head) to capture entropies from")
    return head


@contextmanager
def capture_topk_entropies(model: torch.nn.Module, k: int, temperature: float) -> Iterator[EntropyRecorder]:
    """Record the top-k entropy of every generated token while ``model.generate`` runs inside the block.

    Example:
        ```python
        with capture_topk_entropies(model, k=20, temperature=0.8) as recorder:
            out = model.generate(**inputs, do_sample=True, temperature=0.8)
        entropies = recorder.per_sequence(completion_lengths)
        ```
    """
    recorder = EntropyRecorder(k, temperature)
    handle = _output_embedding(model).register_forward_hook(recorder)
    try:
        yield recorder
    finally:
        handle.remove()


def pack_prompt_completion(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    """Lay out prompt + completion pairs as generation does: prompts left-padded to one length, completions after.

    Returns:
        ``(input_ids, attention_mask, position_ids, prompt_width, completion_width)``; completion token ``j`` of row
        ``i`` sits at column ``prompt_width + j`` and is predicted by the logits at ``prompt_width - 1 + j``.
    """
    p_len = max(len(p) for p in prompts)
    c_len = max(len(c) for c in completions)
    ids = torch.full((len(prompts), p_len + c_len), pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, p_len - len(p) : p_len] = torch.tensor(list(p), dtype=torch.long)
        mask[i, p_len - len(p) : p_len] = 1
        if len(c):
            ids[i, p_len : p_len + len(c)] = torch.tensor(list(c), dtype=torch.long)
            mask[i, p_len : p_len + len(c)] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, position_ids, p_len, c_len


@torch.no_grad()
def forward_topk_entropies(
    model: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    k: int,
    temperature: float,
    pad_token_id: int,
    batch_size: int = 8,
) -> list[list[float]]:
    """Top-k entropy of every completion token from a no-grad forward pass over prompt + completion.

    Sequences are left-padded per batch (the layout of generation), so the result matches what the model saw
    while generating up to numerical noise.
    """
    device = next(model.parameters()).device
    out: list[list[float]] = []
    for start in range(0, len(prompt_ids), batch_size):
        prompts = prompt_ids[start : start + batch_size]
        completions = completion_ids[start : start + batch_size]
        ids, mask, position_ids, p_len, c_len = pack_prompt_completion(prompts, completions, pad_token_id)
        logits = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=position_ids.to(device)
        ).logits
        # The logits at position t predict token t+1: completion token j is predicted at p_len - 1 + j.
        ent = topk_entropy_from_logits(logits[:, p_len - 1 : p_len - 1 + c_len], k=k, temperature=temperature)
        out.extend(ent[i, : len(c)].tolist() for i, c in enumerate(completions))
    return out
