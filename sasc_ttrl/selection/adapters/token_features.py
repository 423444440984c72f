"""The one no-grad forward pass over prompt + completion that fills in a candidate's [`TokenFeatures`]: the
log-probability of the sampled token, the ``top_k`` largest log-probabilities (DeepConf), the self-certainty
``KL(U || p) = -log V - mean_j log p_j`` per token, and, on request, the per-layer mean hidden states (CoE).

The full-vocabulary distribution is never kept: O(tokens x top_k) floats per candidate.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...sampling.entropy_capture import pack_prompt_completion
from ..candidates import TokenFeatures


def _supports_logits_to_keep(model: torch.nn.Module) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@torch.no_grad()
def compute_token_features(
    model: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    pad_token_id: int,
    top_k: int = 20,
    hidden_states: bool = False,
    batch_size: int = 4,
    chunk_size: int = 512,
) -> list[TokenFeatures]:
    """Per-token statistics of each completion from one no-grad forward pass over prompt + completion.

    Sequences are left-padded per batch (the layout of generation). The logits at position ``t`` predict token
    ``t + 1``, so completion token ``j`` is scored by the logits at ``len(prompt) - 1 + j``.

    Args:
        model: A causal LM in eval mode.
        prompt_ids: Token ids of each completion's prompt (one entry per completion).
        completion_ids: The completions' token ids.
        pad_token_id: Padding id.
        top_k: Number of top log-probabilities kept per position (DeepConf uses 20).
        hidden_states: Also return the chain of embeddings (mean hidden state of the completion tokens per layer).
        batch_size: Sequences per forward pass.
        chunk_size: Positions whose full-vocabulary log-probabilities are materialised at once.
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"got {len(prompt_ids)} prompts for {len(completion_ids)} completions")
    device = next(model.parameters()).device
    keep_kw = _supports_logits_to_keep(model)
    out: list[TokenFeatures] = []
    for start in range(0, len(prompt_ids), batch_size):
        prompts = prompt_ids[start : start + batch_size]
        completions = completion_ids[start : start + batch_size]
        ids, mask, position_ids, p_len, c_len = pack_prompt_completion(prompts, completions, pad_token_id)
        kwargs: dict[str, Any] = {"output_hidden_states": hidden_states}
        if keep_kw:
            kwargs["logits_to_keep"] = c_len + 1
        output = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=position_ids.to(device), **kwargs
        )
        logits = output.logits
        # With logits_to_keep the logits cover the last c_len + 1 positions: index 0 is position p_len - 1.
        first = 0 if keep_kw else p_len - 1
        for i, c in enumerate(completions):
            n = len(c)
            if n == 0:
                chain = None
                if hidden_states:
                    chain = np.zeros((len(output.hidden_states), output.hidden_states[0].shape[-1]), dtype=np.float32)
                out.append(TokenFeatures([], [], [], chain))
                continue
            targets = torch.tensor(list(c), dtype=torch.long, device=logits.device)
            token_logprobs, topk, certainty = [], [], []
            # Chunks bound the float32 copy of the logits to chunk_size x vocab.
            for a in range(0, n, chunk_size):
                logp = torch.log_softmax(logits[i, first + a : first + min(n, a + chunk_size)].float(), dim=-1)
                token_logprobs.append(logp.gather(-1, targets[a : a + chunk_size, None]).squeeze(-1))
                topk.append(torch.topk(logp, min(top_k, logp.shape[-1]), dim=-1).values)
                certainty.append(-logp.mean(dim=-1) - math.log(logp.shape[-1]))
            token_logprobs, topk, certainty = torch.cat(token_logprobs), torch.cat(topk), torch.cat(certainty)
            chain = None
            if hidden_states:
                chain = (
                    torch.stack([h[i, p_len : p_len + n].float().mean(dim=0) for h in output.hidden_states])
                    .cpu()
                    .numpy()
                )
            out.append(
                TokenFeatures(
                    token_logprobs=token_logprobs.cpu().tolist(),
                    topk_logprobs=topk.cpu().tolist(),
                    self_certainty=certainty.cpu().tolist(),
                    hidden_chain=chain,
                )
            )
    return out
