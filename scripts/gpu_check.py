"""The steps of `scripts/gpu_check.sh` (a GPU user's first ten minutes); see that script for the order.

    python scripts/gpu_check.py preflight MODEL_PATH RECIPE   # versions, pip check, the model path, a GPU
    python scripts/gpu_check.py vllm MODEL_PATH               # one vLLM generation with 20 logprobs, sleep / wake
    accelerate launch --num_processes 1 --config_file accelerate_configs/zero3.yaml \\
        scripts/gpu_check.py train MODEL_PATH RECIPE          # two updates of the recipe, colocated vLLM

Each step prints ``ok ...`` lines, or one ``gpu_check: error: ...`` line and exits non-zero (2: bad arguments,
3: no GPU, 1: a check failed).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

PACKAGES = ("torch", "transformers", "trl", "accelerate", "deepspeed", "vllm", "peft", "math-verify", "sasc-ttrl")
TOP_K = 20


class CheckError(Exception):
    """A failed check: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def check_model_path(model: str) -> str:
    """``model`` as given when it is a local model folder (with ``config.json``) or a hub id (``org/name``).

    Raises:
        CheckError: (exit 2) for a path that does not exist or holds no ``config.json``.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckError(f"MODEL_PATH {model}: a folder without config.json (not a transformers model)", 2)
        return str(path.resolve())
    looks_local = model.startswith((".", "/", "~")) or model.count("/") != 1
    if looks_local:
        raise CheckError(f"MODEL_PATH {model}: no such folder (a hub id is written org/name)", 2)
    return model


def versions() -> dict[str, str | None]:
    """Installed version of each package the GPU recipes use (None when missing)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def preflight(model: str, recipe: str) -> None:
    """Print versions and ``pip check``; check the model path and the recipe; require a CUDA GPU (exit 3)."""
    model = check_model_path(model)
    if not Path(recipe).is_file():
        raise CheckError(f"recipe {recipe}: no such file", 2)
    for name, version in versions().items():
        print(f"{'ok' if version else 'MISSING'} {name} {version or ''}".rstrip())
    pip = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    for line in (pip.stdout + pip.stderr).strip().splitlines():
        print(f"pip check: {line}")
    import torch

    if not torch.cuda.is_available():
        raise CheckError(
            f"no CUDA GPU is visible (torch {torch.__version__}, CUDA build {torch.version.cuda}): the vLLM and "
            "training checks need one",
            3,
        )
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        print(f"ok GPU {i}: {props.name}, {props.total_memory / 2**30:.1f} GiB")
    print(f"ok model {model}")


def check_topk_positions(logprobs: list, token_ids: list, completion_ids: list, k: int = TOP_K) -> int:
    """Check every generated token's logprobs: k or k+1 entries, the sampled id among them. Returns the tokens seen.

    Raises:
        CheckError: naming the completion and token.
    """
    tokens = 0
    for seq, (lps, ids, sampled) in enumerate(zip(logprobs, token_ids, completion_ids, strict=True)):
        for pos, (values, entry_ids, token) in enumerate(zip(lps, ids, sampled, strict=True)):
            if len(values) not in (k, k + 1) or len(entry_ids) != len(values):
                raise CheckError(f"completion {seq}, token {pos}: {len(values)} logprobs, expected {k} or {k + 1}")
            if token not in entry_ids:
                raise CheckError(f"completion {seq}, token {pos}: the sampled id {token} is not among its logprobs")
            tokens += 1
    return tokens


def vllm_check(model: str) -> None:
    """One generation with 20 logprobs per token (TRL's colocated settings), then sleep, wake and generate again."""
    from trl.generation.vllm_generation import extract_logprobs
    from vllm import LLM, SamplingParams

    model = check_model_path(model)
    llm = LLM(
        model=model, gpu_memory_utilization=0.3, max_model_len=4096, enable_sleep_mode=True,
        logprobs_mode="processed_logprobs", max_logprobs=TOP_K, seed=0,
    )  # fmt: skip
    params = SamplingParams(n=4, temperature=1.0, max_tokens=256, logprobs=TOP_K, seed=0)
    prompts = ["What is 17 * 23? Put the answer in \\boxed{}.", "Compute 2^10 - 1. Put the answer in \\boxed{}."]
    for attempt in ("first", "after sleep and wake"):
        start = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        logprobs, token_ids = extract_logprobs(outputs)
        completions = [list(s.token_ids) for out in outputs for s in out.outputs]
        tokens = check_topk_positions(logprobs, token_ids, completions)
        print(
            f"ok vLLM generation ({attempt}): {len(completions)} completions, {tokens} tokens with {TOP_K}-"
            f"{TOP_K + 1} logprobs each, the sampled id always among them, {time.perf_counter() - start:.1f} s"
        )
        if attempt == "first":
            llm.sleep(level=1)
            llm.wake_up()
            print("ok vLLM sleep(level=1) and wake_up()")


