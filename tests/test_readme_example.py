"""The README's library example ("Using it as a library") runs as written, with the tiny model for the hub name."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
HUB_MODEL = '"Qwen/Qwen2.5-0.5B-Instruct"'  # the one string the test replaces


def library_example() -> str:
    """The first ```python block of the README's "Using it as a library" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Using it as a library\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in 'Using it as a library'"
    return match.group(1)


def test_the_example_is_short_and_names_a_hub_model():
    code = library_example()
    assert code.count(HUB_MODEL) == 1
    assert 'reward_funcs=["sasc", concise]' in code and "Dataset.from_list" in code
    assert len(code.splitlines()) <= 40


def test_readme_library_example_trains(tiny_model_dir, tmp_path, monkeypatch):
    code = library_example().replace(HUB_MODEL, repr(str(tiny_model_dir)))
    monkeypatch.chdir(tmp_path)  # output_dir="sasc-ttrl-run" lands here
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README

    trainer = namespace["trainer"]
    assert trainer.state.global_step == 2
    # "sasc" went through the registry (not to the hub as a reward-model id), beside the user's function.
    assert trainer.reward_func_names == ["sasc_reward", "concise"]
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"rewards/sasc_reward/mean", "rewards/concise/mean", "sasc/kept_fraction"} <= logged
    out = tmp_path / "sasc-ttrl-run"
    assert (out / "model.safetensors").is_file()
    card = (out / "README.md").read_text()
    assert "trained with SASC-TTRL" in card and "@article{zuo2025ttrl" in card
