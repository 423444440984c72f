"""`SASCTrainer`: TRL's GRPOTrainer that hands every completion's top-k entropy sequence to the rewards."""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from accelerate.utils import broadcast_object_list
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from trl.extras.profiling import profiling_context

from ..sampling.entropy_capture import capture_topk_entropies, forward_topk_entropies
from ..sampling.vllm_topk import (
    compact_topk_output,
    entropies_from_topk,
    sampled_token_logprobs,
    sasc_sampling_overrides,
    server_entropy_temperature,
    split_compact_topk,
)
from .checks import complete_checkpoints
from .collapse import CollapseGuard, NoAnswerGuard
from .configs import SASCConfig
from .model_card import CardFacts, build_model_card
from .rewards import get_reward_funcs, resolve_reward_funcs, rollout_fields_requested
from .schedule import RolloutSchedule, rollout_schedule

logger = logging.getLogger(__name__)

VLLM_MAX_LOGPROBS = 20  # vLLM's default `max_logprobs`, used by TRL's colocated engine and `trl vllm-serve`


class SASCTrainer(GRPOTrainer):
    """GRPO with label-free, stability-aware pseudo-label rewards (SASC-TTRL).

    What differs from [`trl.GRPOTrainer`] (every difference, with the reasons, in ``docs/trainer.md``):

    1. ``args`` may be omitted (`SASCConfig.default`) or a plain `GRPOConfig` (converted, with one warning).
    2. For reward functions that ask for them (a ``rollout_fields`` attribute, as this package's vote rewards have,
       or a parameter of that name), every completion's per-token top-k entropy sequence (``args.entropy_top_k``
       logits of ``logits / args.temperature``) reaches the rewards as ``token_entropies``, and each completion's
       global group index as ``rollout_group``, in copies of the batch's rows (`_calculate_rewards`): the rows TRL
       hands to ``training_step`` stay the data set's. With no reward asking, nothing is captured.
    3. How the entropies are obtained (``args.entropy_source``, see `_choose_entropy_path`):
       * ``"generation"`` (default, transformers path): a forward hook on the output embedding reduces each
         decoding step's logits to a top-k entropy while `generate` runs. No extra forward pass; the captured
         values match a reference forward pass to ~1e-6 (see tests and BENCHMARKS.md).
       * vLLM (``use_vllm=True``, colocate or server): vLLM is asked for the top-k logprobs of every generated
         token and the entropies are computed from them; the sampled token's logprob, which TRL's importance-
         sampling correction needs, is picked out by token id (TRL's own branch reads the top-ranked one). In
         colocate mode the request also says ``detokenize=False`` (`sasc_sampling_overrides`): vLLM would otherwise
         turn every returned logprob's token into text, unread (same tokens and logprobs either way).
       * ``"forward"``: one extra no-grad forward pass over prompt + completion after generation (its measured
         cost is in BENCHMARKS.md). Used automatically with ``use_transformers_continuous_batching`` and with beam
         search (``num_beams > 1``), where the hook cannot follow one sequence per row.
    4. Vote on N, train on M (``args.train_generations``): the rewards (the vote) use all ``num_generations``
       rollouts of a group, the advantages all of them or only the kept ones (``args.advantage_group``); only
       ``train_generations`` per group are kept for the loss (``args.train_selection``), the old-policy and
       reference log-probs are computed for those alone, and ``num_items_in_batch`` is recomputed over them.
    5. ``reward_funcs`` may be omitted: they are then built from ``args.reward_funcs`` (``sasc`` / ``majority``)
       with the vote hyper-parameters of ``args``. Registry names and dotted paths given in ``reward_funcs``
       (``["sasc", my_fn]``) are resolved the same way; other strings are left to TRL (reward-model ids).
    6. Two guards watch the logs ([`CollapseGuard`], [`NoAnswerGuard`]); with ``collapse_action: stop`` the first
       ends training and `restore_before_collapse` puts back the weights from before the collapse. And
       `create_model_card` writes a card that states the base model, the data, the vote and training settings, and
       the method's citations.

    Nothing else changes: generation itself, advantages, loss and logging are GRPOTrainer's own. Tool calling and
    custom ``rollout_func`` are not supported (their completions interleave tokens the model did not sample).
    """

    _tag_names = ["trl", "grpo", "sasc-ttrl"]

    def __init__(self, model, reward_funcs=None, args: GRPOConfig | None = None, **kwargs: Any):
        if args is None:
            model_name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "") or "model"
            args = SASCConfig.default(f"{model_name.rstrip('/').split('/')[-1]}-SASC")
        elif not isinstance(args, SASCConfig):
            if not isinstance(args, GRPOConfig):
                raise TypeError(f"args must be an SASCConfig or a GRPOConfig, got {type(args).__name__}")
            warnings.warn(
                f"SASCTrainer got a {type(args).__name__}: converted to an SASCConfig with the vote's fields at their "
                "defaults (pass an SASCConfig to set them)",
                UserWarning,
                stacklevel=2,
            )
            args = SASCConfig.from_grpo_config(args)
        if kwargs.get("tools") or kwargs.get("rollout_func") is not None:
            raise NotImplementedError("SASCTrainer does not support tools or rollout_func")
        if reward_funcs is None:
            reward_funcs = get_reward_funcs(args.reward_funcs, args.vote_settings, args.vote_log_path)
        else:
            reward_funcs = resolve_reward_funcs(reward_funcs, args.vote_settings, args.vote_log_path)
        self._rollout_field_names = rollout_fields_requested(reward_funcs)
        self._wants_entropies = "token_entropies" in self._rollout_field_names
        check_dataset_columns(self._rollout_field_names, kwargs.get("train_dataset"), kwargs.get("eval_dataset"))
        colocated = args.use_vllm and args.vllm_mode == "colocate"
        if self._wants_entropies and colocated and args.entropy_top_k > VLLM_MAX_LOGPROBS:
            raise ValueError(
                f"entropy_top_k={args.entropy_top_k} exceeds vLLM's default max_logprobs ({VLLM_MAX_LOGPROBS})"
            )
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, **kwargs)
        self._collapse_guard: CollapseGuard | None = None
        self.collapse_stop: dict[str, Any] | None = None  # what restore_before_collapse did, for the logs and card
        self._start_weights = StartWeights()
        if args.collapse_patience > 0:
            self._collapse_guard = CollapseGuard(
                args.collapse_threshold,
                args.collapse_patience,
                args.collapse_heldout_metric,
                label_share=args.collapse_label_share,
                action=args.collapse_action,
            )
            self.add_callback(self._collapse_guard)
        if args.collapse_action == "stop":
            if self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3:
                raise ValueError(
                    "collapse_action 'stop' is not supported under DeepSpeed ZeRO-3 (the weights to restore are "
                    "sharded): use collapse_action 'warn', or ZeRO-2"
                )
            self.add_callback(self._start_weights)
        if args.no_answer_patience > 0:
            self.add_callback(NoAnswerGuard(args.no_answer_patience))
        self._captured_entropies: list[list[float]] | None = None
        self._rollout_fields: dict[str, list] | None = None  # this batch's fields, handed to the rewards only
        self._trained_rows: TrainedRows | None = None  # set while a batch with train_generations < N is scored
        self.card_dataset_name: str | None = None  # named by the model card when create_model_card is given none
        self.entropy_path = self._choose_entropy_path()
        if self.entropy_path == "vllm":
            # Ask vLLM for the top-k logprobs of every generated token (TRL asks for 0: the sampled token only).
            self.vllm_generation.logprobs = args.entropy_top_k
            if self.vllm_mode == "colocate":
                # ... without turning each of those token ids into text, which nobody reads (BENCHMARKS.md).
                self.vllm_generation.generation_kwargs = sasc_sampling_overrides(
                    self.vllm_generation.generation_kwargs
                )
            else:
                self._reduce_server_logprobs()
            truncating = {
                "top_p": args.top_p != 1.0,
                "top_k": args.top_k not in (None, 0, -1),
                "min_p": bool(args.min_p),
                "repetition_penalty": args.repetition_penalty != 1.0,
            }
            if any(truncating.values()):
                logger.warning(
                    "use_vllm with %s: TRL's vLLM engine returns logprobs after these are applied, so the top-k "
                    "entropies are those of the truncated distribution, not of logits / temperature as on the "
                    "transformers path",
                    ", ".join(k for k, v in truncating.items() if v),
                )

    def _reduce_server_logprobs(self) -> None:
        """Server mode: the main process reads the server's logprobs mode (which sets the entropies' temperature) and
        reduces each token's top-k logprobs to its sampled logprob and entropy before TRL broadcasts every rollout to
        every rank ([`compact_topk_output`]). A server whose logprobs cannot give the entropies is refused on every
        rank with the same one-line error."""
        message = None
        if self.accelerator.is_main_process:
            client = self.vllm_generation.vllm_client
            k = self.args.entropy_top_k
            try:
                temperature = server_entropy_temperature(client.get_server_info(), self.args.temperature, k)
            except ValueError as error:
                message = str(error)
            else:
                generate = client.generate

                def generate_compact(*args: Any, **kwargs: Any) -> dict[str, Any]:
                    return compact_topk_output(generate(*args, **kwargs), k, temperature)

                client.generate = generate_compact
        (message,) = broadcast_object_list([message], from_process=0)
        if message:
            raise ValueError(message)

    def _choose_entropy_path(self) -> str:
        """How this run obtains the entropies: ``none`` (no reward asks for them), ``vllm``, ``hook`` or ``forward``.

        The hook follows one sequence per row of the batch, so it is replaced by the forward pass where that does
        not hold: continuous batching, and beam search (``num_beams > 1`` in ``generation_kwargs``: each step's
        logits hold every beam, and beams are reordered as they go).
        """
        if not self._wants_entropies:
            return "none"
        if self.use_vllm:
            return "vllm"
        if self.args.entropy_source == "forward":
            return "forward"
        num_beams = int((self.args.generation_kwargs or {}).get("num_beams", 1) or 1)
        if self.use_transformers_continuous_batching or num_beams > 1:
            why = "continuous batching" if num_beams <= 1 else f"beam search (num_beams={num_beams})"
            logger.warning(
                "entropy_source 'generation' cannot follow %s: the entropies are recomputed with one extra no-grad "
                "forward pass after generation (as with entropy_source: forward)",
                why,
            )
            return "forward"
        return "hook"

    # -- stop on collapse ------------------------------------------------------------------------------------------
    def train(self, *args: Any, **kwargs: Any):
        """GRPOTrainer's ``train``; when the collapse guard stopped it (``collapse_action: stop``), the model is then
        put back to the weights from before the collapse ([`restore_before_collapse`])."""
        if self.train_dataset is not None and hasattr(self.train_dataset, "__len__"):
            schedule = self.rollout_schedule()
            if self.is_world_process_zero():
                logger.info("SASC-TTRL schedule: %s", schedule.describe())
        output = super().train(*args, **kwargs)
        if self._collapse_guard is not None and self._collapse_guard.stopped:
            self.restore_before_collapse()
        return output

    def rollout_schedule(self) -> RolloutSchedule:
        """Prompts per generation, optimizer updates and rollouts per update of this run (`rollout_schedule`)."""
        return rollout_schedule(self.args, len(self.train_dataset), self.accelerator.num_processes)

    def restore_before_collapse(self) -> dict[str, Any]:
        """Load the last complete checkpoint whose weights sampled no batch of the guard's streak (or, without one,
        the weights training started from) into the model, and record it in ``self.collapse_stop``.

        The metrics logged at step ``g`` cover the ``logging_steps`` steps up to ``g``, and each step's batch was
        sampled by the weights of up to ``steps_per_generation x num_iterations / gradient_accumulation_steps``
        (``lag``) steps before it. With the streak's first logged step ``g0``, the kept weights are those of the
        latest checkpoint at a step ``<= g0 - logging_steps - lag`` (with one generation per step and a log per
        step: ``<= g0 - 2``, since the weights of step ``g0 - 1`` sampled the batch of step ``g0``).
        """
        guard = self._collapse_guard
        if guard is None or guard.fired_at is None or guard.fired_streak_start is None:
            raise RuntimeError("the collapse guard did not stop this run")
        args = self.args
        lag = max(1, math.ceil(args.steps_per_generation * args.num_iterations / args.gradient_accumulation_steps))
        logging_steps = max(1, int(self.state.logging_steps or 1))
        last_clean = guard.fired_streak_start - logging_steps - lag
        found = [
            (step, path) for step, path in complete_checkpoints(args.output_dir, args.world_size) if step <= last_clean
        ]
        if found:
            step, path = found[0]
            previous = self.state.best_model_checkpoint
            self.state.best_model_checkpoint = path  # transformers' loader of a chosen checkpoint (DeepSpeed, PEFT)
            try:
                self._load_best_model()
            finally:
                self.state.best_model_checkpoint = previous
            restored = f"step {step} (`{os.path.basename(path)}`)"
        else:
            step = self._start_weights.step
            self._start_weights.restore(self.accelerator.unwrap_model(self.model))
            restored = f"step {step} (the weights training started from; no checkpoint was saved before the collapse)"
        self.collapse_stop = {
            "stopped_at": guard.fired_at,
            "streak_start": guard.fired_streak_start,
            "restored_step": step,
            "restored": restored,
            "message": guard.message,
        }
        logger.warning(
            "collapse_action 'stop': training stopped at step %d; the model now holds the weights of %s",
            guard.fired_at,
            restored,
        )
        return self.collapse_stop

    # -- model card -----------------------------------------------------------------------------------------
    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | None = None,
        tags: str | list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Write ``README.md`` into ``args.output_dir``: what was trained from what, how, and whom to cite.

        Replaces TRL's card (`sasc_ttrl.training.model_card`). Extra keyword arguments (``Trainer.push_to_hub`` passes
        some) are ignored.
        """
        if not self.is_world_process_zero():
            return
        from peft import PeftModel

        model = self.accelerator.unwrap_model(self.model)
        adapter = isinstance(model, PeftModel)
        lora: dict[str, Any] = {}
        if adapter:
            config = model.peft_config[model.active_adapter]
            base_model = config.base_model_name_or_path
            lora = {"r": getattr(config, "r", None), "lora_alpha": getattr(config, "lora_alpha", None)}
            lora["target_modules"] = getattr(config, "target_modules", None)
        else:
            base_model = getattr(model.config, "_name_or_path", None) or None
        facts = CardFacts(
            model_name=model_name or os.path.basename(os.path.normpath(self.args.output_dir)),
            base_model=base_model,
            reward_names=list(self.reward_func_names),
            args=self.args,
            dataset_name=dataset_name or self.card_dataset_name,
            hub_model_id=(getattr(self, "hub_model_id", None) or self.args.hub_model_id)
            if self.args.push_to_hub
            else None,
            adapter=adapter,
            lora=lora,
            global_step=self.state.global_step,
            num_processes=self.accelerator.num_processes,
            tags=[tags] if isinstance(tags, str) else list(tags or []),
            collapse_stop=self.collapse_stop,
        )
        os.makedirs(self.args.output_dir, exist_ok=True)
        build_model_card(facts).save(os.path.join(self.args.output_dir, "README.md"))

    # -- capture ---------------------------------------------------------------------------------------------
    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if self.entropy_path == "vllm":
            return self._generate_vllm_topk(prompt_ids, images, num_generations)
        if self.entropy_path != "hook":
            completion_ids, logprobs = super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
            if self.entropy_path == "forward":
                self._captured_entropies = self._entropies_by_forward(prompt_ids, completion_ids)
            return completion_ids, logprobs

        model = self.accelerator.unwrap_model(self.model_wrapped)
        with capture_topk_entropies(model, k=self.args.entropy_top_k, temperature=self.args.temperature) as rec:
            completion_ids, logprobs = super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        self._captured_entropies = rec.per_sequence([len(c) for c in completion_ids])
        return completion_ids, logprobs

    def _generate_vllm_topk(self, prompt_ids, images, num_generations):
        """GRPOTrainer's vLLM branch, reading top-k logprobs instead of the sampled token's only.

        TRL's own branch takes ``lp[0]`` per token, which is the sampled token's logprob only when vLLM was asked
        for ``logprobs=0``; with top-k logprobs the lists are sorted by rank, so the sampled token is found through
        ``logprob_token_ids`` and returned for the importance-sampling correction. TRL's colocated engine returns
        *processed* logprobs (temperature already applied), so the entropies use temperature 1; in server mode the
        main process already reduced them at the temperature the server's logprobs mode needs.
        """
        if self.state.global_step != self._last_loaded_step:
            with profiling_context(self, "sync_weights"):
                self.vllm_generation.sync_weights()
            self._last_loaded_step = self.state.global_step
        _, completion_ids, topk_logprobs, topk_token_ids = self.vllm_generation.generate(
            prompts=prompt_ids,
            images=images,
            num_generations=num_generations,
            profiler=profiling_context(self, "vLLM.generate"),
        )
        if self.vllm_mode == "server":  # reduced on the main process before the broadcast (_reduce_server_logprobs)
            sampled, self._captured_entropies = split_compact_topk(topk_logprobs)
            return completion_ids, sampled
        self._captured_entropies = entropies_from_topk(topk_logprobs, k=self.args.entropy_top_k, temperature=1.0)
        return completion_ids, sampled_token_logprobs(topk_logprobs, topk_token_ids, completion_ids)

    @torch.no_grad()
    def _entropies_by_forward(self, prompt_ids, completion_ids) -> list[list[float]]:
        """Recompute the entropies with one no-grad forward pass (``entropy_source="forward"``)."""
        model = self.accelerator.unwrap_model(self.model_wrapped)
        was_training = model.training
        model.eval()
        try:
            # Each prompt is repeated by the sampler, so prompt_ids already has one entry per completion.
            return forward_topk_entropies(
                model,
                prompt_ids,
                completion_ids,
                k=self.args.entropy_top_k,
                temperature=self.args.temperature,
                pad_token_id=self._tokenizer.pad_token_id,
                batch_size=self.args.per_device_train_batch_size,
            )
        finally:
            model.train(was_training)

    # -- vote on N, train on M -----------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        m = self.args.train_generations
        if m is None or not self.model.training or m == self.num_generations:
            return super()._generate_and_score_completions(inputs)
        rows = len(inputs)
        kept = [
            train_indices(rows, self.num_generations, m, self.args.train_selection, self._selection_generator(rank))
            for rank in range(self.accelerator.num_processes)
        ]
        keep = kept[self.accelerator.process_index]
        self._trained_rows = TrainedRows(rows, keep, torch.cat([rank * rows + k for rank, k in enumerate(kept)]))
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self._trained_rows = None
        return select_rows(output, keep, self.accelerator)

    def _selection_generator(self, rank: int) -> torch.Generator:
        generator = torch.Generator()
        generator.manual_seed(self.args.seed * 1_000_003 + self.state.global_step * 97 + rank)
        return generator

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, **kwargs):
        """GRPOTrainer's log-prob pass; while a batch is scored with ``train_generations`` < N, over the trained rows
        only (the old-policy and reference log-probs of the rollouts that only voted are never read: they are NaN)."""
        rows = self._trained_rows
        multimodal = any(kwargs.get(k) is not None for k in ("pixel_values", "num_images", "image_grid_thw"))
        if rows is None or multimodal or input_ids.size(0) != rows.count:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, **kwargs
            )
        keep = rows.local.to(input_ids.device)
        sliced = {
            k: v[keep] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.size(0) == rows.count else v
            for k, v in kwargs.items()
        }
        logps, entropies, aux = super()._get_per_token_logps_and_entropies(
            model, input_ids[keep], attention_mask[keep], logits_to_keep, **sliced
        )
        return rows.scatter(logps), rows.scatter(entropies), aux

    def _generate(self, prompts: list):
        self._captured_entropies = None
        self._rollout_fields = None
        output = super()._generate(prompts)
        if not self._rollout_field_names:
            return output
        completion_ids = output[1]
        fields: dict[str, list] = {}
        if self._wants_entropies:
            entropies = self._captured_entropies
            self._captured_entropies = None
            if entropies is None or len(entropies) != len(completion_ids):
                raise RuntimeError(
                    f"captured entropies for {0 if entropies is None else len(entropies)} completions, expected "
                    f"{len(completion_ids)}"
                )
            fields["token_entropies"] = entropies
        if "rollout_group" in self._rollout_field_names:
            mode = "train" if self.model.training else "eval"
            num_generations = self.num_generations if mode == "train" else self.num_generations_eval
            offset = self.accelerator.process_index * len(completion_ids)
            # Completions are laid out prompt-major over the global batch, processes in rank order.
            fields["rollout_group"] = [(offset + i) // num_generations for i in range(len(completion_ids))]
        self._rollout_fields = fields
        return output

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's rewards, with this batch's per-rollout fields added to copies of the inputs (never to the caller's
        rows, which TRL hands to `training_step` again).

        With ``advantage_group: trained``, the rewards of the rollouts that only voted are then set to NaN, which
        GRPOTrainer's advantage step leaves out of each group's mean and std (as it does for unscorable rows): the
        advantages are normalised over the trained rollouts, as TTRL does. The vote itself saw every rollout."""
        fields, self._rollout_fields = self._rollout_fields, None
        if fields:
            inputs = [{**row, **{name: values[i] for name, values in fields.items()}} for i, row in enumerate(inputs)]
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        rows = self._trained_rows
        if rows is not None and self.args.advantage_group == "trained":
            voted_only = torch.ones(rewards.size(0), dtype=torch.bool, device=rewards.device)
            voted_only[rows.global_.to(rewards.device)] = False
            rewards = rewards.masked_fill(voted_only.unsqueeze(1), float("nan"))
        return rewards


