"""Sample n rollouts per task-world question with their top-k entropies, in the demo's prompt format, into a
samples file that `sasc-ttrl compare-votes` reads (the format of `sasc-ttrl eval`'s ``samples/<benchmark>.jsonl``).

The questions are `task_world.make_questions(n_questions, seed)`; the prompt is the demo's one-shot chat prompt
(`demo.chat_question`), which makes SmolLM2-135M-Instruct answer in one short line. Resumable: questions already
in the output are skipped (the evaluator's `sample_benchmark`: one line per question, fsynced; a torn last
line is dropped on rerun).

    python scripts/sample_task_world.py --model ~/.cache/sasc_ttrl/smollm2-135m-instruct --n_questions 200 --n 16 \\
        --output runs/votes/smollm2-task-world.jsonl                       # transformers
    .venv-vllm/bin/python scripts/sample_task_world.py ... --backend vllm  # the vLLM CPU environment
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sasc_ttrl.core.answers import DEFAULT_TIMEOUT_SECONDS
from sasc_ttrl.data.benchmarks import Question
from sasc_ttrl.demo.run import chat_question
from sasc_ttrl.demo.task_world import make_questions
from sasc_ttrl.sampling.benchmark import sample_benchmark
from sasc_ttrl.sampling.generation import SamplingSettings, sample_records
from sasc_ttrl.sampling.models import load_transformers_model, load_vllm


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

    rows = [chat_question(q, "word_problems") for q in make_questions(args.n_questions, seed=args.question_seed)]
    messages = {row["id"]: row["messages"] for row in rows}
    questions = [Question(row["id"], i, row["question"], row["answer"]) for i, row in enumerate(rows)]
    if args.backend == "vllm":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.model)
        model = load_vllm(args.model, seed=args.seed, dtype="float32", enable_prefix_caching=True)
    else:
        model, tokenizer = load_transformers_model(args.model, dtype="float32")

    def sampler(chunk: list[Question]):
        prompts = [
            tokenizer.apply_chat_template(messages[q.key], tokenize=False, add_generation_prompt=True) for q in chunk
        ]
        return sample_records(args.backend, model, tokenizer, prompts, settings, sample_keys=[q.index for q in chunk])

    settings = SamplingSettings.from_arguments(args, n=args.n)  # top_p 1.0 and top-20 entropies: the defaults
    # The evaluator's loop: skips questions already in the file, appends and fsyncs one line per question.
    sample_benchmark("task world", questions, Path(args.output), sampler, args.batch_size, DEFAULT_TIMEOUT_SECONDS)


if __name__ == "__main__":
    main()
