"""Peak extra memory and time of the top-k entropy vs full-vocabulary entropy, on synthetic logits.

Logits of shape ``(T, 151936)`` (Qwen2.5's vocabulary) for T = 1k / 4k / 16k tokens are made once per length;
three ways of reducing them to one entropy per token are then measured on the same tensor:

* **top-k** -- `sasc_ttrl.sampling.entropy.topk_entropy_from_logits` (k = 20, 1024-row chunks), the project's code;
* **full, same chunks** -- the same 1024-row loop with the softmax over the whole vocabulary;
* **full, TRL** -- TRL's own `trl.trainer.utils.entropy_from_logits` (128-row chunks), what GRPOTrainer computes.

"Extra" memory is what a call allocates beyond the logits, which the model has produced anyway. Method: the peak
resident set size of the process (Linux ``VmHWM``) is reset (``/proc/self/clear_refs``) right before the call and
read right after; extra = peak - resident size before the call. The script re-runs itself with
``MALLOC_MMAP_THRESHOLD_=65536`` so that every buffer above 64 KiB is mapped fresh and returned on free: memory
freed by an earlier call cannot hide a later call's allocations. Memory is taken from the first call of each
variant, time is the median of the repetitions, run interleaved (A B C A B C ...).

16k tokens: fp32 logits alone would be 9.7 GB on a shared 23 GB machine. The extra memory of the chunked code does
not grow with T (only its T-float output does), so by default 16k uses bf16 logits (4.9 GB, the dtype a bf16
model's head returns); ``--dtypes`` changes it.

Command (writes its figures to BENCHMARKS.md)::

    python benchmarks/entropy_memory.py            # --quick for a seconds-long smoke run
"""

from __future__ import annotations

import os
import sys

if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # see the docstring: must be set before the process starts
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import re  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import record  # noqa: E402 - sets OMP_NUM_THREADS
import torch  # noqa: E402
from trl.trainer.utils import entropy_from_logits  # noqa: E402

from sasc_ttrl.sampling.entropy import entropy_of_logits, topk_entropy_from_logits

TARGET_FACTOR = 100.0
TARGET_LENGTH = 4096
QWEN_VOCAB = 151_936
CHUNK_ROWS = 1024  # topk_entropy_from_logits's default chunk


