"""math-verify's verdict on two answers, with the guards that keep sympy from spending hours on one check.

[`_safe_verify`] parses both answers (cached), refuses numbers of more than ``MAX_DIGITS`` digits, decides plain
numbers far apart without ``simplify``, and otherwise asks math-verify; any exception counts as "not equivalent".
It runs without a time limit: `answers.is_equivalent` calls it inline for trusted answers, and the verify worker
(`verify_process`) calls it inside a process that is killed when a check overruns.
"""

from __future__ import annotations

import logging
import math

from .byte_cache import byte_budget_cache

logger = logging.getLogger(__name__)

ANSWER_CACHE_BYTES = 16 * 2**20  # parsed answers (math-verify's parse), per process
VERDICT_CACHE_BYTES = 8 * 2**20  # verdicts, per cache: math-verify's own (in the verify worker) and the timed ones


@byte_budget_cache(ANSWER_CACHE_BYTES)
def _parse(answer: str):
    from math_verify import parse

    answer = answer.replace("\\$", "")  # a currency sign, not a math delimiter
    text = answer if "$" in answer or "\\boxed" in answer else f"${answer}$"
    return parse(text, parsing_timeout=None)


@byte_budget_cache(VERDICT_CACHE_BYTES)
def _verify_uncached_timeout_free(gold: str, pred: str) -> bool:
    from math_verify import verify

    gold_parsed, pred_parsed = _parse(gold), _parse(pred)
    if not gold_parsed or not pred_parsed:
        return False
    if _too_large(gold_parsed) or _too_large(pred_parsed):
        return False
    if _numbers_clearly_differ(gold_parsed, pred_parsed):
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


MAX_DIGITS = 10_000  # no answer has a number with more digits; sympy would spend hours or gigabytes on one


def _too_large(parsed: list) -> bool:
    """Whether a parsed answer holds a number of more than ``MAX_DIGITS`` digits (``9^{9^{9}}``, ``(10^{10})!``).

    Estimated on the unevaluated expression from the logarithms of its parts, so the number is never built. Such an
    answer is equivalent only to the same normalised string.
    """
    import sympy

    sized = (sympy.Pow, sympy.exp, sympy.factorial, sympy.factorial2, sympy.binomial, sympy.Integer)
    return any(
        isinstance(expr, sympy.Basic) and _log10_size(node) > MAX_DIGITS
        for expr in parsed[:1]
        for node in sympy.preorder_traversal(expr)
        if isinstance(node, sized)
    )


def _log10_size(expr) -> float:
    """An estimate of ``log10(|value|)`` of a numeric sub-expression, from above (``0.0`` when unknown or below 1)."""
    import sympy

    if isinstance(expr, sympy.Integer | sympy.Rational):
        return max(math.log10(abs(int(expr.p))) if expr.p else 0.0, math.log10(int(expr.q)), 0.0)
    if isinstance(expr, sympy.Float):
        return max(math.log10(abs(float(expr))), 0.0) if expr else 0.0
    if isinstance(expr, sympy.Pow):
        base, exponent = expr.args
        return _value(exponent) * _log10_size(base)
    if isinstance(expr, sympy.exp):
        return _value(expr.args[0]) * math.log10(math.e)
    if isinstance(expr, sympy.factorial | sympy.factorial2):
        n = _value(expr.args[0])  # Stirling: log10(n!) ~ n log10(n / e) + log10(2 pi n) / 2
        size = n * math.log10(n / math.e) + math.log10(2 * math.pi * n) / 2 if n > 2 else 0.0
        return size / 2 if isinstance(expr, sympy.factorial2) else size
    if isinstance(expr, sympy.binomial):
        n, k = _value(expr.args[0]), _value(expr.args[1])
        return min(n * math.log10(2), k * math.log10(max(n, 1.0)))
    if isinstance(expr, sympy.Mul):
        return sum(_log10_size(arg) for arg in expr.args)
    if isinstance(expr, sympy.Add):
        return max(_log10_size(arg) for arg in expr.args) + math.log10(len(expr.args))
    return 0.0


def _value(expr) -> float:
    """An estimate of ``|value|`` from above (``inf`` when it does not fit a float)."""
    size = _log10_size(expr)
    return math.inf if size > 300 else 10.0**size


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


def _safe_verify(gold: str, pred: str) -> bool:
    try:
        return _verify_uncached_timeout_free(gold, pred)
    except Exception as err:  # noqa: BLE001 - a malformed answer must never crash training
        logger.debug("math-verify failed on %r vs %r: %s", gold, pred, err)
        return False


def clear_caches() -> None:
    """Forget every cached parse and math-verify verdict of this process."""
    _parse.cache_clear()
    _verify_uncached_timeout_free.cache_clear()
