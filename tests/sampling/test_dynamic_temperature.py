"""Entropy-based dynamic temperature: the rule on hand-made logits (both entropy readings, the authors' own numbers),
the processor inside batched ``generate`` on the tiny model, its recorded entropies, and the vLLM refusal."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LogitsProcessorList

from sasc_ttrl.data.prompts import render_prompt
from sasc_ttrl.sampling.dynamic_temperature import (
    GREEDY_BELOW,
    DynamicTemperature,
    DynamicTemperatureProcessor,
    dynamic_temperatures,
    next_token_entropy,
    scale_rows,
)
from sasc_ttrl.sampling.entropy import topk_entropy_from_logits
from sasc_ttrl.sampling.generation import (
    SamplingSettings,
    encode_prompts,
    resolve_backend,
    sample_records,
    sample_transformers,
)
from sasc_ttrl.sampling.models import load_transformers_model

RULE = DynamicTemperature(base=0.8, n=0.8, theta=1.0)


def formula(entropy: float, rule: DynamicTemperature = RULE) -> float:
    """T = T0 * N ** (theta / H), greedy (0) below 1e-3 or at H == 0."""
    if entropy == 0:
        return 0.0
    t = rule.base * rule.n ** (rule.theta / entropy)
    return 0.0 if t < GREEDY_BELOW else t


def shannon(row: list[float]) -> float:
    z = sum(math.exp(v) for v in row if v != -math.inf)
    ps = [math.exp(v) / z for v in row if v != -math.inf]
    return -sum(p * math.log(p) for p in ps if p > 0)


# Self-Calibration's code (data_creation/dt_generator.py), verbatim but for `self`: the authors' reading.
def authors_entropy(logits):
    max_logits = torch.max(logits, dim=-1, keepdim=True).values
    stable_logits = logits - max_logits
    exp_logits = torch.exp(stable_logits)
    sum_exp_logits = exp_logits.sum(dim=-1, keepdim=True)
    softmax_probs = exp_logits / sum_exp_logits
    entropy = -(softmax_probs * stable_logits).sum(dim=-1)
    return entropy


def authors_temperature(entropy, base_temperature=0.8, N=0.8, theta=1.0):  # noqa: N803 - their name
    entropy = entropy.item()
    if entropy == 0:
        return 0
    return base_temperature * (N ** (theta / entropy))


FLAT = [0.0] * 8
PEAKED = [4.0, 1.0, 0.5, 0.0, 0.0, -1.0, -2.0, -3.0]
ONE_HOT = [0.0] + [-math.inf] * 7


def test_temperatures_follow_the_formula_on_flat_peaked_and_one_hot_rows():
    logits = torch.tensor([FLAT, PEAKED, ONE_HOT])
    t = dynamic_temperatures(logits, RULE)
    assert t[0].item() == pytest.approx(formula(math.log(8)), rel=1e-5)  # flat: H = log 8, the hottest row
    assert t[1].item() == pytest.approx(formula(shannon(PEAKED)), rel=1e-5)
    assert t[2].item() == 0.0  # one-hot: H == 0 -> greedy
    assert 0 < t[1] < t[0] < RULE.base  # the temperature grows with the entropy towards T0
    # A nearly one-hot row: a temperature below 1e-3 decodes greedily too.
    sharp = torch.tensor([[30.0] + [0.0] * 7])
    assert shannon(sharp[0].tolist()) > 0 and dynamic_temperatures(sharp, RULE).item() == 0.0
    # theta = 0: every row at T0 (the fixed temperature), greedy rows included.
    assert dynamic_temperatures(logits, DynamicTemperature(base=0.6, theta=0.0)).tolist() == pytest.approx([0.6] * 3)


def test_the_authors_reading_gives_their_numbers_and_differs_from_the_entropy():
    torch.manual_seed(0)
    logits = torch.randn(6, 1000) * 3
    ours = next_token_entropy(logits, "authors")
    theirs = torch.stack([authors_entropy(row[None])[0] for row in logits])
    assert torch.allclose(ours, theirs, atol=1e-4)
    rule = DynamicTemperature(entropy="authors")
    for row, t in zip(logits, dynamic_temperatures(logits, rule)):
        assert t.item() == pytest.approx(authors_temperature(authors_entropy(row[None])), rel=1e-4)
    # Their value is H - log Z: smaller than the entropy; the paper's reading is the Shannon entropy.
    log_z = torch.logsumexp(logits - logits.amax(-1, keepdim=True), -1)
    paper = next_token_entropy(logits, "paper")
    assert torch.allclose(paper, -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1), atol=1e-4)
    assert torch.allclose(ours, paper - log_z, atol=1e-4) and bool((ours < paper).all())
    # On a flat row the two readings part most: the largest entropy, but 0 (greedy) in the authors' code.
    flat = torch.tensor([FLAT])
    assert authors_entropy(flat).item() == 0 and dynamic_temperatures(flat, rule).item() == 0.0
    assert dynamic_temperatures(flat, RULE).item() > 0.5


def test_scale_rows_divides_each_row_and_keeps_only_the_argmax_of_greedy_rows():
    scores = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.2, 0.1]])
    scaled = scale_rows(scores, torch.tensor([0.5, 0.0]))
    assert scaled[0].tolist() == pytest.approx([2.0, 4.0, 6.0])
    assert scaled[1, 0].item() == 0.0 and bool(torch.isinf(scaled[1, 1:]).all())


def test_invalid_rules_are_refused_naming_the_flag():
    for kwargs, flag in [({"base": 0}, "dt_base"), ({"n": 1.0}, "dt_n"), ({"theta": -1}, "dt_theta"),
                         ({"entropy": "bits"}, "dt_entropy")]:  # fmt: skip
        with pytest.raises(ValueError, match=flag):
            DynamicTemperature(**kwargs)
    with pytest.raises(ValueError, match="dt_n"):
        SamplingSettings(n=2, temperature=0.8, dynamic_temperature=True, dt_n=2.0)
    # dt_base defaults to the sampling temperature.
    assert SamplingSettings(n=2, temperature=0.6, dynamic_temperature=True).dynamic.base == 0.6
    assert SamplingSettings(n=2, temperature=0.6, dynamic_temperature=True, dt_base=0.9).dynamic.base == 0.9
    assert SamplingSettings(n=2, temperature=0.6).dynamic is None


def test_vllm_refuses_the_dynamic_temperature_in_one_line():
    settings = SamplingSettings(n=2, temperature=0.8, dynamic_temperature=True)
    with pytest.raises(ValueError, match="--dynamic_temperature") as error:
        sample_records("vllm", object(), object(), ["q"], settings)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="--dynamic_temperature"):
        resolve_backend("vllm", dynamic_temperature=True)
    assert resolve_backend("auto", dynamic_temperature=True) == "transformers"


# -- on the tiny model --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    return load_transformers_model(str(tiny_model_dir), dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def prompts(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    return [render_prompt(q, tokenizer) for q in ["What is 3 + 4?", "What is 12 + 9?", "What is 0 + 5?"]]


SAMPLE = dict(n=3, temperature=0.8, top_p=1.0, max_tokens=24, seed=11, batch_size=3)


def test_theta_zero_samples_exactly_as_the_fixed_temperature(model_and_tokenizer, prompts):
    model, tokenizer = model_and_tokenizer
    fixed = sample_transformers(model, tokenizer, prompts, **SAMPLE)
    dynamic = sample_transformers(model, tokenizer, prompts, **SAMPLE, dynamic=DynamicTemperature(0.8, theta=0.0))
    for a, b in zip((r for g in fixed for r in g), (r for g in dynamic for r in g)):
        assert a.token_ids == b.token_ids
        assert a.entropies == pytest.approx(b.entropies, abs=1e-5)


def forward_logits(model, tokenizer, prompt: str, completion: list[int]) -> torch.Tensor:
    """The logits each completion token was sampled from, by one forward pass over prompt + completion."""
    ids = encode_prompts(tokenizer, [prompt])[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids + completion])).logits[0]
    return logits[len(ids) - 1 : len(ids) - 1 + len(completion)]


def test_each_token_is_drawn_at_its_own_temperature_and_its_entropy_is_the_sampled_distributions(
    model_and_tokenizer, prompts
):
    model, tokenizer = model_and_tokenizer
    rule = DynamicTemperature(base=0.8, n=0.8, theta=1.0)
    groups = sample_transformers(model, tokenizer, prompts, **SAMPLE, dynamic=rule)
    checked_greedy = 0
    for prompt, group in zip(prompts, groups):
        for record in group:
            logits = forward_logits(model, tokenizer, prompt, record.token_ids)
            temperatures = dynamic_temperatures(logits, rule)
            assert bool(((temperatures == 0) | ((temperatures > 0) & (temperatures <= rule.base))).all())
            for j, t in enumerate(temperatures.tolist()):
                if t == 0:  # a greedy step draws the most likely token and records entropy 0
                    assert record.token_ids[j] == int(logits[j].argmax())
                    assert record.entropies[j] == 0.0
                    checked_greedy += 1
                else:  # the recorded entropy is the top-k entropy at this token's temperature, not at 0.8
                    expected = topk_entropy_from_logits(logits[j], k=20, temperature=t).item()
                    assert record.entropies[j] == pytest.approx(expected, abs=2e-3)


def test_the_processor_runs_in_plain_batched_generate(model_and_tokenizer, prompts):
    model, tokenizer = model_and_tokenizer
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    processor = DynamicTemperatureProcessor(RULE)
    torch.manual_seed(0)
    out = model.generate(**encoded, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=8,
                         num_return_sequences=2, logits_processor=LogitsProcessorList([processor]),
                         pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)  # fmt: skip
    temperatures = processor.temperatures()
    assert temperatures.shape[0] == 6 and 1 <= temperatures.shape[1] <= 8
    assert out.shape[0] == 6
    assert bool(((temperatures == 0) | ((temperatures > 0) & (temperatures <= RULE.base))).all())


# -- the commands -------------------------------------------------------------------------------------------------
def test_build_then_calibrate_and_eval_with_the_dynamic_temperature(tiny_model_dir, tmp_path):
    import json

    from sasc_ttrl import cli
    from sasc_ttrl.data.store import read_samples
    from sasc_ttrl.demo.tiny_model import write_tiny_dataset

    data = write_tiny_dataset(tmp_path / "sums.json", n=6, seed=7)
    common = ["--model_name_or_path", str(tiny_model_dir), "--max_tokens", "32", "--dtype", "float32"]
    dynamic = ["--dynamic_temperature", "--dt_base", "1.0", "--dt_theta", "1.0"]
    cli.main(["build", *common, "--dataset_name", str(data), "--methods", "self-calibration", "--n_candidates", "4",
              "--seed", "2", "--save_candidates", "--output_dir", str(tmp_path / "build"), *dynamic])  # fmt: skip
    config = json.loads((tmp_path / "build" / "build_config.json").read_text())
    assert config["dynamic_temperature"] is True and config["dt_base"] == 1.0 and config["backend"] == "transformers"
    rows = [json.loads(line) for line in (tmp_path / "build" / "self-calibration.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    # A rerun with the fixed temperature would mix two samplers in one folder: refused, naming the setting.
    with pytest.raises(SystemExit):
        cli.main(["build", *common, "--dataset_name", str(data), "--methods", "self-calibration",
                  "--n_candidates", "4", "--seed", "2", "--save_candidates",
                  "--output_dir", str(tmp_path / "build")])  # fmt: skip

    cli.main(["calibrate", "--dataset_path", str(tmp_path / "build" / "self-calibration.jsonl"),
              "--model_name_or_path", str(tiny_model_dir), "--eval_fraction", "0.5", "--resolution", "2",
              "--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--max_length", "256",
              "--output_dir", str(tmp_path / "cal")])  # fmt: skip
    report = json.loads((tmp_path / "cal" / "calibration_report.json").read_text())
    assert report["data_sampling"]["dynamic_temperature"] is True and report["data_sampling"]["dt_base"] == 1.0
    assert 0 <= report["after"]["ece"] <= 1 and report["after"]["items"] > 0

    cli.main(["eval", *common, "--benchmarks", str(data), "--n", "2", "--limit", "2", "--batch_size", "2",
              "--output_dir", str(tmp_path / "eval"), *dynamic])  # fmt: skip
    assert json.loads((tmp_path / "eval" / "eval_config.json").read_text())["dynamic_temperature"] is True
    report = "".join(f.read_text() for f in (tmp_path / "eval").rglob("*.md"))
    assert "at the dynamic temperature T = 1.0 * 0.8 ** (1.0 / H) (paper entropy)" in report
    files = sorted((tmp_path / "eval").rglob("*.jsonl"))
    lines = [line for f in files for line in read_samples(f).values()]
    assert len(lines) == 2 and all(len(q["samples"]) == 2 for q in lines)
    assert all(len(s["entropies"]) == len(s["token_ids"]) for q in lines for s in q["samples"])


def test_the_commands_refuse_dynamic_temperature_on_vllm_in_one_line(tiny_model_dir, capsys):
    from sasc_ttrl import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eval", "--model_name_or_path", str(tiny_model_dir), "--backend", "vllm", "--dynamic_temperature"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--dynamic_temperature" in error and "--backend transformers" in error
