"""The public API: ``from sasc_ttrl import ...`` works, and ``import sasc_ttrl`` alone loads neither torch nor TRL."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sasc_ttrl

HEAVY = ("torch", "trl", "transformers", "datasets", "accelerate")


def test_import_is_light():
    code = f"import sys, sasc_ttrl; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import sasc_ttrl loaded {out}"


def test_pure_names_load_without_torch():
    code = (
        "import sys; from sasc_ttrl import VoteSettings, stability_vote, majority_vote, sasc_vote, pass_at_k; "
        "print('torch' in sys.modules, 'trl' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False False"


@pytest.mark.parametrize("name", sasc_ttrl.__all__)
def test_every_public_name_resolves(name):
    assert getattr(sasc_ttrl, name) is not None
    assert name in dir(sasc_ttrl)


def test_public_names_are_the_implementations():
    from sasc_ttrl.core.voting import stability_vote
    from sasc_ttrl.training.configs import SASCConfig
    from sasc_ttrl.training.trainer import SASCTrainer

    assert sasc_ttrl.SASCTrainer is SASCTrainer
    assert sasc_ttrl.SASCConfig is SASCConfig
    assert sasc_ttrl.stability_vote is stability_vote
    assert sasc_ttrl.pass_at_k(4, 1, 1) == pytest.approx(0.25)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        sasc_ttrl.NoSuchThing  # noqa: B018
