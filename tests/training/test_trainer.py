"""SASCTrainer on the tiny model, on CPU: entropy capture, training, reward choice, validation."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sasc_ttrl.data.training_data import load_math_dataset
from sasc_ttrl.demo.tiny_model import write_tiny_dataset
from sasc_ttrl.sampling.entropy_capture import forward_topk_entropies
from sasc_ttrl.sampling.vllm_topk import sampled_token_logprobs
from sasc_ttrl.training.configs import SASCConfig
from sasc_ttrl.training.rewards import get_reward_funcs
from sasc_ttrl.training.trainer import SASCTrainer
from tests.training.user_rewards import alternating


def tiny_config(tmp_path, **overrides) -> SASCConfig:
    values = dict(
        output_dir=str(tmp_path / "out"),
        num_generations=5,
        per_device_train_batch_size=10,
        max_completion_length=48,
        max_steps=2,
        learning_rate=1e-3,
        temperature=0.7,
        top_k=0,
        beta=0.0,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
        filter_ratio=0.2,
    )
    values.update(overrides)
    return SASCConfig(**values)


class Spy:
    """A reward function that records what TRL hands to rewards and returns 0, 1, 0, ... by position (a reward that
    varies in every group whatever the model samples, so each step moves the weights)."""

    __name__ = "spy_reward"

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, completions, completion_ids, **kwargs):
        self.calls.append(
            {
                "prompts": prompts,
                "completion_ids": [list(c) for c in completion_ids],
                "token_entropies": kwargs.get("token_entropies"),
                "rollout_group": kwargs.get("rollout_group"),
                "answer": kwargs.get("answer"),
            }
        )
        return alternating(len(completions))


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """One short SASC run with a spy reward; returns everything the tests below inspect."""
    tmp = tmp_path_factory.mktemp("sasc_run")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    dataset = load_math_dataset(str(write_tiny_dataset(tmp / "sums.json", n=8)), tokenizer=tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    spy = Spy()
    args = tiny_config(tmp, vote_log_path=str(tmp / "votes.jsonl"))
    # As a library user writes it: a registry name beside a callable ("sasc" must not go to the hub as a model id).
    trainer = SASCTrainer(model=model, reward_funcs=["sasc", spy], args=args, train_dataset=dataset,
                          processing_class=tokenizer)  # fmt: skip
    trainer.train()
    return {"trainer": trainer, "spy": spy, "before": before, "tokenizer": tokenizer, "tmp": tmp}


def test_registry_names_resolve_with_the_config_settings(trained):
    trainer = trained["trainer"]
    assert trainer.reward_func_names == ["sasc_reward", "spy_reward"]
    assert (trained["tmp"] / "votes.jsonl").is_file()  # the config's vote_log_path reached the resolved reward


def test_parameters_change(trained):
    after = dict(trained["trainer"].model.named_parameters())
    changed = [n for n, p in trained["before"].items() if not torch.equal(p, after[n].detach())]
    assert len(changed) == len(trained["before"]), "every parameter of the tiny model should move"


def test_rewards_receive_one_entropy_per_completion_token(trained):
    calls = trained["spy"].calls
    assert len(calls) == 2  # one generation per step
    for call in calls:
        entropies = call["token_entropies"]
        assert entropies is not None
        assert [len(e) for e in entropies] == [len(c) for c in call["completion_ids"]]
        assert all(0.0 <= v <= torch.log(torch.tensor(20.0)).item() + 1e-5 for e in entropies for v in e)
        # Groups of num_generations consecutive completions of the same prompt.
        assert call["rollout_group"] == [i // 5 for i in range(10)]
        assert all(call["prompts"][i] == call["prompts"][(i // 5) * 5] for i in range(10))
        assert call["answer"] is not None


def test_captured_entropies_match_reference_forward_pass(trained, tiny_model_dir):
    """The first step's entropies were captured with the initial weights: recompute them with those weights."""
    tokenizer = trained["tokenizer"]
    reference_model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    call = trained["spy"].calls[0]
    prompt_ids = [
        tokenizer.apply_chat_template(p, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
        for p in call["prompts"]
    ]
    reference = forward_topk_entropies(
        reference_model, prompt_ids, call["completion_ids"], k=20, temperature=0.7, pad_token_id=0
    )
    worst = max(abs(a - b) for got, ref in zip(call["token_entropies"], reference) for a, b in zip(got, ref))
    assert worst < 1e-4


def test_sasc_metrics_and_vote_log(trained):
    history = trained["trainer"].state.log_history
    logged = {k for entry in history for k in entry}
    for name in (
        "sasc/label_accuracy",
        "sasc/reward_accuracy",
        "sasc/majority_ratio",
        "sasc/kept_fraction",
        "sasc/no_answer_fraction",
        "sasc/mean_instability",
        "sasc/label_differs_from_majority",
        "rewards/sasc_reward/mean",
    ):
        assert name in logged, name
    lines = [json.loads(x) for x in (trained["tmp"] / "votes.jsonl").read_text().splitlines()]
    assert len(lines) == 4  # 2 steps x 2 groups
    # Each line says which training step voted, and its group id is unique across the run.
    assert [line["step"] for line in lines] == [1, 1, 2, 2]
    assert [line["group"] for line in lines] == ["1-0", "1-1", "2-0", "2-1"]
    assert [line["batch_group"] for line in lines] == [0, 1, 0, 1]
    for line in lines:
        answered = sum(a is not None for a in line["answers"])
        # floor(0.2 * answered) dropped, at least one kept
        assert sum(line["kept"]) == max(answered - int(0.2 * answered), 1 if answered else 0)


def test_entropy_source_forward_matches_generation(tiny_model_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    dataset = load_math_dataset(str(write_tiny_dataset(tmp_path / "sums.json", n=4)), tokenizer=tokenizer)
    spies = {}
    for source in ("generation", "forward"):
        spy = Spy()
        args = tiny_config(tmp_path / source, entropy_source=source, max_steps=1, learning_rate=0.0)
        torch.manual_seed(0)
        trainer = SASCTrainer(
            model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
            reward_funcs=[spy] + get_reward_funcs(["sasc"], args.vote_settings),
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
        )
        trainer.train()
        spies[source] = spy.calls[0]
    gen, fwd = spies["generation"], spies["forward"]
    assert gen["completion_ids"] == fwd["completion_ids"]  # same seed, same rollouts
    worst = max(abs(a - b) for x, y in zip(gen["token_entropies"], fwd["token_entropies"]) for a, b in zip(x, y))
    assert worst < 1e-4


def test_majority_baseline_is_one_flag_away(tiny_model_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    dataset = load_math_dataset(str(write_tiny_dataset(tmp_path / "sums.json", n=4)), tokenizer=tokenizer)
    args = tiny_config(tmp_path, reward_funcs=["majority"], max_steps=1)
    trainer = SASCTrainer(model=str(tiny_model_dir), args=args, train_dataset=dataset, processing_class=tokenizer)
    assert trainer.reward_func_names == ["majority_reward"]
    trainer.train()
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert "rewards/majority_reward/mean" in logged
    assert "majority/label_accuracy" in logged


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("filter_ratio", 1.0, "filter_ratio"),
        ("filter_ratio", -0.1, "filter_ratio"),
        ("weight_temperature", 0.0, "weight_temperature"),
        ("entropy_top_k", 0, "entropy_top_k"),
        ("vote_weighting", "softmax", "vote_weighting"),
        ("entropy_source", "vllm", "entropy_source"),
        ("reward_funcs", ["nope"], "nope"),
    ],
)
def test_config_rejects_bad_values(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(tmp_path, **{field: value})


def test_train_indices_first_and_random():
    from sasc_ttrl.training.trainer import train_indices

    gen = torch.Generator().manual_seed(0)
    assert train_indices(8, 4, 2, "first", gen).tolist() == [0, 1, 4, 5]
    picked = train_indices(12, 6, 3, "random", gen).tolist()
    assert len(picked) == 6 and len(set(picked)) == 6
    assert all(0 <= i < 6 for i in picked[:3]) and all(6 <= i < 12 for i in picked[3:])
    assert picked[:3] == sorted(picked[:3])
    with pytest.raises(ValueError, match="whole groups"):
        train_indices(10, 4, 2, "first", gen)


def test_select_rows_recomputes_num_items():
    from accelerate import PartialState

    from sasc_ttrl.training.trainer import select_rows

    class OneProcess:
        def gather(self, tensor):
            return tensor.reshape(1, *tensor.shape) if tensor.dim() == 0 else tensor

    PartialState()
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1]])
    output = {
        "prompt_ids": torch.arange(8).reshape(4, 2),
        "completion_mask": mask,
        "advantages": torch.tensor([1.0, -1.0, 0.5, -0.5]),
        "num_items_in_batch": torch.tensor(9),
    }
    out = select_rows(output, torch.tensor([0, 2]), OneProcess())
    assert out["advantages"].tolist() == [1.0, 0.5]
    assert out["prompt_ids"].tolist() == [[0, 1], [4, 5]]
    assert int(out["num_items_in_batch"]) == 5


