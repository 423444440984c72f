"""Sample n rollouts per task-world question with their top-k entropies, in the demo's prompt format, into a
samples file that `sasc-ttrl compare-votes` reads (the format of `sasc-ttrl eval`'s ``samples/<benchmark>.jsonl``).

The questions are `task_world.make_questions(n_questions, seed)`; the prompt is the demo's one-shot chat prompt
(`demo.chat_question`), which makes SmolLM2-135M-Instruct answer in one short line. Resumable: questions already
in the output are skipped (lines are appended and flushed per batch; a torn last line is dropped on rerun).

    python scripts/sample_task_world.py --model ~/.cache/sasc_ttrl/smollm2-135m-instruct --n_questions 200 --n 16 \\
        --output runs/votes/smollm2-task-world.jsonl                       # transformers
    .venv-vllm/bin/python scripts/sample_task_world.py ... --backend vllm  # the vLLM CPU environment
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from tqdm.auto import tqdm

from sasc_ttrl.demo import chat_question
from sasc_ttrl.evaluate import ENTROPY_DECIMALS, read_samples
from sasc_ttrl.generation import grade_records, load_transformers_model, load_vllm, sample_records
from sasc_ttrl.task_world import make_questions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Model path or hub name.")
    parser.add_argument("--n_questions", type=int, default=200)
    parser.add_argument("--question_seed", type=int, default=0, help="Seed of the task-world generator.")
    parser.add_argument("--n", type=int, default=16, help="Rollouts per question.")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--max_tokens", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed (question i uses (seed, i, j)).")
    parser.add_argument("--batch_size", type=int, default=2, help="Questions per generation call.")
    parser.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    parser.add_argument("--output", required=True, help="Samples JSONL to write (appended; resumable).")
    args = parser.parse_args()

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    done = read_samples(output)
    questions = [chat_question(q, "word_problems") for q in make_questions(args.n_questions, seed=args.question_seed)]
    todo = [(i, q) for i, q in enumerate(questions) if q["id"] not in done]
    if args.backend == "vllm":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.model)
        model = load_vllm(args.model, seed=args.seed, dtype="float32", enable_prefix_caching=True)
    else:
        model, tokenizer = load_transformers_model(args.model, dtype="float32")
    with open(output, "a", encoding="utf-8") as handle:
        for start in tqdm(range(0, len(todo), args.batch_size), desc="task world", unit="batch"):
            chunk = todo[start : start + args.batch_size]
            prompts = [
                tokenizer.apply_chat_template(q["messages"], tokenize=False, add_generation_prompt=True)
                for _, q in chunk
            ]
            records = sample_records(
                args.backend,
                model,
                tokenizer,
                prompts,
                n=args.n,
                temperature=args.temperature,
                top_p=1.0,
                max_tokens=args.max_tokens,
                seed=args.seed,
                batch_size=len(chunk),
                sample_keys=[i for i, _ in chunk],
            )
            for (_, q), recs in zip(chunk, records):
                grade_records(recs, q["answer"])
                samples = [r.to_dict(entropy_decimals=ENTROPY_DECIMALS) for r in recs]
                line = {"id": q["id"], "question": q["question"], "gold": q["answer"], "samples": samples}
                handle.write(json.dumps(line) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


if __name__ == "__main__":
    main()
