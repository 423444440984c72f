"""Reasoning steps of a completion: split the text into steps and map each generated token to its step.

A step is a sentence or a line: lines are split at line breaks, then at a sentence end (``.``, ``!`` or ``?``
followed by white space). A decimal point ("3.5") does not end a step. ``"7 + 5 = 12. The answer is \\boxed{12}."``
has two steps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_LINE = re.compile(r"[^\n]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_DETOKENIZE_WINDOW = 6


def step_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the steps of ``text`` (white space trimmed, empty steps skipped)."""
    spans = []
    for line in _LINE.finditer(text):
        start = line.start()
        for cut in [*_SENTENCE_END.finditer(line.group()), None]:
            end = line.start() + cut.start() if cut is not None else line.end()
            piece = text[start:end]
            if piece.strip():
                lead = len(piece) - len(piece.lstrip())
                spans.append((start + lead, start + len(piece.rstrip())))
            if cut is not None:
                start = line.start() + cut.end()
    return spans


def split_steps(text: str) -> list[str]:
    """The steps of ``text`` (see the module docstring); a text without any non-space character has none."""
    return [text[a:b] for a, b in step_spans(text)]


def token_pieces(tokenizer: Any, token_ids: Sequence[int]) -> list[str]:
    """The text each token adds to the decoded completion (special tokens add nothing).

    Decodes a short window ending at each token and keeps the difference, the way streaming detokenizers do, so that
    tokenizers which drop or merge leading spaces when a token is decoded alone still give pieces that join to the
    decoded text.
    """
    pieces = []
    ids = list(token_ids)
    for j in range(len(ids)):
        start = max(0, j - _DETOKENIZE_WINDOW)
        before = tokenizer.decode(ids[start:j], skip_special_tokens=True)
        through = tokenizer.decode(ids[start : j + 1], skip_special_tokens=True)
        common = 0
        while common < min(len(before), len(through)) and before[common] == through[common]:
            common += 1
        pieces.append(through[common:])
    return pieces


def token_step_index(pieces: Sequence[str]) -> tuple[list[str], list[int]]:
    """Steps of the joined ``pieces`` and the step index of every token.

    A token belongs to the step of its first non-space character; a token with no such character (a space, a line
    break, an end-of-sequence token) belongs to the step before it (the first step when there is none before).

    Returns:
        ``(steps, token_steps)``: the step texts, and one step index per piece. With no step at all, every token
        gets step 0 and the whole text is the single step.
    """
    text = "".join(pieces)
    spans = step_spans(text)
    if not spans:
        return ([text] if text else []), [0] * len(pieces)
    owner = [-1] * len(text)
    for index, (a, b) in enumerate(spans):
        for pos in range(a, b):
            owner[pos] = index
    token_steps = []
    offset = 0
    previous = 0
    for piece in pieces:
        step = None
        for k, ch in enumerate(piece):
            if not ch.isspace() and owner[offset + k] >= 0:
                step = owner[offset + k]
                break
        if step is None:
            step = previous
        token_steps.append(step)
        previous = step
        offset += len(piece)
    return [text[a:b] for a, b in spans], token_steps