def test_vote_on_n_train_on_m(tiny_model_dir, tmp_path):
    """6 rollouts per prompt vote, 3 per prompt are trained on."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    dataset = load_math_dataset(str(write_tiny_dataset(tmp_path / "sums.json", n=4)), tokenizer=tokenizer)
    spy = Spy()
    args = tiny_config(tmp_path, num_generations=6, per_device_train_batch_size=12, train_generations=3, max_steps=1)
    trainer = SASCTrainer(
        model=str(tiny_model_dir),
        reward_funcs=get_reward_funcs(["sasc"], args.vote_settings) + [spy],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    assert len(spy.calls[0]["completion_ids"]) == 12  # the vote saw all N rollouts of both prompts
    trained_on = trainer._buffered_inputs[0]
    assert trained_on["advantages"].shape[0] == 6  # 2 prompts x M=3
    assert int(trained_on["num_items_in_batch"]) == int(trained_on["completion_mask"].sum())


def positional(prompts, completions, **kwargs):
    """Reward = the rollout's position in its batch (distinct in every group, so each kept subset has its own
    mean and std)."""
    return [float(i) for i in range(len(completions))]


@pytest.mark.parametrize("advantage_group", ["voted", "trained"])
def test_train_on_m_advantages_and_log_probs(tiny_model_dir, tmp_path, advantage_group, monkeypatch):
    """Vote on 6, train on 3 random ones: the advantages are normalised over the group named by advantage_group, and
    the old-policy and reference log-prob passes see only the 3 trained rollouts per group, each at its own row."""
    from trl import GRPOTrainer

    rows_seen = []
    original = GRPOTrainer._get_per_token_logps_and_entropies

    def counting(self, model, input_ids, *args, **kwargs):
        rows_seen.append((model is self.ref_model, input_ids.size(0)))
        return original(self, model, input_ids, *args, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies", counting)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    dataset = load_math_dataset(str(write_tiny_dataset(tmp_path / "sums.json", n=4)), tokenizer=tokenizer)
    # Two micro-batches per generation and one per update: the second is off-policy, so TRL computes old log-probs;
    # beta > 0 adds the reference model's.
    args = tiny_config(
        tmp_path, num_generations=6, per_device_train_batch_size=6, steps_per_generation=2, train_generations=3,
        train_selection="random", advantage_group=advantage_group, beta=0.1, max_steps=1,
    )  # fmt: skip
    trainer = SASCTrainer(
        model=str(tiny_model_dir), reward_funcs=[positional], args=args, train_dataset=dataset,
        processing_class=tokenizer,
    )  # fmt: skip
    scored = {}
    original_select = trainer._generate_and_score_completions

    def keep_scored(inputs):
        output = original_select(inputs)
        scored["output"] = output
        return output

    trainer._generate_and_score_completions = keep_scored
    trainer.train()
    out = scored["output"]
    # Scoring passes (the first two calls: policy, then reference) ran on 2 groups x 3 kept rows, not 12.
    assert rows_seen[:2] == [(False, 6), (True, 6)]
    rewards = torch.arange(6, dtype=torch.float32)  # every group's rewards, up to a shift
    full = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
    for adv in out["advantages"].view(2, 3):
        if advantage_group == "voted":
            # Each kept rollout keeps its advantage within all six; three of them are never centred.
            assert all(torch.isclose(full, a, atol=1e-5).sum() == 1 for a in adv)
            assert abs(float(adv.mean())) > 0.05  # |sum of 3 positions - 7.5| >= 0.5
        else:
            assert abs(float(adv.mean())) < 1e-5  # centred over the three kept
            assert float(adv.std()) == pytest.approx(1.0, rel=1e-3)  # and scaled by their own std
    # The reference log-probs of the kept rows are those of the starting model on exactly these rows.
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    with torch.no_grad():
        logits = ref(input_ids=ids, attention_mask=mask).logits[:, :-1] / args.temperature
    width = out["completion_ids"].size(1)
    logps = torch.log_softmax(logits[:, -width:], dim=-1).gather(-1, out["completion_ids"].unsqueeze(-1)).squeeze(-1)
    m = out["completion_mask"].bool()
    assert not torch.isnan(out["ref_per_token_logps"]).any()
    assert torch.allclose(out["ref_per_token_logps"][m], logps[m], atol=1e-4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train_generations": 7}, "train_generations"),
        ({"train_generations": 2, "per_device_train_batch_size": 5, "num_generations": 5}, None),
        ({"train_selection": "best"}, "train_selection"),
    ],
)
def test_train_generations_validation(tmp_path, overrides, message):
    if message is None:
        assert tiny_config(tmp_path, **overrides).train_generations == 2
    else:
        with pytest.raises(ValueError, match=message):
            tiny_config(tmp_path, **overrides)


def test_server_mode_reduces_logprobs_before_the_broadcast(tiny_model_dir, tmp_path):
    """The server-mode wiring without a server: the main process reads the server's logprobs mode, its client
    returns each token reduced to [sampled logprob, entropy], and the trainer reads entropies and logprobs from that;
    a server that cannot give the entropies is refused in one line."""
    from types import SimpleNamespace

    from tests.sampling.test_vllm_topk import _server_output

    output, expected = _server_output(0.7, "raw_logprobs")

    class FakeClient:
        def __init__(self, mode):
            self.mode = mode

        def get_server_info(self):
            return {"model_config": {"logprobs_mode": self.mode, "max_logprobs": -1}}

        def generate(self, **kwargs):
            return output

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    dataset = load_math_dataset(str(write_tiny_dataset(tmp_path / "sums.json", n=2)), tokenizer=tokenizer)
    trainer = SASCTrainer(
        model=str(tiny_model_dir), reward_funcs=["sasc"], args=tiny_config(tmp_path, temperature=0.7),
        train_dataset=dataset, processing_class=tokenizer,
    )  # fmt: skip
    client = FakeClient("raw_logprobs")
    trainer.vllm_generation = SimpleNamespace(vllm_client=client, sync_weights=lambda: None)
    trainer._reduce_server_logprobs()
    compact = client.generate(prompts=[[1, 2]])
    trainer.vllm_generation.generate = lambda **kw: (
        None, compact["completion_ids"], compact["logprobs"], compact["logprob_token_ids"]
    )  # fmt: skip
    trainer.vllm_mode, trainer._last_loaded_step = "server", 0
    completion_ids, sampled = trainer._generate_vllm_topk([[1, 2]], None, 2)
    assert completion_ids == output["completion_ids"]
    assert sampled == sampled_token_logprobs(output["logprobs"], output["logprob_token_ids"], completion_ids)
    for got, want in zip(trainer._captured_entropies, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-6)  # raw logprobs: the entropy took the sampling temperature
    trainer.vllm_generation = SimpleNamespace(vllm_client=FakeClient("unknown"))
    with pytest.raises(ValueError, match="logprobs_mode 'unknown'"):
        trainer._reduce_server_logprobs()
