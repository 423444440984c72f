"""Run by tests/training/test_distributed.py under ``torchrun --nproc_per_node 2``: each rank scores its slice."""

import json
import sys

import torch
from accelerate import PartialState

from sasc_ttrl.training.distributed import destroy_process_group
from sasc_ttrl.training.rewards import get_reward_funcs

if __name__ == "__main__":
    data = json.loads(open(sys.argv[1]).read())
    out_dir = sys.argv[2]
    # On CPU, accelerate sets up gloo only when asked for the CPU (TrainingArguments(use_cpu=True) does so).
    state = PartialState(cpu=not torch.cuda.is_available())
    n = len(data["completions"]) // state.num_processes
    local = slice(state.process_index * n, (state.process_index + 1) * n)
    metrics = {}
    for reward in get_reward_funcs(["sasc", "majority"]):
        rewards = reward(
            prompts=data["prompts"][local],
            completions=data["completions"][local],
            completion_ids=[[0]] * n,
            token_entropies=data["token_entropies"][local],
            rollout_group=data["rollout_group"][local],
            answer=data["answer"][local],
            log_metric=lambda name, value: metrics.__setitem__(name, value),
        )
        metrics[reward.__name__] = rewards
    with open(f"{out_dir}/rank{state.process_index}.json", "w") as handle:
        json.dump(metrics, handle)
    destroy_process_group()  # left to interpreter exit, gloo's thread can abort the process