@dataclass
class EntropyMemoryArguments(record.RecordingArguments):
    """Arguments of the entropy-memory benchmark."""

    lengths: list[int] = field(default_factory=lambda: [1024, 4096, 16384], metadata={"help": "Tokens T."})
    dtypes: list[str] = field(
        default_factory=lambda: ["float32", "float32", "bfloat16"],
        metadata={"help": "Logits dtype per length (float32, bfloat16, float16)."},
    )
    vocab: int = field(default=QWEN_VOCAB, metadata={"help": "Vocabulary size."})
    k: int = field(default=20, metadata={"help": "Top-k of the local entropy."})
    repeats: int = field(default=5, metadata={"help": "Timed repetitions per variant; the median is reported."})
    quick: bool = field(
        default=False, metadata={"help": "Short lengths, a 32k vocabulary, 2 repetitions: the smoke test."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.quick:
            self.lengths, self.dtypes, self.vocab, self.repeats = [64, 128], ["float32", "bfloat16"], 32768, 2
        if len(self.dtypes) != len(self.lengths):
            raise ValueError(f"--dtypes has {len(self.dtypes)} entries for {len(self.lengths)} --lengths")
        for name in self.dtypes:
            if not isinstance(getattr(torch, name, None), torch.dtype):
                raise ValueError(f"--dtypes: {name!r} is not a torch dtype")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")


def full_entropy_same_chunks(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Full-vocabulary entropy with the chunking and dtype handling of `topk_entropy_from_logits`."""
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.empty(flat.shape[0], dtype=torch.float32)
    for start in range(0, flat.shape[0], CHUNK_ROWS):
        out[start : start + CHUNK_ROWS] = entropy_of_logits(flat[start : start + CHUNK_ROWS].float() / temperature)
    return out.reshape(logits.shape[:-1])


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as handle:
        match = re.search(rf"^{key}:\s+(\d+) kB", handle.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {key} line: peak memory cannot be measured here")
    return int(match.group(1))


def peak_extra_bytes(func, logits: torch.Tensor) -> int:
    """Peak resident memory a call adds beyond what the process held before it (VmHWM after a reset)."""
    before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the peak (VmHWM) to the current resident size
    out = func(logits)
    peak = _status_kb("VmHWM")
    del out
    return max(0, peak - before) * 1024


def make_logits(length: int, vocab: int, dtype: torch.dtype) -> torch.Tensor:
    """Random logits, filled chunk by chunk so that no fp32 temporary of the whole tensor exists."""
    logits = torch.empty(length, vocab, dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    for start in range(0, length, CHUNK_ROWS):
        rows = logits[start : start + CHUNK_ROWS]
        rows.copy_(torch.randn(rows.shape, generator=generator) * 3.0)
    return logits


def run(args: EntropyMemoryArguments) -> list[dict]:
    """One row per (length, variant): extra memory, median time."""
    torch.set_num_threads(record.THREADS)
    variants = {
        f"top-k (k={args.k})": lambda x: topk_entropy_from_logits(x, k=args.k, temperature=1.0),
        "full, same chunks": full_entropy_same_chunks,
        "full, TRL entropy_from_logits": entropy_from_logits,
    }
    rows = []
    for length, dtype_name in zip(args.lengths, args.dtypes):
        logits = make_logits(length, args.vocab, getattr(torch, dtype_name))
        for func in variants.values():  # first use pages in kernel code and lazy state: not the call's memory
            func(logits[:2])
        extra = {name: peak_extra_bytes(func, logits) for name, func in variants.items()}
        times: dict[str, list[float]] = {name: [] for name in variants}
        with torch.no_grad():
            for _ in range(args.repeats):
                for name, func in variants.items():
                    start = time.perf_counter()
                    func(logits)
                    times[name].append(time.perf_counter() - start)
        for name in variants:
            rows.append(
                {
                    "length": length,
                    "dtype": dtype_name,
                    "logits_bytes": logits.numel() * logits.element_size(),
                    "variant": name,
                    "extra_bytes": extra[name],
                    "seconds": record.median(times[name]),
                }
            )
        del logits
    return rows


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def report(args: EntropyMemoryArguments, rows: list[dict]) -> record.Figures:
    """The markdown figures (per length and variant, extra memory and time, the factors against top-k) and their
    headline: the factors at the target's length (the longest when it was not measured)."""
    table, verdicts, factors = [], [], {}
    for row in rows:
        topk = next(r for r in rows if r["length"] == row["length"] and r["variant"].startswith("top-k"))
        factor = row["extra_bytes"] / max(topk["extra_bytes"], 1)
        if row is not topk:
            factors.setdefault((row["length"], row["dtype"]), []).append((row["variant"], factor))
        table.append(
            [
                f"{row['length']:,}",
                row["dtype"],
                _mb(row["logits_bytes"]),
                row["variant"],
                _mb(row["extra_bytes"]),
                f"{factor:,.0f}x" if row is not topk else "1x",
                f"{row['seconds']:.3f}",
                f"{row['seconds'] / topk['seconds']:.2f}",
            ]
        )
        if row["length"] == TARGET_LENGTH and row is not topk:
            ok = "met" if factor >= TARGET_FACTOR else "MISSED"
            verdicts.append(f"{row['variant']}: {factor:,.0f}x more extra memory than top-k (target >= 100x, {ok})")
    lines = [
        f"Vocabulary {args.vocab:,}; time = median of {args.repeats} interleaved repetitions; extra memory = peak "
        "resident memory above the resident size before the call (VmHWM reset per call), first call of each variant.",
        "",
        record.markdown_table(
            [
                "tokens",
                "logits dtype",
                "logits MB",
                "entropy",
                "peak extra MB",
                "extra vs top-k",
                "median s",
                "time vs top-k",
            ],
            table,
        ),
    ]
    if verdicts:
        lines += ["", f"At {TARGET_LENGTH:,} tokens: " + "; ".join(verdicts) + "."]
    length, dtype = next((key for key in factors if key[0] == TARGET_LENGTH), max(factors))
    named = [f"{f:,.0f}x ({'TRL' if 'TRL' in variant else 'same chunks'})" for variant, f in factors[(length, dtype)]]
    headline = {
        "setting": f"vocabulary {args.vocab:,}; {length:,} tokens, {dtype}",
        "figure": "extra memory vs top-k: " + ", ".join(named),
    }
    if length == TARGET_LENGTH:  # the target is set at that length only
        met = all(f >= TARGET_FACTOR for _, f in factors[(length, dtype)])
        headline.update(target=f">= {TARGET_FACTOR:g}x", verdict="met" if met else "MISSED")
    return record.Figures("\n".join(lines), headline)


def main(args: EntropyMemoryArguments) -> None:
    """Run, print the figures, record them unless the machine was loaded."""
    record.measure_and_record(
        args, "entropy_memory", "Entropy memory: top-k vs full vocabulary", lambda: report(args, run(args))
    )


if __name__ == "__main__":
    from trl import TrlParser

    main(*TrlParser((EntropyMemoryArguments,)).parse_args_and_config())