class StartWeights(TrainerCallback):
    """Keeps a CPU copy of the trainable weights as training starts (after a resume), to put back on demand."""

    def __init__(self):
        self.step = 0
        self.weights: dict[str, torch.Tensor] | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.step = state.global_step
        self.weights = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def restore(self, model: torch.nn.Module) -> None:
        """Copy the kept weights back into ``model``."""
        if self.weights is None:
            raise RuntimeError("no weights were kept: training has not started")
        for name, param in model.named_parameters():
            if name in self.weights:
                param.copy_(self.weights[name].to(param.device))


@dataclass(frozen=True)
class TrainedRows:
    """The rows of one scored generation batch that are trained on (``train_generations`` < ``num_generations``).

    Attributes:
        count: Local rows in the batch (whole groups of N).
        local: Indices of the kept local rows.
        global_: Indices of the kept rows of every process in the gathered batch (process-major).
    """

    count: int
    local: torch.Tensor
    global_: torch.Tensor

    def scatter(self, values: torch.Tensor | None) -> torch.Tensor | None:
        """Values of the kept rows placed back at their rows of the full batch; the other rows are NaN."""
        if values is None:
            return None
        full = values.new_full((self.count, *values.shape[1:]), float("nan"))
        full[self.local.to(values.device)] = values
        return full


