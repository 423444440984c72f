"""The `sasc-ttrl` dispatcher: sub-commands parse with TrlParser and run; bad commands fail clearly."""

from __future__ import annotations

import json

import pytest

from sasc_ttrl.cli import COMMANDS, main


def test_unknown_command_names_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "bogus" in err and all(name in err for name in COMMANDS)


def test_no_command_prints_help_and_fails(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "make-tiny-model" in capsys.readouterr().out


def test_make_tiny_model_command(tmp_path):
    main(["make-tiny-model", "--output_dir", str(tmp_path / "m"), "--train_steps", "0", "--num_questions", "5"])
    assert (tmp_path / "m" / "config.json").exists() and (tmp_path / "m" / "tokenizer.json").exists()
    rows = json.loads((tmp_path / "m" / "sums.json").read_text())
    assert len(rows) == 5 and {"prompt", "answer", "source", "id"} <= set(rows[0])


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("train", "--filter_ratio"),
        ("eval", "--k_list"),
        ("build", "--n_candidates"),
        ("make-tiny-model", "--train_steps"),
    ],
)
def test_every_command_documents_its_options(capsys, command, option):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"sasc-ttrl {command}" in out and option in out
