"""What SASC's top-20 logprobs cost in vLLM generation, against TRL's sampled-token logprob (run in the vLLM env).

GRPOTrainer asks vLLM for ``logprobs=0`` (the sampled token's logprob, for the importance-sampling correction);
SASCTrainer asks for ``logprobs=20`` and reduces the returned lists to per-token entropies. Four variants on one
engine, the same prompts, seed and length, one after the other in every repetition (A B C D A B C D ...):

* **A: TTRL** -- what `GRPOTrainer`'s colocated vLLM branch does: ``SamplingParams(logprobs=0, ...)``, TRL's
  ``extract_logprobs``, then the first logprob of every token;
* **B: SASC, text** -- ``logprobs=20`` with vLLM's default ``detokenize=True`` (SASCTrainer before issue 20), then
  ``extract_logprobs``, `entropies_from_topk` and `sampled_token_logprobs` (SASCTrainer's `_generate_vllm_topk`);
* **C: SASC** -- the same with the request SASCTrainer sends now: ``detokenize=False``
  (`sasc_ttrl.sampling.vllm_topk.sasc_sampling_overrides`), so vLLM does not turn the 21 token ids of every position
  (and the completion, which TRL never reads in colocate mode) into text;
* **D: TTRL, no text** -- A with ``detokenize=False``: C / D is the cost of the 20 logprobs alone.

The request mirrors TRL's colocated engine: one request per rollout (``n=1``, each prompt repeated), temperature 1,
no top-p / top-k / min-p, ``LLM(logprobs_mode="processed_logprobs", max_num_batched_tokens=4096)``; float32, eager
mode, the engine in this process (what TRL's colocate mode does too). ``torch.manual_seed`` before every call makes
every variant sample the same tokens (checked). The breakdown times vLLM's and TRL's functions by wrapping them.

Command (writes its figures to BENCHMARKS.md; run with the vLLM environment's python)::

    python benchmarks/vllm_logprobs.py                     # the tiny model (built if missing)
    python benchmarks/vllm_logprobs.py --model ~/.cache/sasc_ttrl/smollm2-135m-instruct
"""

from __future__ import annotations

import record  # sets OMP_NUM_THREADS

record.set_vllm_cpu_environment()  # before torch and vLLM are imported

import logging  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from sasc_ttrl.data.prompts import render_prompt  # noqa: E402
from sasc_ttrl.sampling.generation import encode_prompts  # noqa: E402
from sasc_ttrl.sampling.vllm_topk import (  # noqa: E402
    entropies_from_topk,
    sampled_token_logprobs,
    sasc_sampling_overrides,
)

TARGET_RATIO = 1.05
TOP_K = 20
TTRL, SASC_TEXT, SASC, TTRL_NO_TEXT = "A: TTRL", "B: SASC, text", "C: SASC", "D: TTRL, no text"
VARIANTS = {  # name: (logprobs, SamplingParams overrides)
    TTRL: (0, {}),
    SASC_TEXT: (TOP_K, {}),
    SASC: (TOP_K, sasc_sampling_overrides({})),
    TTRL_NO_TEXT: (0, {"detokenize": False}),
}
# (part, what it measures); "generate" is the whole call, the vLLM parts are timed inside it.
PARTS = [
    ("total", "generate + TRL's extraction + SASC's reduction (what the trainer waits for)"),
    (
        "garbage collection",
        "Python's garbage collector, wherever it ran (taken out of the parts below; it runs when enough container "
        "objects were allocated)",
    ),
    ("generate", "`LLM.generate` (prefill, decoding, sampler, output processing)"),
    ("sampler top-k", "`Sampler.gather_logprobs`: top-k of the vocabulary row and the sampled token's rank"),
    ("to arrays", "`LogprobsTensors.tolists`: the logprob tensors as numpy arrays (the device transfer on a GPU)"),
    ("logprob dicts", "`LogprobsProcessor._update_sample_logprobs`: a `dict[id, Logprob]` per token, in Python"),
    ("  of which token text", "`convert_ids_list_to_tokens`: the text of every returned logprob's token"),
    ("completion text", "the incremental detokenizer of the completions (`update`)"),
    ("extract", "TRL's `extract_logprobs`: the dicts as rank-sorted lists"),
    ("entropies", "`entropies_from_topk` (SASC)"),
    ("sampled logprob", "`sampled_token_logprobs` (SASC) / `lp[0]` per token (TTRL)"),
]


