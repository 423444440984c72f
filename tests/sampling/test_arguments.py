"""`SamplingArguments`: every command that samples takes its five fields from it and keeps its own defaults."""

from __future__ import annotations

import dataclasses

import pytest

from sasc_ttrl.commands import build
from sasc_ttrl.commands import eval as evaluate
from sasc_ttrl.experimental.prm import runner as prm
from sasc_ttrl.experimental.self_improve import runner as self_improve
from sasc_ttrl.sampling.arguments import SamplingArguments, sampling_field

FIELDS = ("temperature", "top_p", "max_tokens", "answer_timeout", "prompt_style")
# The defaults each command had when it declared these fields itself: the behaviour to keep.
DEFAULTS = {
    "eval": (evaluate.EvalArguments, evaluate.make_parser, (0.6, 0.95, 3072, 5.0, "math")),
    "build": (build.BuildArguments, build.make_parser, (0.1, 1.0, 3072, 5.0, "math")),
    "prm": (prm.PRMArguments, prm.make_parser, (0.8, 1.0, 256, 5.0, None)),  # None: the builder output's style
    "self-improve": (self_improve.SelfImproveArguments, self_improve.make_parser, (0.8, 1.0, 256, 5.0, "math")),
}


@pytest.mark.parametrize("command", sorted(DEFAULTS))
def test_each_command_keeps_its_sampling_defaults(command):
    cls, make_parser, expected = DEFAULTS[command]
    assert issubclass(cls, SamplingArguments)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert tuple(fields[name].default for name in FIELDS) == expected
    parser = make_parser()
    assert tuple(parser.get_default(name) for name in FIELDS) == expected  # what the flags default to
    for name in FIELDS:  # one help text per field (prm words its own prompt_style, whose default differs)
        if (command, name) != ("prm", "prompt_style"):
            assert fields[name].metadata["help"] == SamplingArguments.__dataclass_fields__[name].metadata["help"]


def test_sampling_field_keeps_the_help_and_refuses_unknown_names():
    top_p = sampling_field("top_p", 0.95)
    assert top_p.default == 0.95 and top_p.metadata["help"] == "Nucleus sampling mass, in (0, 1]."
    with pytest.raises(KeyError):
        sampling_field("top_k", 20)
