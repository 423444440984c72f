"""How a question is asked: the prompt styles shared by ``train``, ``eval``, ``build``, ``prm``, ``self-improve``."""

from __future__ import annotations

from typing import Any

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
WORD_PROBLEM_INSTRUCTION = "Give a one-line calculation, then the final answer within \\boxed{}."
WORD_PROBLEM_EXAMPLE = (
    "Ann has 3 pens. She buys 2 more. How many pens does Ann have now?",
    "3 + 2 = 5. The answer is \\boxed{5}.",
)
# How a question is asked: ``math`` (the standard step-by-step / \boxed{} instruction, the default everywhere),
# ``word_problem_one_shot`` (one worked example, then a one-line-calculation instruction; it fixes the answer format
# of a small instruct model such as SmolLM2-135M-Instruct, see docs/studies/demo.md), or ``raw`` (the question as it
# is, for data whose questions already carry their instruction).
PROMPT_STYLES = ("math", "word_problem_one_shot", "raw")


def check_prompt_style(style: str) -> str:
    """``style`` when it is one of ``PROMPT_STYLES``; else a ValueError naming it and the known styles."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {style!r}")
    return style


def prompt_messages(question: str, style: str = "math", system_prompt: str | None = None) -> list[dict[str, str]]:
    """The chat messages of ``question`` in a prompt style, after a system message when ``system_prompt`` is given.

    ``math`` is one user message: the question, then the step-by-step / ``\\boxed{}`` instruction.
    ``word_problem_one_shot`` is a worked example as a first user / assistant turn, then the question with the
    one-line-calculation instruction. ``raw`` is the question alone.
    """
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    if check_prompt_style(style) == "math":
        return [*system, {"role": "user", "content": f"{question}\n{MATH_INSTRUCTION}"}]
    if style == "raw":
        return [*system, {"role": "user", "content": question}]
    example_q, example_a = WORD_PROBLEM_EXAMPLE
    return [
        *system,
        {"role": "user", "content": f"{example_q}\n{WORD_PROBLEM_INSTRUCTION}"},
        {"role": "assistant", "content": example_a},
        {"role": "user", "content": f"{question}\n{WORD_PROBLEM_INSTRUCTION}"},
    ]


def build_prompt(
    question: str, tokenizer: Any = None, style: str = "math", system_prompt: str | None = None
) -> str | list[dict[str, str]]:
    """The prompt of ``question`` in a prompt style (see [`prompt_messages`]).

    Returns the messages (TRL applies the chat template) when ``tokenizer`` has a chat template, else plain text:
    the turns joined by blank lines.

    Raises:
        ValueError: naming an unknown style and the known ones.
    """
    messages = prompt_messages(question, style, system_prompt)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return messages
    return "\n\n".join(m["content"] for m in messages)


def render_prompt(question: str, tokenizer: Any, style: str = "math", system_prompt: str | None = None) -> str:
    """The prompt of ``question`` (see [`build_prompt`]) as the text the model reads (chat template applied)."""
    prompt = build_prompt(question, tokenizer, style, system_prompt)
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def is_conversation(value: Any) -> bool:
    """Whether ``value`` is a prompt in TRL's conversational format: a non-empty list of ``{role, content}``."""
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)
    )