@dataclass
class VllmLogprobsArguments(record.RecordingArguments):
    """Arguments of the vLLM logprobs benchmark."""

    model: str | None = field(
        default=None, metadata={"help": "Model folder; default: the tiny model (built in the cache if missing)."}
    )
    prompts: int = field(default=2, metadata={"help": "Prompts per call."})
    generations: int = field(default=8, metadata={"help": "Rollouts per prompt (one request each, as TRL sends)."})
    max_tokens: int = field(default=64, metadata={"help": "Maximum completion tokens."})
    repeats: int = field(default=5, metadata={"help": "Repetitions of the four variants; medians are reported."})
    seed: int = field(default=0, metadata={"help": "Seed of every call's sampling."})
    quick: bool = field(default=False, metadata={"help": "Tiny configuration for the smoke test."})

    def __post_init__(self):
        super().__post_init__()
        if self.quick:
            self.prompts, self.generations, self.max_tokens, self.repeats = 1, 2, 8, 2
        if min(self.prompts, self.generations, self.max_tokens, self.repeats) < 1:
            raise ValueError("prompts, generations, max_tokens and repeats must be >= 1")


def make_engine(model_dir: str, num_seqs: int):
    """A vLLM engine built as TRL's colocate mode builds it (processed logprobs), float32, eager, in-process."""
    from sasc_ttrl.sampling.models import load_vllm

    return load_vllm(
        model_dir,
        seed=0,
        entropy_top_k=TOP_K,
        dtype="float32",
        logprobs_mode="processed_logprobs",
        max_model_len=512,
        max_num_seqs=num_seqs,
        max_num_batched_tokens=4096,
        enforce_eager=True,
        distributed_executor_backend="uni",
    )


def install_timers(timers: record.Timers) -> None:
    """Wrap the vLLM functions whose time the breakdown reports."""
    import vllm.v1.engine.logprobs as logprobs_module
    from vllm.v1.engine.detokenizer import BaseIncrementalDetokenizer
    from vllm.v1.outputs import LogprobsTensors
    from vllm.v1.sample.sampler import Sampler

    timers.wrap(logprobs_module.LogprobsProcessor, "_update_sample_logprobs", "logprob dicts")
    timers.wrap(logprobs_module, "convert_ids_list_to_tokens", "  of which token text")
    timers.wrap(LogprobsTensors, "tolists", "to arrays")
    timers.wrap(BaseIncrementalDetokenizer, "update", "completion text")
    original = Sampler.__dict__["gather_logprobs"]  # a staticmethod: wrap its function, keep it static
    timers._originals.append((Sampler, "gather_logprobs", original))
    Sampler.gather_logprobs = staticmethod(timers.timed("sampler top-k", original.__func__))


