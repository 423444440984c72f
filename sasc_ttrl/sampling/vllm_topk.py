"""Top-k logprobs from vLLM (as TRL's `extract_logprobs` returns them): the sampled token's logprob and entropies.

TRL returns, per completion and per token, the logprobs sorted by rank (most probable first) and their token ids;
with ``logprobs=k`` vLLM returns the top k, plus the sampled token when it lies outside them (k+1 entries).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .entropy import topk_entropy_from_logprobs


def sasc_sampling_overrides(generation_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``SamplingParams`` keys SASC adds to a request for top-k logprobs: ``detokenize=False``.

    With ``logprobs=k`` vLLM turns the token id of every returned logprob (k or k+1 per generated token) into text,
    one tokenizer call each, which nobody reads here: TRL's colocated branch reads token ids and logprobs only
    (BENCHMARKS.md: it was most of the extra time of ``logprobs=20`` on a CPU). The completion text goes too, which
    TRL's colocated branch never reads either (it decodes the ids itself); sampled ids and logprobs are unchanged.
    Nothing is added when the caller's ``generation_kwargs`` set ``detokenize`` or use ``stop`` strings (vLLM
    needs the text to find them).

    Args:
        generation_kwargs: The extra ``SamplingParams`` arguments already requested (``GRPOConfig.generation_kwargs``).

    Returns:
        ``generation_kwargs`` with SASC's addition (a new dict; the argument is not modified).
    """
    kwargs = dict(generation_kwargs or {})
    if "detokenize" not in kwargs and not kwargs.get("stop"):
        kwargs["detokenize"] = False
    return kwargs


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

    All tokens of all completions are reduced together ([`topk_entropy_from_logprobs`] on the flattened positions;
    the same values as one completion at a time).
    """
    clean = []
    for seq, positions in enumerate(topk_logprobs):
        for pos, values in enumerate(positions):
            kept = [v for v in values if v is not None and not math.isnan(v)]
            if not kept:
                raise ValueError(f"completion {seq}, token {pos} has no log-probabilities; request logprobs=k")
            clean.append(kept)
    flat = topk_entropy_from_logprobs(clean, k=k, temperature=temperature)
    out, start = [], 0
    for positions in topk_logprobs:
        out.append(flat[start : start + len(positions)])
        start += len(positions)
    return out


# vLLM's `--logprobs-mode` values, and the temperature at which each gives the top-k entropy of `logits / T`.
# The top-k entropy is a softmax over the k returned values, which does not change when a row is shifted: raw
# logits and raw logprobs give the same entropy, as do processed logits and processed logprobs.
LOGPROBS_MODES = ("raw_logprobs", "raw_logits", "processed_logprobs", "processed_logits")


def server_entropy_temperature(server_info: Mapping[str, Any], temperature: float, k: int) -> float:
    """The temperature at which a vLLM server's returned logprobs give the entropies of ``logits / temperature``.

    Args:
        server_info: The server's configuration (TRL's `VLLMClient.get_server_info`).
        temperature: The sampling temperature.
        k: Logprobs asked for per token (``entropy_top_k``).

    Returns:
        1.0 for processed logprobs or logits (the temperature is already applied), ``temperature`` for raw ones.

    Raises:
        ValueError: naming the server's setting, when it returns fewer than ``k`` logprobs per token or reports no
            logprobs mode this function knows.
    """
    model_config = server_info.get("model_config", {})
    mode = model_config.get("logprobs_mode")
    if mode not in LOGPROBS_MODES:
        raise ValueError(
            f"the vLLM server reports logprobs_mode {mode!r}: start it with `trl vllm-serve` (or `vllm serve "
            "--logprobs-mode processed_logprobs`) so that the entropies can be read from its logprobs"
        )
    max_logprobs = model_config.get("max_logprobs")
    if max_logprobs is not None and 0 <= int(max_logprobs) < k:
        raise ValueError(
            f"the vLLM server returns at most {max_logprobs} logprobs per token (max_logprobs) but entropy_top_k is "
            f"{k}: restart it with --max-logprobs {k} or more (`trl vllm-serve` sets -1, no limit)"
        )
    return 1.0 if mode.startswith("processed") else temperature


def compact_topk_output(output: dict[str, Any], k: int, temperature: float) -> dict[str, Any]:
    """A vLLM server's generation output with each token's top-k logprobs reduced to two numbers.

    In server mode TRL's main process broadcasts every rollout's logprobs to every rank as Python objects; with
    ``logprobs=k`` that is k or k+1 logprobs and ids per token. Reduced first, each token carries
    ``[sampled-token logprob, top-k entropy]`` and its own id: what `SASCTrainer` reads (`split_compact_topk`).

    Args:
        output: ``VLLMClient.generate``'s dict (``completion_ids``, ``logprobs``, ``logprob_token_ids``).
        k: Entries per token the entropy uses.
        temperature: From [`server_entropy_temperature`].
    """
    entropies = entropies_from_topk(output["logprobs"], k=k, temperature=temperature)
    sampled = sampled_token_logprobs(output["logprobs"], output["logprob_token_ids"], output["completion_ids"])
    compact = dict(output)
    compact["logprobs"] = [
        [[lp, h] for lp, h in zip(lps, hs, strict=True)] for lps, hs in zip(sampled, entropies, strict=True)
    ]
    compact["logprob_token_ids"] = [[[token] for token in tokens] for tokens in output["completion_ids"]]
    return compact


def split_compact_topk(
    compact_logprobs: Sequence[Sequence[Sequence[float]]],
) -> tuple[list[list[float]], list[list[float]]]:
    """The sampled-token logprobs and the entropies of [`compact_topk_output`]'s ``logprobs``, per completion."""
    sampled = [[float(pair[0]) for pair in row] for row in compact_logprobs]
    entropies = [[float(pair[1]) for pair in row] for row in compact_logprobs]
    return sampled, entropies
