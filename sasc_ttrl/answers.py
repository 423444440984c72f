"""Final answers: extract them from a completion and decide mathematical equivalence.

Equivalence is decided by `math-verify` (never string equality), with two guards:

* math-verify's own timeouts use POSIX signals, which fail off the main thread (dataloader workers, reward
  threads). They are disabled (``parsing_timeout=None`` / ``timeout_seconds=None``) and a timeout of our own is
  enforced by running the check in a worker thread. A check that times out counts as "not equivalent".
* Identical normalised strings are equivalent without calling math-verify, and every parse and pairwise
  verdict is cached, so grouping a group of rollouts calls math-verify once per *distinct* pair.
* Two plain numbers whose values differ by far more than math-verify's tolerance are told apart without its
  ``simplify`` (tens of milliseconds when an irrational is involved); tests check math-verify agrees.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import lru_cache

logger = logging.getLogger(__name__)

# math-verify warns on every call when its signal timeouts are disabled; we enforce our own.
logging.getLogger("math_verify").setLevel(logging.ERROR)
logging.getLogger("math_verify.parser").setLevel(logging.ERROR)
logging.getLogger("math_verify.grader").setLevel(logging.ERROR)

DEFAULT_TIMEOUT_SECONDS = 5.0
_BOXED_COMMANDS = ("\\boxed", "\\fbox")
# The closing period must end the sentence (followed by whitespace or the line's end), or "3.5." would give "3".
_ANSWER_IS = re.compile(r"answer is[:\s]*\$?([^\n$]+?)\$?\s*(?:\.(?=\s|$)|$)", re.IGNORECASE | re.MULTILINE)
_GSM8K_ANSWER = re.compile(r"####\s*([^\n]+)")
_executor: ThreadPoolExecutor | None = None


def _last_braced_argument(text: str, command: str) -> tuple[int, str] | None:
    """Return ``(position, content)`` of the last ``command{...}`` in ``text`` with balanced braces, or None."""
    start = text.rfind(command)
    while start != -1:
        i = start + len(command)
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return start, text[i + 1 : j]
            # Unbalanced (truncated completion): look at an earlier occurrence.
        start = text.rfind(command, 0, start)
    return None


def extract_answer(text: str | None) -> str | None:
    """Extract the final answer of a completion.

    The last ``\\boxed{...}`` (or ``\\fbox{...}``) wins; otherwise a GSM8K-style ``#### answer`` line; otherwise the
    last "the answer is ..." sentence. Returns ``None`` when the completion states no answer.

    Args:
        text: The completion text.

    Returns:
        The answer string, stripped, or ``None``.
    """
    if not text:
        return None
    # The last balanced box of any command wins (a truncated later box falls back to the latest complete one).
    boxed = [hit for c in _BOXED_COMMANDS if (hit := _last_braced_argument(text, c)) is not None and hit[1].strip()]
    if boxed:
        return max(boxed)[1].strip()
    match = _GSM8K_ANSWER.findall(text)
    if match and match[-1].strip():
        return match[-1].strip()
    match = _ANSWER_IS.findall(text)
    if match and match[-1].strip():
        return match[-1].strip()
    return None


_REMOVALS = ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "$", "\\displaystyle")


def normalize_answer(answer: str) -> str:
    """Cheap, safe string normalisation used only to short-circuit obviously identical answers.

    Two answers with the same normalised form are equivalent without calling math-verify. Different normalised
    forms say nothing: math-verify decides.
    """
    s = answer.strip()
    for token in _REMOVALS:
        s = s.replace(token, "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\\text\{\s*([^{}]*?)\s*\}", r"\1", s)
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    if re.fullmatch(r"-?\d+\.\d*?0+", s):  # 2.50 -> 2.5, 3.0 -> 3
        s = s.rstrip("0").rstrip(".")
    return s


@lru_cache(maxsize=65536)
def _parse(answer: str):
    from math_verify import parse

    text = answer if "$" in answer or "\\boxed" in answer else f"${answer}$"
    return parse(text, parsing_timeout=None)


@lru_cache(maxsize=262144)
def _verify_uncached_timeout_free(gold: str, pred: str) -> bool:
    from math_verify import verify

    gold_parsed, pred_parsed = _parse(gold), _parse(pred)
    if not gold_parsed or not pred_parsed:
        return False
    if _numbers_clearly_differ(gold_parsed, pred_parsed):
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _numbers_clearly_differ(gold_parsed: list, pred_parsed: list) -> bool:
    """Whether both answers parsed to plain numbers whose values differ by far more than math-verify's tolerance.

    math-verify then answers "not equivalent" too, but only after ``simplify(gold - pred)``, which takes tens of
    milliseconds when an irrational (``\\sqrt{2}/2``, ``\\pi/2``) meets another number. Anything else -- symbols,
    relations, sets, matrices, percentages (``9\\% = 9`` for math-verify), values within 1e-5 -- is left to it.
    """
    import sympy

    if len(gold_parsed) != 2 or len(pred_parsed) != 2:
        return False
    (gold_expr, gold_text), (pred_expr, pred_text) = gold_parsed, pred_parsed
    if not (isinstance(gold_text, str) and isinstance(pred_text, str)) or gold_text.strip() == pred_text.strip():
        return False
    for expr in (gold_expr, pred_expr):
        if (
            not isinstance(expr, sympy.Expr)
            or isinstance(expr, sympy.MatrixBase | sympy.MatrixExpr)
            or not expr.is_number
            or expr.has(sympy.UnevaluatedExpr)
        ):
            return False
    try:
        gold_value, pred_value = complex(gold_expr.evalf(30)), complex(pred_expr.evalf(30))
    except (TypeError, ValueError, ArithmeticError):
        return False
    if not all(map(math.isfinite, (gold_value.real, gold_value.imag, pred_value.real, pred_value.imag))):
        return False
    # math-verify rounds floats to 6 decimals: values 1e-5 (relative, at least absolute) apart never match.
    return abs(gold_value - pred_value) > 1e-5 * max(1.0, abs(gold_value), abs(pred_value))


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="math-verify")
    return _executor


def is_equivalent(gold: str | None, pred: str | None, timeout: float | None = DEFAULT_TIMEOUT_SECONDS) -> bool:
    """Whether ``pred`` is mathematically equivalent to ``gold``.

    math-verify's ``verify`` is not symmetric: ``gold`` goes first. ``None`` is never equivalent to anything.

    Args:
        gold: The reference answer (a pseudo-label or a ground-truth answer).
        pred: The answer to check.
        timeout: Seconds allowed for one check; a check that takes longer counts as not equivalent. ``None`` runs
            the check inline with no limit.
    """
    if gold is None or pred is None:
        return False
    if normalize_answer(gold) == normalize_answer(pred):
        return True
    if timeout is None:
        return _safe_verify(gold, pred)
    future = _get_executor().submit(_safe_verify, gold, pred)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        logger.warning("math-verify timed out after %.1fs on %r vs %r; counted as not equivalent", timeout, gold, pred)
        # The worker thread cannot be killed; start a fresh executor so the next checks are not queued behind it.
        global _executor
        _executor = None
        return False


def _safe_verify(gold: str, pred: str) -> bool:
    try:
        return _verify_uncached_timeout_free(gold, pred)
    except Exception as err:  # noqa: BLE001 - a malformed answer must never crash training
        logger.debug("math-verify failed on %r vs %r: %s", gold, pred, err)
        return False


def clear_caches() -> None:
    """Forget every cached parse and verdict (benchmarks measure the cold path with it)."""
    _parse.cache_clear()
    _verify_uncached_timeout_free.cache_clear()


def group_equivalent(
    answers: Sequence[str | None], timeout: float | None = DEFAULT_TIMEOUT_SECONDS
) -> list[int | None]:
    """Group answers into equivalence classes.

    Classes are numbered in order of first appearance; the first answer of a class is its representative and is
    the ``gold`` side of every math-verify check against it. Identical normalised strings share a class without
    calling math-verify.

    Args:
        answers: One answer per rollout, ``None`` where the rollout gave none.
        timeout: Per-check timeout, see [`is_equivalent`].

    Returns:
        One class index per answer (``None`` for a missing answer).
    """
    classes: list[int | None] = []
    representatives: list[str] = []
    by_normal: dict[str, int] = {}
    for answer in answers:
        if answer is None:
            classes.append(None)
            continue
        key = normalize_answer(answer)
        if key in by_normal:
            classes.append(by_normal[key])
            continue
        found = None
        for idx, rep in enumerate(representatives):
            if is_equivalent(rep, answer, timeout=timeout):
                found = idx
                break
        if found is None:
            found = len(representatives)
            representatives.append(answer)
        by_normal[key] = found
        classes.append(found)
    return classes
