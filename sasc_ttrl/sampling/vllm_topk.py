"""Top-k logprobs from vLLM (as TRL's `extract_logprobs` returns them): the sampled token's logprob and entropies.

TRL returns, per completion and per token, the logprobs sorted by rank (most probable first) and their token ids;
with ``logprobs=k`` vLLM returns the top k, plus the sampled token when it lies outside them (k+1 entries).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .entropy import topk_entropy_from_logprobs


def sampled_token_logprobs(
    topk_logprobs: Sequence[Sequence[Sequence[float | None]]],
    topk_token_ids: Sequence[Sequence[Sequence[int]]],
    completion_ids: Sequence[Sequence[int]],
) -> list[list[float]]:
    """The logprob of the token actually sampled at each position (what TRL's importance sampling needs).

    Raises:
        ValueError: when lengths disagree or a sampled token is missing from its position's logprobs.
    """
    result = []
    for seq, (lps, ids, tokens) in enumerate(zip(topk_logprobs, topk_token_ids, completion_ids, strict=True)):
        if not (len(lps) == len(ids) == len(tokens)):
            raise ValueError(
                f"completion {seq}: {len(tokens)} tokens but logprobs for {len(lps)} and ids for {len(ids)}"
            )
        row = []
        for pos, (values, token_ids, token) in enumerate(zip(lps, ids, tokens)):
            try:
                value = values[list(token_ids).index(token)]
            except ValueError:
                raise ValueError(
                    f"completion {seq}, token {pos}: sampled id {token} is not among the returned logprob ids"
                ) from None
            row.append(float("nan") if value is None else float(value))
        result.append(row)
    return result


def entropies_from_topk(
    topk_logprobs: Sequence[Sequence[Sequence[float | None]]], k: int, temperature: float
) -> list[list[float]]:
    """Top-k entropy per token from per-token top-k logprobs.

    Pass ``temperature=1.0`` for vLLM's ``processed_logprobs`` (TRL's colocated engine: temperature already
    applied) and the sampling temperature for ``raw_logprobs`` (vLLM's default). Processed logprobs are taken after
    top-p / top-k / min-p / repetition penalty: with any of those active, the cut tokens come back as ``-inf`` and
    the entropy is that of the truncated distribution. Missing (None/NaN) entries are ignored.
    """
    out = []
    for seq in topk_logprobs:
        clean = [[v for v in values if v is not None and not math.isnan(v)] for values in seq]
        out.append(topk_entropy_from_logprobs(clean, k=k, temperature=temperature))
    return out