def run(args: VllmLogprobsArguments) -> dict:
    """Median seconds per variant and part, tokens, and whether every variant sampled the same tokens."""
    import vllm
    from transformers import AutoConfig, AutoTokenizer
    from trl.generation.vllm_generation import extract_logprobs
    from vllm import SamplingParams

    torch.set_num_threads(record.THREADS)
    model_dir = args.model or str(record.tiny_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    questions = [f"What is {a} + {a + 3}?" for a in range(args.prompts)]
    prompt_ids = encode_prompts(tokenizer, [render_prompt(q, tokenizer) for q in questions])
    requests = [{"prompt_token_ids": ids} for ids in prompt_ids for _ in range(args.generations)]
    llm = make_engine(model_dir, len(requests))
    timers = record.Timers(gc_aware=True)
    extract = timers.timed("extract", extract_logprobs)
    entropies_of = timers.timed("entropies", entropies_from_topk)
    sampled_of = timers.timed("sampled logprob", sampled_token_logprobs)

    def ttrl_first(logprobs):
        return [[lp[0] for lp in seq] for seq in logprobs]

    first_of = timers.timed("sampled logprob", ttrl_first)

    def call(variant: str):
        logprobs, overrides = VARIANTS[variant]
        params = SamplingParams(
            n=1,
            repetition_penalty=1.0,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            min_p=0.0,
            max_tokens=args.max_tokens,
            logprobs=logprobs,
            **overrides,
        )
        torch.manual_seed(args.seed)
        outputs = timers.timed("generate", llm.generate)(requests, params, use_tqdm=False)
        completion_ids = [list(o.token_ids) for out in outputs for o in out.outputs]
        topk_logprobs, topk_ids = extract(outputs)
        if logprobs == 0:
            return completion_ids, first_of(topk_logprobs), None
        entropies = entropies_of(topk_logprobs, k=TOP_K, temperature=1.0)
        return completion_ids, sampled_of(topk_logprobs, topk_ids, completion_ids), entropies

    per_rep: dict[tuple[str, str], list[float]] = {}
    samples: dict[str, set] = {v: set() for v in VARIANTS}
    tokens: set[int] = set()
    values: dict[str, set] = {v: set() for v in VARIANTS}
    install_timers(timers)
    try:
        for variant in VARIANTS:  # untimed warm-up of every variant
            call(variant)
        for _ in range(args.repeats):
            for variant in VARIANTS:
                timers.variant = variant
                before = timers.snapshot()
                start = time.perf_counter()
                completion_ids, sampled, entropies = call(variant)
                timers.add("total", time.perf_counter() - start)  # with the collector's pauses
                after = timers.snapshot()
                for part, _ in PARTS:
                    key = (variant, part)
                    per_rep.setdefault(key, []).append(after.get(key, 0.0) - before.get(key, 0.0))
                samples[variant].add(repr(completion_ids))
                tokens.add(sum(len(c) for c in completion_ids))
                values[variant].add(repr((sampled, entropies)))
    finally:
        timers.restore()
    model_config = AutoConfig.from_pretrained(model_dir)
    shown = str(model_dir).replace(str(Path.home()), "~", 1)
    totals = {v: per_rep[(v, "total")] for v in VARIANTS}
    return {
        "medians_ms": {key: 1000 * record.median(vals) for key, vals in per_rep.items()},
        "pair_ratio": {
            (b, a): record.median([y / x for x, y in zip(totals[a], totals[b])]) for a in VARIANTS for b in VARIANTS
        },
        "tokens": max(tokens),
        "same_tokens": len(set().union(*samples.values())) == 1,
        "same_sasc_values": len(values[SASC_TEXT] | values[SASC]) == 1,
        "model": f"`{shown}` ({model_config.num_hidden_layers} layers, vocabulary {model_config.vocab_size:,})",
        "vllm": vllm.__version__,
    }


def report(args: VllmLogprobsArguments, result: dict) -> record.Figures:
    """The markdown figures (tokens/s and ratios, the target's verdict, the per-part breakdown) and their headline."""
    med, tokens = result["medians_ms"], result["tokens"]
    rows = []
    for variant in VARIANTS:
        total = med[(variant, "total")]
        rows.append(
            [
                variant,
                f"{total / 1000:.3f}",
                f"{tokens / total * 1000:,.0f}",
                f"{total / med[(TTRL, 'total')]:.3f}",
                f"{result['pair_ratio'][(variant, TTRL)]:.3f}",
            ]
        )
    ratio = med[(SASC, "total")] / med[(TTRL, "total")]
    own = med[(SASC, "total")] / med[(TTRL_NO_TEXT, "total")]
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    breakdown = []
    for part, meaning in PARTS:
        cells = [f"{med.get((v, part), 0.0):.1f}" for v in VARIANTS]
        per_token = (med.get((SASC_TEXT, part), 0.0) - med.get((TTRL, part), 0.0)) / tokens * 1000
        breakdown.append([part, meaning, *cells, f"{per_token:+.1f}"])
    same = "identical in every variant and repetition" if result["same_tokens"] else "NOT identical across variants"
    same_values = "identical" if result["same_sasc_values"] else "NOT identical"
    headline = {
        "model": Path(args.model or "tiny-model").name,
        "setting": f"{args.prompts} prompts x {args.generations} rollouts, up to {args.max_tokens} tokens, "
        f"top-{TOP_K} logprobs",
        "figure": f"C / A {ratio:.3f} (C / D {own:.3f})",
        "target": f"<= {TARGET_RATIO}",
        "verdict": verdict,
    }
    body = "\n".join(
        [
            f"Model {result['model']}, vLLM {result['vllm']} (CPU); {args.prompts} prompts x {args.generations} "
            f"rollouts (one request each), up to {args.max_tokens} tokens, top-{TOP_K} logprobs; median of "
            f"{args.repeats} interleaved repetitions. Completion tokens per call: {tokens:,} ({same}); SASC's "
            f"entropies and sampled-token logprobs with and without text: {same_values}.",
            "",
            record.markdown_table(
                ["SASC / TTRL generation (C / A)", "logprobs alone (C / D)", "target", "verdict"],
                [[f"{ratio:.3f}", f"{own:.3f}", f"<= {TARGET_RATIO}", verdict]],
            ),
            "",
            record.markdown_table(
                ["variant", "median s", "tokens/s", "time vs A", "median of per-pair ratios vs A"], rows
            ),
            "",
            record.markdown_table(
                ["part", "what", *[f"{v.split(':')[0]} ms" for v in VARIANTS], "B - A us/token"], breakdown
            ),
        ]
    )
    return record.Figures(body, headline)


def main(args: VllmLogprobsArguments) -> None:
    """Run, print the figures, record them unless the machine was loaded (one block per model)."""
    warnings.filterwarnings("ignore")
    logging.getLogger("vllm").setLevel(logging.WARNING)
    name = "vllm_logprobs" if args.model is None else "vllm_logprobs_" + Path(args.model).name
    title = f"vLLM generation: top-{TOP_K} logprobs vs the sampled token's ({Path(args.model or 'tiny-model').name})"
    record.measure_and_record(args, name, title, lambda: report(args, run(args)), family="vllm_logprobs")


if __name__ == "__main__":
    from trl import TrlParser

    main(*TrlParser((VllmLogprobsArguments,)).parse_args_and_config())
