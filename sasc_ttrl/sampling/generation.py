"""Sample ``n`` completions per prompt and keep, for each, the record every offline tool needs.

Two backends return the same [`SampleRecord`] (text, token ids, extracted answer, per-token top-k entropies):

* [`sample_transformers`]: ``model.generate(do_sample=True, num_return_sequences=n)`` inside
  [`capture_topk_entropies`], which records each generated token's top-k entropy from the output embedding;
* [`sample_vllm`]: one ``vllm.LLM`` with ``SamplingParams(n=n, logprobs=entropy_top_k, seed=...)``; the entropies
  come from the returned top-k log-probabilities ([`topk_entropy_from_logprobs`]).

Both sample with temperature and top-p only (no top-k truncation, no repetition penalty, whatever the model's
``generation_config`` says), and both are seeded per prompt: the samples of a prompt depend on ``(seed, its key)``
only, not on which other prompts share the call. On the transformers backend each of the ``n`` rows draws from
its own ``torch.Generator`` (a logits processor samples, then hands ``generate`` a one-hot distribution), so an
interrupted evaluation that resumes with other batches reproduces the same samples.

The transformers backend can also sample at an entropy-based dynamic temperature (``dynamic_temperature``;
`sasc_ttrl.sampling.dynamic_temperature`): every row and step at its own temperature, and the recorded entropy of a
token is that of the distribution it was sampled from (its own temperature; 0 for a greedy step). The vLLM backend
refuses it.

The completion of a sample is its generated tokens up to and including the first end-of-sequence token, without
padding; it has exactly one entropy per token.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from ..core.stability import DEFAULT_TOP_K
from .dynamic_temperature import DynamicTemperature, DynamicTemperatureProcessor
from .entropy import topk_entropy_from_logprobs
from .entropy_capture import capture_topk_entropies
from .records import SampleRecord, make_record

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "transformers", "vllm")


@dataclass(frozen=True)
class SamplingSettings:
    """How completions are drawn: the settings every sampling call shares (evaluation, builder, PRM labels,
    self-improvement, the demo, the vote study).

    Args:
        n: Completions per prompt.
        temperature: Sampling temperature (> 0).
        top_p: Nucleus mass in (0, 1].
        max_tokens: Maximum completion length in tokens.
        seed: Base seed; the prompt with key ``q`` samples from ``(seed, q)`` (see [`sample_seed`]).
        entropy_top_k: k of the per-token top-k entropy recorded with each completion.
        batch_size: Prompts per ``generate`` call on the transformers backend (vLLM batches by itself).
        dynamic_temperature: Sample at an entropy-based temperature per token (`DynamicTemperature`) instead of
            ``temperature``; transformers backend only.
        dt_base: ``T0`` of the dynamic temperature; ``None``: ``temperature``.
        dt_n: ``N`` of the dynamic temperature, in (0, 1).
        dt_theta: ``theta`` of the dynamic temperature (>= 0).
        dt_entropy: The entropy the dynamic temperature reads: ``paper`` (Shannon) or ``authors``
            (Self-Calibration's code).
    """

    n: int
    temperature: float
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int = 0
    entropy_top_k: int = DEFAULT_TOP_K
    batch_size: int = 8
    dynamic_temperature: bool = False
    dt_base: float | None = None
    dt_n: float = 0.8
    dt_theta: float = 1.0
    dt_entropy: str = "paper"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1 or self.entropy_top_k < 1 or self.batch_size < 1:
            raise ValueError(
                f"max_tokens, entropy_top_k and batch_size must be >= 1, got {self.max_tokens}, "
                f"{self.entropy_top_k}, {self.batch_size}"
            )
        self.dynamic  # noqa: B018 - validates the dynamic-temperature fields

    @property
    def dynamic(self) -> DynamicTemperature | None:
        """The dynamic-temperature rule, or ``None`` when sampling at the fixed ``temperature``."""
        if not self.dynamic_temperature:
            return None
        base = self.temperature if self.dt_base is None else self.dt_base
        return DynamicTemperature(base=base, n=self.dt_n, theta=self.dt_theta, entropy=self.dt_entropy)

    @classmethod
    def from_arguments(cls, args: Any, n: int, **overrides: Any) -> SamplingSettings:
        """The settings of a command's arguments: ``n``, and each other field of this class that ``args`` has
        (``temperature``, ``top_p``, ...; the class default otherwise); ``overrides`` win."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if f.name != "n" and hasattr(args, f.name)}
        return cls(n=n, **{**values, **overrides})


def sample_seed(*parts: int) -> int:
    """A 32-bit seed derived from integers (e.g. ``(seed, prompt key, sample index)``), well mixed."""
    return int(np.random.SeedSequence([p % (1 << 64) for p in parts]).generate_state(1)[0])


def encode_prompts(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of prompt texts. No special tokens are added when the tokenizer has a chat template: the prompt
    was rendered through it and already carries them (as TRL does)."""
    add_special_tokens = not getattr(tokenizer, "chat_template", None)
    return [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]


def resolve_backend(backend: str, dynamic_temperature: bool = False) -> str:
    """``"auto"`` -> ``"vllm"`` when vLLM is importable and a GPU is present, else ``"transformers"``; always
    ``"transformers"`` with ``dynamic_temperature``, which ``"vllm"`` refuses ([`check_vllm_sampling`])."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "vllm":
        check_vllm_sampling(dynamic_temperature)
    if backend != "auto":
        return backend
    if dynamic_temperature:
        return "transformers"
    if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
        return "vllm"
    return "transformers"


def _stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("neither the model's generation_config nor the tokenizer defines an end-of-sequence token")
    return ids


class SeededSampler(LogitsProcessor):
    """Logits processor that samples every row from its own ``torch.Generator`` with temperature and top-p.

    It returns a distribution that puts all mass on the drawn token, so ``generate``'s own sampling step picks it.
    ``generate`` applies its warpers after custom processors, so they are disabled (``temperature=1``, ``top_k=0``,
    ``top_p=1``); any warper a model's ``generation_config`` still adds keeps the single remaining token.
    With ``dynamic`` (a [`DynamicTemperatureProcessor`]) each row is scaled by its own temperature instead of
    ``temperature``, then top-p applies.
    """

    def __init__(
        self,
        seeds: Sequence[int],
        temperature: float,
        top_p: float,
        dynamic: DynamicTemperatureProcessor | None = None,
    ):
        self.seeds = list(seeds)
        self.temperature = temperature
        self.top_p = top_p
        self.dynamic = dynamic
        self.generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self.generators is None:
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        if scores.shape[0] != len(self.generators):
            raise RuntimeError(f"SeededSampler got {scores.shape[0]} rows, expected {len(self.generators)}")
        if self.dynamic is not None:
            probs = torch.softmax(self.dynamic(input_ids, scores.float()), dim=-1)
        else:
            probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            # Keep the smallest prefix whose mass reaches top_p (the first token is always kept).
            drop = (sorted_probs.cumsum(-1) - sorted_probs) >= self.top_p
            probs = probs.scatter(-1, order, sorted_probs.masked_fill(drop, 0.0))
        drawn = [torch.multinomial(probs[r], 1, generator=g) for r, g in enumerate(self.generators)]
        one_hot = torch.full_like(scores, -float("inf"))
        return one_hot.scatter_(-1, torch.stack(drawn), 0.0)


@torch.no_grad()
def sample_transformers(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    n: int,
    temperature: float,
    top_p: float,
    max_tokens: int,
    seed: int,
    batch_size: int,
    entropy_top_k: int = DEFAULT_TOP_K,
    sample_keys: Sequence[int] | None = None,
    dynamic: DynamicTemperature | None = None,
) -> list[list[SampleRecord]]:
    """Sample ``n`` completions per prompt with transformers ``generate``, recording per-token top-k entropies.

    Args:
        model: A causal LM (`transformers.PreTrainedModel`), in eval mode.
        tokenizer: Its tokenizer.
        prompts: Prompt texts, chat template already applied (see `data.render_prompt`).
        n: Samples per prompt.
        temperature: Sampling temperature (> 0); also the temperature of the recorded entropies.
        top_p: Nucleus sampling mass, in ``(0, 1]``.
        max_tokens: Maximum completion length.
        seed: Base seed; sample ``j`` of the prompt with key ``q`` draws from ``sample_seed(seed, q, j)``.
        batch_size: Prompts per ``generate`` call (each expands to ``n`` rows).
        entropy_top_k: ``k`` of the top-k entropy.
        sample_keys: An integer key per prompt (default: its position). Pass stable keys, such as the question's
            index in its benchmark, so that a prompt's samples do not depend on the call it is part of.
        dynamic: Sample each token at its own entropy-based temperature ([`DynamicTemperature`]; ``temperature``
            is then unused); the recorded entropies are those of the distributions sampled.

    Returns:
        For each prompt, its ``n`` records (``correct`` left as ``None``).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    keys = list(range(len(prompts))) if sample_keys is None else list(sample_keys)
    if len(keys) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but {len(keys)} sample keys")
    device = next(model.parameters()).device
    stop_ids = _stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    encoded = encode_prompts(tokenizer, prompts)
    results: list[list[SampleRecord]] = []
    for start in range(0, len(prompts), batch_size):
        batch = encoded[start : start + batch_size]
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, ids in enumerate(batch):  # left padding
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, width - len(ids) :] = 1
        processor = DynamicTemperatureProcessor(dynamic) if dynamic is not None else None
        sampler = SeededSampler(
            [sample_seed(seed, key, j) for key in keys[start : start + batch_size] for j in range(n)],
            temperature,
            top_p,
            dynamic=processor,
        )
        with capture_topk_entropies(model, k=entropy_top_k, temperature=temperature) as recorder:
            output = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                do_sample=True,
                num_return_sequences=n,
                max_new_tokens=max_tokens,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                repetition_penalty=1.0,
                logits_processor=[sampler],
                eos_token_id=stop_ids,
                pad_token_id=pad_id,
            )
        completions = [_trim_completion(row.tolist(), stop_ids, pad_id) for row in output[:, width:].cpu()]
        lengths = [len(c) for c in completions]
        temperatures = processor.temperatures() if processor is not None else None
        entropies = recorder.per_sequence(lengths, temperatures=temperatures)
        records = [
            make_record(tokenizer.decode(ids, skip_special_tokens=True), ids, ent)
            for ids, ent in zip(completions, entropies)
        ]
        results.extend(records[i * n : (i + 1) * n] for i in range(len(batch)))
    return results


def _trim_completion(ids: list[int], stop_ids: Sequence[int], pad_id: int) -> list[int]:
    """Generated ids up to and including the first stop token; trailing padding removed when there is none."""
    for i, token in enumerate(ids):
        if token in stop_ids:
            return ids[: i + 1]
    while ids and ids[-1] == pad_id:
        ids = ids[:-1]
    return ids


def _logprob_values(position: Any) -> list[float]:
    """Log-probabilities of one token position of a vLLM sample (``dict[token_id, Logprob]`` or floats)."""
    if position is None:
        raise ValueError("vLLM returned no log-probabilities for a token; request SamplingParams(logprobs=k)")
    values = position.values() if hasattr(position, "values") else position
    return [float(getattr(v, "logprob", v)) for v in values]


def records_from_vllm(
    outputs: Sequence[Any], temperature: float, entropy_top_k: int = DEFAULT_TOP_K
) -> list[list[SampleRecord]]:
    """Convert vLLM ``RequestOutput``s into records.

    Each ``output.outputs[j]`` (a ``CompletionOutput``) holds ``text``, ``token_ids`` (ending with the EOS token
    when the sample stopped on it) and ``logprobs``: per generated token, a dict ``token_id -> Logprob`` with the
    ``entropy_top_k`` most likely tokens plus the sampled one when it is not among them. vLLM's default
    ``logprobs_mode="raw_logprobs"`` returns them before temperature scaling, which the entropy applies.

    Args:
        outputs: The list returned by ``LLM.generate``, one per prompt.
        temperature: Sampling temperature of the request.
        entropy_top_k: ``k`` of the top-k entropy.
    """
    results = []
    for request in outputs:
        records = []
        for sample in request.outputs:
            if sample.logprobs is None:
                raise ValueError("vLLM output has no logprobs; sample with SamplingParams(logprobs=entropy_top_k)")
            token_ids = list(sample.token_ids)
            entropies = topk_entropy_from_logprobs(
                [_logprob_values(p) for p in sample.logprobs], k=entropy_top_k, temperature=temperature
            )
            if len(entropies) != len(token_ids):
                raise ValueError(f"vLLM returned {len(entropies)} logprob positions for {len(token_ids)} tokens")
            records.append(make_record(sample.text, token_ids, entropies))
        results.append(records)
    return results


def sample_vllm(
    llm: Any,
    prompts: Sequence[str],
    n: int,
    temperature: float,
    top_p: float,
    max_tokens: int,
    seed: int,
    entropy_top_k: int = DEFAULT_TOP_K,
    sample_keys: Sequence[int] | None = None,
    tokenizer: Any = None,
) -> list[list[SampleRecord]]:
    """Sample ``n`` completions per prompt with one ``vllm.LLM`` (same arguments and output as
    [`sample_transformers`]; the whole list is one ``generate`` call, vLLM batches it itself).

    The prompt with key ``q`` is one request with ``SamplingParams(seed=sample_seed(seed, q))``. Prompts are
    tokenized here (with ``tokenizer``, default ``llm.get_tokenizer()``) and passed as token ids, so both
    backends see the same tokens.

    On vLLM's CPU backend a seeded request whose prefill the scheduler splits across steps fails ("CPU Generator
    does not use offset": vLLM rewinds the request's generator after a partial prefill, which CPU generators
    cannot do), so there the prompts go in consecutive ``generate`` calls small enough for every prefill to fit in
    one scheduler step ([`prefill_batches`]); the records are the same, since each request has its own seed.
    """
    from vllm import SamplingParams

    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    keys = list(range(len(prompts))) if sample_keys is None else list(sample_keys)
    if len(keys) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but {len(keys)} sample keys")
    tokenizer = tokenizer if tokenizer is not None else llm.get_tokenizer()
    requests = [{"prompt_token_ids": ids} for ids in encode_prompts(tokenizer, prompts)]
    params = [
        SamplingParams(
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            logprobs=entropy_top_k,
            seed=sample_seed(seed, key),
        )
        for key in keys
    ]
    budget = _cpu_prefill_budget(llm)
    if budget is None:
        outputs = llm.generate(requests, params, use_tqdm=False)
    else:
        lengths = [len(r["prompt_token_ids"]) for r in requests]
        outputs = []
        for part in prefill_batches(lengths, n, *budget):
            outputs.extend(llm.generate(requests[part], params[part], use_tqdm=False))
    # An engine built with logprobs_mode="processed_logprobs" (as TRL builds its own) returns logprobs that are
    # already temperature-scaled; the default raw logprobs are not.
    processed = "processed" in str(_logprobs_mode(llm))
    return records_from_vllm(outputs, temperature=1.0 if processed else temperature, entropy_top_k=entropy_top_k)


def prefill_batches(
    lengths: Sequence[int], n: int, token_budget: int, max_seqs: int, max_prefill: int = 0
) -> list[slice]:
    """Consecutive batches of prompts whose prefills all fit in one vLLM scheduler step.

    A prompt of ``length`` tokens sampled ``n`` times is ``n`` requests of ``length`` prefill tokens. A batch holds
    at most ``token_budget`` prefill tokens and ``max_seqs`` requests, so the scheduler admits every request of a
    ``generate`` call whole in its first step and never splits a prefill.

    Args:
        lengths: Prompt lengths in tokens.
        n: Completions per prompt.
        token_budget: The scheduler's tokens per step (``max_num_scheduled_tokens`` or ``max_num_batched_tokens``).
        max_seqs: The scheduler's requests per step (``max_num_seqs``).
        max_prefill: The scheduler's cap on one request's prefill tokens per step (``long_prefill_token_threshold``;
            0 = none).

    Raises:
        ValueError: A prompt whose ``n`` prefills cannot fit in one step (naming the setting to raise).
    """
    batches: list[slice] = []
    start, tokens = 0, 0
    for i, length in enumerate(lengths):
        need = n * length
        if need > token_budget or n > max_seqs or 0 < max_prefill < length:
            raise ValueError(
                f"prompt {i} has {length} tokens and is sampled n={n} times: {need} prefill tokens and {n} requests "
                f"in one step, but vLLM's scheduler allows max_num_batched_tokens={token_budget}, max_num_seqs="
                f"{max_seqs}" + (f", long_prefill_token_threshold={max_prefill}" if max_prefill else "") + "; on the "
                "CPU backend a split prefill fails for seeded requests, so raise these settings of the vllm.LLM"
            )
        if i > start and (tokens + need > token_budget or (i - start + 1) * n > max_seqs):
            batches.append(slice(start, i))
            start, tokens = i, 0
        tokens += need
    if lengths:
        batches.append(slice(start, len(lengths)))
    return batches


def _cpu_prefill_budget(llm: Any) -> tuple[int, int, int] | None:
    """``(token_budget, max_seqs, max_prefill)`` of the engine's scheduler when it runs on vLLM's CPU backend with
    chunked prefill, else ``None`` (elsewhere a split prefill is harmless)."""
    vllm_config = getattr(getattr(llm, "llm_engine", None), "vllm_config", None)
    device = getattr(getattr(vllm_config, "device_config", None), "device_type", None)
    config = getattr(vllm_config, "scheduler_config", None)
    if device != "cpu" or config is None or not getattr(config, "enable_chunked_prefill", True):
        return None
    budget = getattr(config, "max_num_scheduled_tokens", None) or config.max_num_batched_tokens
    return int(budget), int(config.max_num_seqs), int(getattr(config, "long_prefill_token_threshold", 0) or 0)


def _logprobs_mode(llm: Any) -> Any:
    """The engine's ``logprobs_mode`` (``raw_logprobs`` unless it was built otherwise), read defensively."""
    config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
    return getattr(config, "logprobs_mode", "raw_logprobs")


def sample_records(
    backend: str,
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    settings: SamplingSettings,
    sample_keys: Sequence[int] | None = None,
) -> list[list[SampleRecord]]:
    """``settings.n`` records per prompt from [`sample_vllm`] (``backend="vllm"``, ``model`` a ``vllm.LLM``) or
    [`sample_transformers`]; the same record either way.

    Args:
        backend: ``"vllm"`` or ``"transformers"`` (resolve ``"auto"`` first with [`resolve_backend`]).
        model: A ``vllm.LLM`` or a causal LM in eval mode.
        tokenizer: The model's tokenizer (prompts are tokenized with it on both backends).
        prompts: Prompt texts, chat template already applied.
        settings: How to sample.
        sample_keys: One integer per prompt; the prompt's samples depend on ``(settings.seed, its key)`` only.
            Default: the prompt's position.
    """
    common = dict(
        n=settings.n,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_tokens=settings.max_tokens,
        seed=settings.seed,
        entropy_top_k=settings.entropy_top_k,
        sample_keys=sample_keys,
    )
    if backend == "vllm":
        check_vllm_sampling(settings.dynamic_temperature)
        return sample_vllm(model, prompts, **common, tokenizer=tokenizer)
    return sample_transformers(
        model, tokenizer, prompts, **common, batch_size=settings.batch_size, dynamic=settings.dynamic
    )


def check_vllm_sampling(dynamic_temperature: bool) -> None:
    """Refuse what the vLLM backend cannot sample with (``--dynamic_temperature``), in one line."""
    if dynamic_temperature:
        raise ValueError(
            "--dynamic_temperature runs on the transformers backend only (vLLM samples at one temperature per "
            "request); pass --backend transformers"
        )