def check_dataset_columns(field_names: set[str], *datasets: Any) -> None:
    """Refuse a data set column that the trainer's per-rollout fields would hide from the rewards.

    Raises:
        ValueError: naming the column, when a data set (or a split of a dict of them) has one of ``field_names``.
    """
    for dataset in datasets:
        splits = dataset.values() if isinstance(dataset, dict) else [dataset]
        for split in splits:
            columns = getattr(split, "column_names", None) or []
            clash = sorted(field_names.intersection(columns))
            if clash:
                raise ValueError(
                    f"the data set has a column {clash[0]!r}, a name SASCTrainer uses for its per-rollout field of "
                    "the same name: rename the column"
                )


def train_indices(
    batch_size: int, num_generations: int, train_generations: int, selection: str, generator: torch.Generator
) -> torch.Tensor:
    """Row indices kept for the loss: ``train_generations`` rows out of each block of ``num_generations``.

    Args:
        batch_size: Local rows; a multiple of ``num_generations`` (whole groups, checked by `SASCConfig`).
        num_generations: N, the group size the vote used.
        train_generations: M, rows kept per group.
        selection: ``"first"`` (sampling order) or ``"random"``.
        generator: Source of randomness for ``"random"``.
    """
    if batch_size % num_generations != 0:
        raise ValueError(f"{batch_size} local rollouts do not form whole groups of {num_generations}")
    keep = []
    for start in range(0, batch_size, num_generations):
        if selection == "first":
            offsets = torch.arange(train_generations)
        else:
            offsets = torch.randperm(num_generations, generator=generator)[:train_generations].sort().values
        keep.append(start + offsets)
    return torch.cat(keep)


def select_rows(output: dict, keep: torch.Tensor, accelerator) -> dict:
    """Keep rows ``keep`` of every per-completion tensor of a scored generation batch."""
    batch_size = len(output["advantages"])
    selected = {}
    for key, value in output.items():
        if key == "num_items_in_batch":
            continue
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch_size:
            selected[key] = value[keep.to(value.device)]
        elif key in ("num_images", "num_tiles", "pixel_values", "image_grid_thw"):
            raise NotImplementedError("train_generations does not support multimodal inputs")
        else:
            selected[key] = value
    mask = selected["completion_mask"]
    if "tool_mask" in selected:
        mask = mask * selected["tool_mask"]
    selected["num_items_in_batch"] = accelerator.gather(mask.sum()).sum()
    return selected