def train_argv(model: str, recipe: str, output_dir: str) -> list[str]:
    """The training command's arguments: the recipe, its model replaced, two updates, nothing saved, and TRL's
    importance-sampling mask switched on in its default mode so that its effect can be measured."""
    return [
        "--config", recipe, "--model_name_or_path", model, "--output_dir", output_dir, "--max_steps", "2",
        "--save_strategy", "no", "--report_to", "none", "--logging_steps", "1", "--log_completions", "false",
        "--vllm_importance_sampling_correction", "true", "--vllm_importance_sampling_mode", "sequence_mask",
    ]  # fmt: skip


def masked_share(ratio) -> float:
    """Share of sequences TRL's ``sequence_mask`` drops: rows whose importance-sampling ratio was set to 0."""
    flat = ratio.reshape(ratio.shape[0], -1)
    return float((flat == 0).all(dim=1).float().mean())


def train_check(model: str, recipe: str) -> None:
    """Two updates of ``recipe`` on this process (ZeRO-3 and colocated vLLM come from the accelerate config and the
    recipe): peak GPU memory, where the time went, the clipped share and the share the IS mask drops."""
    import torch

    from sasc_ttrl.commands.train import main, make_parser
    from sasc_ttrl.training.trainer import SASCTrainer

    seconds: dict[str, float] = defaultdict(float)
    shares: list[float] = []

    def timed(name, method):
        def wrapper(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - start

        return wrapper

    score = SASCTrainer._generate_and_score_completions

    def scored(self, inputs):
        output = score(self, inputs)
        if "importance_sampling_ratio" in output:
            shares.append(masked_share(output["importance_sampling_ratio"]))
        return output

    SASCTrainer._generate_and_score_completions = timed("generate, vote and score (total)", scored)
    SASCTrainer._generate_single_turn = timed("  vLLM generation", SASCTrainer._generate_single_turn)
    SASCTrainer._calculate_rewards = timed("  rewards (the vote)", SASCTrainer._calculate_rewards)
    SASCTrainer.training_step = timed("training steps (forward + backward, incl. scoring)", SASCTrainer.training_step)
    model = check_model_path(model)
    with tempfile.TemporaryDirectory() as out:
        script_args, training_args, model_args = make_parser().parse_args_and_config(
            args=train_argv(model, recipe, out)
        )
        torch.cuda.reset_peak_memory_stats()
        trainer = main(script_args, training_args, model_args)
        peak = torch.cuda.max_memory_allocated() / 2**30
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    print(f"ok trained {trainer.state.global_step} updates: {trainer.rollout_schedule().describe()}")
    print(f"ok peak GPU memory allocated by torch: {peak:.1f} GiB (vLLM's own share comes on top of its pool)")
    for name, value in seconds.items():
        print(f"ok time: {name}: {value:.1f} s")
    for entry in logs:
        keys = ("completions/clipped_ratio", "completions/mean_length", "sampling/importance_sampling_ratio/min")
        print("ok step", entry.get("step"), json.dumps({k: entry.get(k) for k in keys}))
    if shares:
        print(
            f"ok TRL's sequence_mask (clip_max 3) would drop {100 * sum(shares) / len(shares):.1f}% of the "
            "sequences (the recipes leave it off, as TTRL)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    for name in ("preflight", "train"):
        p = sub.add_parser(name)
        p.add_argument("model")
        p.add_argument("recipe")
    sub.add_parser("vllm").add_argument("model")
    args = parser.parse_args(argv)
    try:
        if args.step == "preflight":
            preflight(args.model, args.recipe)
        elif args.step == "vllm":
            vllm_check(args.model)
        else:
            train_check(args.model, args.recipe)
    except CheckError as error:
        print(f"gpu_check: error: {error}", file=sys.stderr)
        return error.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
