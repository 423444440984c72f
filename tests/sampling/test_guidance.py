"""The guidance strategies of Guided Self-Improvement on hand-made attempts: answer, rationale, state reset, and the
interactive teacher through the OpenAI-compatible client against a loopback server."""

from __future__ import annotations

import pytest

from sasc_ttrl.core.answers import extract_answer
from sasc_ttrl.sampling.guidance import (
    GUIDANCE_STRATEGIES,
    answer_free_prefix,
    answer_hint,
    plan_guidance,
    rationale_hint,
    state_reset_prefix,
    teacher_messages,
)
from sasc_ttrl.sampling.openai_client import KeyStepClient
from tests.helpers.loopback_chat import LoopbackChatServer

TEACHER_REPLY = "The first step is wrong: 7 - 2 is 5, not 4."


@pytest.fixture
def teacher_server():
    server = LoopbackChatServer(TEACHER_REPLY)
    yield server
    server.close()


QUESTION = "Ann has 7 pens and gives away 2. How many are left?"
TEXTS = [
    "7 - 2 = 4. The answer is \\boxed{4}.",
    "Ann starts with 7.\n7 - 2 = 5. The answer is \\boxed{5}.",
    "7 - 2 = 5. \\boxed{5}",
    "I am not sure.",
]
ANSWERS = [extract_answer(t) for t in TEXTS]
CLASSES = [0, 1, 1, None]
AGREE = [False, True, True, False]


def plan(strategy, target="5", rationale=None, teacher=None, agree=AGREE):
    return plan_guidance(strategy, QUESTION, TEXTS, ANSWERS, CLASSES, agree, target, rationale, teacher)


def test_answer_free_prefix_and_the_state_to_reset_to():
    assert answer_free_prefix(TEXTS[1]) == "Ann starts with 7.\n7 - 2 = 5."
    assert answer_free_prefix(TEXTS[2]) == "7 - 2 = 5."
    assert answer_free_prefix("\\boxed{5}") == "" and answer_free_prefix("") == ""
    # GSM8K's worked solution: every line but the "#### 18" one
    gsm8k = "Janet sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = $18.\n#### 18"
    assert answer_free_prefix(gsm8k) == "Janet sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = $18."
    # the longest answer-free prefix among the agreeing attempts (the first attempt disagrees)
    assert state_reset_prefix(TEXTS, AGREE) == "Ann starts with 7.\n7 - 2 = 5."
    assert state_reset_prefix(TEXTS, [True, False, False, False]) == "7 - 2 = 4."
    assert state_reset_prefix(TEXTS, [False] * 4) is None
    assert state_reset_prefix(["\\boxed{5}"], [True]) is None  # nothing before the answer
    with pytest.raises(ValueError, match="agreement flags"):
        state_reset_prefix(TEXTS, [True])


def test_each_strategy_plans_its_guidance():
    socratic = plan("socratic")
    assert socratic.hint.startswith("Earlier attempts at this problem disagree: they answered 5 (2 times), 4 (1 time)")
    assert plan("answer").hint == answer_hint("5") and "final answer is 5" in plan("answer").hint
    no_target = plan("answer", target=None)
    assert not no_target.guided and no_target.note == "no target answer"
    gsm8k = "She sells 16 - 3 = <<16-3=13>>13 eggs.\n#### 26"
    rationale = plan("rationale", rationale=gsm8k)
    assert (
        rationale.hint == rationale_hint(gsm8k) and "<<" not in rationale.hint and "16 - 3 = 13 eggs" in rationale.hint
    )
    assert plan("rationale").note == "no reference rationale"
    reset = plan("state_reset")
    assert reset.prefix == "Ann starts with 7.\n7 - 2 = 5." and reset.hint is None and reset.guided
    # no agreeing attempt: the paper's reset, from the reference rationale's answer-free prefix
    fallback = plan("state_reset", rationale="7 - 2 = 5. The answer is \\boxed{5}.", agree=[False] * 4)
    assert fallback.prefix == "7 - 2 = 5."
    assert plan("state_reset", agree=[False] * 4).note == "no answer-free step prefix"
    with pytest.raises(ValueError, match="guidance must be one of"):
        plan("brute_force")
    assert set(GUIDANCE_STRATEGIES) == {"socratic", "answer", "rationale", "interactive", "state_reset"}


def test_interactive_guidance_asks_a_teacher_over_http(teacher_server):
    client = KeyStepClient(api_base=teacher_server.api_base, model="teacher-model", backoff=0.0, max_tokens=64)
    result = plan("interactive", teacher=client.chat)
    [request] = [r["body"] for r in teacher_server.requests]
    assert request["model"] == "teacher-model" and request["max_tokens"] == 64
    assert request["messages"] == teacher_messages(QUESTION, TEXTS[0], "5")  # the first wrong attempt, the target
    user = request["messages"][1]["content"]
    assert TEXTS[0] in user and "Correct final answer:\n5" in user
    assert TEACHER_REPLY in result.hint and TEXTS[0] in result.hint and result.guided
    assert "Correct final answer" not in teacher_messages(QUESTION, TEXTS[0], None)[1]["content"]
    # A teacher that keeps failing leaves the question unguided and says why; the run goes on.
    teacher_server.failures = 10
    failing = KeyStepClient(api_base=teacher_server.api_base, model="t", backoff=0.0, max_retries=1)
    failed = plan("interactive", teacher=failing.chat)
    assert not failed.guided and failed.note.startswith("teacher failed: chat request failed after 2 attempts")
    with pytest.raises(ValueError, match="needs a teacher"):
        plan("interactive")
