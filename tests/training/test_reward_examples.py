"""The ``Example:`` of every registered reward runs and prints what its docstring says (doctest)."""

from __future__ import annotations

import doctest
import inspect

import pytest

from sasc_ttrl.training.rewards import REWARD_FACTORIES


@pytest.mark.parametrize("name", sorted(REWARD_FACTORIES))
def test_every_registered_reward_has_an_example_that_holds(name):
    factory = REWARD_FACTORIES[name]
    finder = doctest.DocTestFinder(recurse=False)
    (test,) = finder.find(factory, name, globs={}, module=inspect.getmodule(factory))
    assert test.examples, f"the {name!r} reward's docstring has no Example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test, out=lambda text: pytest.fail(f"{name!r} example failed:\n{text}"))
    assert result.attempted == len(test.examples) and result.failed == 0
