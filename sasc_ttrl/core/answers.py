"""Final answers: extract them from a completion and decide mathematical equivalence.

Equivalence is decided by `math-verify` (never string equality), with two guards:

* math-verify's own timeouts use POSIX signals, which fail off the main thread (dataloader workers, reward
  threads). They are disabled (``parsing_timeout=None`` / ``timeout_seconds=None``) and a timeout of our own is
  enforced by running the check in a separate process that is killed when it overruns ([`verify_process`]; a
  thread would not do: sympy evaluating ``9^{9^{9}}`` holds the GIL). A check that times out counts as "not
  equivalent". Answers longer than ``MAX_VERIFY_CHARS``, or holding a number of more than ``MAX_DIGITS`` digits
  (estimated without building it), are equal only to the same normalised string.
* Model output is text, never code: nothing here evaluates it (math-verify parses LaTeX with its own grammar and
  plain expressions only from digits and operators), and extraction and normalisation run in linear time on any
  input (1 MB completions, thousands of unbalanced ``\\boxed{``).
* Identical normalised strings are equivalent without calling math-verify, and every parse and pairwise
  verdict is cached, so grouping a group of rollouts calls math-verify once per *distinct* pair. The caches are
  least-recently-used and bounded in bytes (`byte_cache`), not entries: at most ``ANSWER_CACHE_BYTES`` of parsed
  answers and ``VERDICT_CACHE_BYTES`` of verdicts for each of the two verdict caches, 32 MiB per process in all.
* Two plain numbers whose values differ by far more than math-verify's tolerance are told apart without its
  ``simplify`` (tens of milliseconds when an irrational is involved); tests check math-verify agrees.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Sequence
from fractions import Fraction

from . import math_equivalence, verify_process
from .byte_cache import byte_budget_cache
from .math_equivalence import VERDICT_CACHE_BYTES

logger = logging.getLogger(__name__)

# math-verify warns on every call when its signal timeouts are disabled; we enforce our own.
logging.getLogger("math_verify").setLevel(logging.ERROR)
logging.getLogger("math_verify.parser").setLevel(logging.ERROR)
logging.getLogger("math_verify.grader").setLevel(logging.ERROR)

DEFAULT_TIMEOUT_SECONDS = 5.0
MAX_VERIFY_CHARS = 2000  # longer answers are compared as normalised strings only
_BOXED_COMMANDS = ("\\boxed", "\\fbox")
_BOX_OPENINGS = {c: re.compile(re.escape(c) + r" *\{") for c in _BOXED_COMMANDS}
_BRACES = re.compile(r"[{}]")
# "the answer is": what follows, up to the line's end or a "$"; the answer ends at the first period that ends a
# sentence (followed by whitespace or the end), or "3.5." would give "3". Scanned without backtracking.
_ANSWER_IS = re.compile(r"answer is[:\s]*\$?", re.IGNORECASE)
_ANSWER_END = re.compile(r"[\n$]")
_SENTENCE_END = re.compile(r"\.(?=\s|$)")
_GSM8K_ANSWER = re.compile(r"####\s*([^\n]+)")
# "\boxed 7" (TeX's one-token argument, no braces): the token runs to the next space, "$" or "}".
_BRACELESS_BOX = re.compile(r"\\(?:boxed|fbox)[ \t]+([^\s${}]+)")
# An answer that is only an empty box ("\boxed{}", "$\boxed{ }$") states nothing.
_EMPTY_BOX = re.compile(r"\$?\s*\\(?:boxed|fbox)\s*\{\s*\}\s*\$?\.?")
# "the answer is 18, which is Sam's total" -> "18": a number followed by a comma and words, or by a connective, is the
# number (tuples such as "1, 2" and expressions such as "2 x" are left alone).
_NUMBER_THEN_PROSE = re.compile(
    r"([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?)"
    r"(?:,\s+[a-z]|\s+(?:which|because|since|so|as|and|that|is|are|for)\b)"
)


def _last_braced_argument(text: str, command: str) -> tuple[int, str] | None:
    """Return ``(position, content)`` of the last ``command{...}`` in ``text`` with balanced braces, or None.

    One pass over the braces (linear time, whatever the nesting or the number of unbalanced openings).
    """
    openings = {m.end() - 1: m.start() for m in _BOX_OPENINGS[command].finditer(text)}
    if not openings:
        return None
    stack: list[int] = []
    last: tuple[int, str] | None = None
    for brace in _BRACES.finditer(text):
        position = brace.start()
        if text[position] == "{":
            stack.append(position)
        elif stack:
            opened = stack.pop()
            if opened in openings and (last is None or openings[opened] > last[0]):
                last = (openings[opened], text[opened + 1 : position])
    return last


def _answer_is(text: str) -> str | None:
    """The answer of the last "the answer is ..." sentence, or None."""
    heads = list(_ANSWER_IS.finditer(text))
    if not heads:
        return None
    stops = [m.start() for m in _ANSWER_END.finditer(text)] + [len(text)]
    ends = [m.start() for m in _SENTENCE_END.finditer(text)]
    for head in reversed(heads):
        start = head.end()
        stop = stops[bisect.bisect_left(stops, start)]
        i = bisect.bisect_left(ends, start + 1)
        if i < len(ends) and ends[i] < stop:
            stop = ends[i]
        elif stop < len(text) and text[stop] == "$" and not _closing_dollar_ends_answer(text, stop):
            continue
        answer = text[start:stop].strip()
        if answer:
            prose = _NUMBER_THEN_PROSE.match(answer)
            return prose.group(1) if prose else answer
    return None


def _closing_dollar_ends_answer(text: str, dollar: int) -> bool:
    """Whether the ``$`` at ``dollar`` is followed by the end of the line or a sentence-ending period."""
    after = len(text) - len(text[dollar + 1 :].lstrip())
    if after == len(text) or "\n" in text[dollar + 1 : after]:
        return True
    return text[after] == "." and (after + 1 == len(text) or text[after + 1].isspace())


def boxed_answer(text: str | None) -> str | None:
    """The content of the last non-empty ``\\boxed{...}`` / ``\\fbox{...}`` with balanced braces, else of the last
    brace-less ``\\boxed 7``; ``None`` when the completion boxes nothing (the first rule of [`extract_answer`]).

    Example: ``boxed_answer("3 x 4 = 12. The answer is \\boxed{12}.")`` is ``"12"``; ``boxed_answer("12")`` is None.
    """
    if not text:
        return None
    # The last balanced box of any command wins (a truncated later box falls back to the latest complete one).
    boxed = [hit for c in _BOXED_COMMANDS if (hit := _last_braced_argument(text, c)) is not None and hit[1].strip()]
    if boxed:
        return max(boxed)[1].strip()
    braceless = _BRACELESS_BOX.findall(text)
    if braceless and braceless[-1].rstrip("."):
        return braceless[-1].rstrip(".")
    return None


def extract_answer(text: str | None) -> str | None:
    """Extract the final answer of a completion.

    The last ``\\boxed{...}`` (or ``\\fbox{...}``) wins; then a brace-less ``\\boxed 7`` (TeX's one-token argument);
    otherwise a GSM8K-style ``#### answer`` line; otherwise the last "the answer is ..." sentence. Returns ``None``
    when the completion states no answer (an empty ``\\boxed{}`` states none).

    Args:
        text: The completion text.

    Returns:
        The answer string, stripped, or ``None``.
    """
    if not text:
        return None
    boxed = boxed_answer(text)
    if boxed is not None:
        return boxed
    match = _GSM8K_ANSWER.findall(text)
    if match and match[-1].strip():
        return match[-1].strip()
    answer = _answer_is(text)
    return None if answer is None or _EMPTY_BOX.fullmatch(answer) else answer


# "\$" (an escaped dollar sign: currency in MATH-500 golds such as "\$18.90") goes before "$" (math delimiters).
_REMOVALS = ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\$", "$", "\\displaystyle")


def normalize_answer(answer: str) -> str:
    """Cheap, safe string normalisation used only to short-circuit obviously identical answers.

    Two answers with the same normalised form are equivalent without calling math-verify. Different normalised
    forms say nothing: math-verify decides.
    """
    s = answer.strip()
    for token in _REMOVALS:
        s = s.replace(token, "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\\text\{([^{}]*)\}", lambda m: m.group(1).strip(), s)
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    if s.endswith("0") and re.fullmatch(r"-?\d+\.\d+", s):  # 2.50 -> 2.5, 3.0 -> 3
        s = s.rstrip("0").rstrip(".")
    return s


_INTEGER_OR_DECIMAL = re.compile(r"-?(?:\d{1,15}(?:\.\d{1,15})?|\.\d{1,15})")
_FRACTIONS = (  # (sign, numerator, denominator), on normalised answers (\dfrac and \tfrac are \frac by then)
    re.compile(r"(-?)\\frac\{(-?\d{1,15})\}\{(\d{1,15})\}"),
    re.compile(r"(-?)\\frac(\d)(\d)"),
    re.compile(r"(-?)(\d{1,15})/(\d{1,15})"),
)


def _plain_rational(answer: str) -> Fraction | None:
    """The exact value of a plain integer, decimal or fraction answer (``-3``, ``.5``, ``\\dfrac12``, ``3/8``,
    ``\\frac{-1}{4}``); ``None`` for anything else (percentages, units, sets, ...)."""
    if "\\text" in answer or "," in answer:  # "\text{5}" and "1,000" are left to math-verify's own reading
        return None
    s = normalize_answer(answer)
    if _INTEGER_OR_DECIMAL.fullmatch(s):
        return Fraction(s)
    for pattern in _FRACTIONS:
        if match := pattern.fullmatch(s):
            sign, numerator, denominator = match.groups()
            if int(denominator) == 0:
                return None
            return Fraction(int(numerator), int(denominator)) * (-1 if sign else 1)
    return None


def _rational_verdict(gold: str, pred: str) -> bool | None:
    """math-verify's verdict on two plain rationals, without math-verify: equal values are equivalent, values far
    beyond its 6-decimal rounding apart are not; ``None`` (ask math-verify) otherwise. Tests check it agrees."""
    gold_value, pred_value = _plain_rational(gold), _plain_rational(pred)
    if gold_value is None or pred_value is None:
        return None
    if gold_value == pred_value:
        return True
    if abs(gold_value - pred_value) > Fraction(1, 100_000) * max(1, abs(gold_value), abs(pred_value)):
        return False
    return None


def is_equivalent(gold: str | None, pred: str | None, timeout: float | None = DEFAULT_TIMEOUT_SECONDS) -> bool:
    """Whether ``pred`` is mathematically equivalent to ``gold``.

    math-verify's ``verify`` is not symmetric: ``gold`` goes first. ``None`` is never equivalent to anything.

    Args:
        gold: The reference answer (a pseudo-label or a ground-truth answer).
        pred: The answer to check.
        timeout: Seconds allowed for one check, run in a separate process that is killed when it overruns; a check
            that takes longer counts as not equivalent. ``None`` runs the check inline (in this thread) with no
            limit: only for trusted answers.
    """
    if gold is None or pred is None:
        return False
    if normalize_answer(gold) == normalize_answer(pred):
        return True
    if len(gold) > MAX_VERIFY_CHARS or len(pred) > MAX_VERIFY_CHARS:
        return False
    if timeout is None:
        return math_equivalence._safe_verify(gold, pred)
    return _timed_verdict(gold, pred, float(timeout))


@byte_budget_cache(VERDICT_CACHE_BYTES)
def _timed_verdict(gold: str, pred: str, timeout: float) -> bool:
    """math-verify's verdict from the killable process; a timeout is cached as "not equivalent" like any verdict."""
    verdict = _rational_verdict(gold, pred)
    if verdict is not None:  # two plain rationals: decided here, without a round trip to the verify process
        return verdict
    verdict = verify_process.verify(gold, pred, timeout)
    if verdict is None:
        logger.warning("math-verify: no verdict within %.1fs on %.80r vs %.80r; not equivalent", timeout, gold, pred)
        return False
    return verdict


def clear_caches() -> None:
    """Forget every cached parse and verdict (benchmarks measure the cold path with it)."""
    math_equivalence.clear_caches()
    _timed_verdict.cache_clear()
    verify_process.clear_cache()


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
