"""The `sasc-ttrl` dispatcher: sub-commands parse with TrlParser and run; bad commands fail clearly."""

from __future__ import annotations

import importlib
import json
import re
import runpy
import sys
from dataclasses import dataclass
from pathlib import Path

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


# -- every entry point ends its process group -------------------------------------------------------------------------
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
COMMAND_IMPORT = re.compile(r"^from (sasc_ttrl\.commands\.\w+) import ", re.MULTILINE)
LAUNCHABLE = sorted(p.name for p in SCRIPTS.glob("*.py") if COMMAND_IMPORT.search(p.read_text()))


@dataclass
class _Args:
    name: str = "x"


def _main_that_opens_a_process_group(store: Path, seen: list):
    """A command's ``main`` that creates a gloo process group and runs a collective, as training does."""
    import torch.distributed as dist

    def main(args):
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
        gathered = [None]
        dist.all_gather_object(gathered, args.name)
        seen.extend(gathered)

    return main


def test_the_scripts_that_launchers_start_are_found():
    assert {"train.py", "evaluate.py", "build_data.py"} <= set(LAUNCHABLE)


@pytest.mark.parametrize("script", LAUNCHABLE)
def test_every_script_destroys_the_process_group(script, tmp_path, monkeypatch):
    """scripts/*.py that run a command (what ``accelerate launch`` / ``torchrun`` start) go through run_command."""
    import torch.distributed as dist
    from trl import TrlParser

    module = importlib.import_module(COMMAND_IMPORT.search((SCRIPTS / script).read_text()).group(1))
    seen: list = []
    monkeypatch.setattr(module, "make_parser", lambda: TrlParser((_Args,)))
    monkeypatch.setattr(module, "main", _main_that_opens_a_process_group(tmp_path / "store", seen))
    monkeypatch.setattr(sys, "argv", [str(SCRIPTS / script), "--name", script])
    runpy.run_path(str(SCRIPTS / script), run_name="__main__")
    assert seen == [script]  # the command really ran, with its arguments
    assert not dist.is_initialized()


def test_every_sasc_ttrl_command_destroys_the_process_group(tmp_path, monkeypatch):
    """The ``sasc-ttrl`` console script (setup.py) dispatches every command through run_command."""
    import torch.distributed as dist
    from trl import TrlParser

    assert '"sasc-ttrl=sasc_ttrl.cli:main"' in (SCRIPTS.parent / "setup.py").read_text()
    for name, (module_name, _) in COMMANDS.items():
        module = importlib.import_module(module_name)
        seen: list = []
        monkeypatch.setattr(module, "make_parser", lambda: TrlParser((_Args,)))
        monkeypatch.setattr(module, "main", _main_that_opens_a_process_group(tmp_path / f"store-{name}", seen))
        main([name, "--name", name])
        assert seen == [name]
        assert not dist.is_initialized(), name


def test_command_modules_have_no_entry_point_of_their_own():
    """``python -m sasc_ttrl.commands.<x>`` (or ``sasc_ttrl.experimental.<x>.runner``) would bypass run_command: the
    commands have no ``__main__`` block."""
    package = SCRIPTS.parent / "sasc_ttrl"
    modules = [*(package / "commands").glob("*.py"), *(package / "experimental").rglob("*.py")]
    assert len(modules) > 10
    assert [p.name for p in modules if "__main__" in p.read_text()] == []
