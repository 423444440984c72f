"""Answer and verdict caches are bounded in bytes: the memory they keep alive stays under their budget."""

from __future__ import annotations

import gc
import sys
import tracemalloc

import pytest

from sasc_ttrl.core import answers, math_equivalence
from sasc_ttrl.core.byte_cache import ENTRY_OVERHEAD_BYTES, ByteBudgetCache, byte_budget_cache, deep_size

# Answers of every shape math-verify parses: integers, decimals, fractions, radicals, expressions, equations, sets,
# intervals, matrices, text, units, percentages, degrees, complex numbers, sums.
SHAPES = [
    "{i}", "-{i}.25", "\\frac{{{i}}}{{7}}", "\\sqrt{{{i}}}", "{i}\\sqrt{{2}} + \\frac{{\\pi}}{{{i}}}",
    "x^{{2}} + {i}x - 1", "y = {i}x + 3", "\\{{{i}, {i}+1, 2\\}}", "({i}, \\infty)", "[-{i}, 4)",
    "\\begin{{pmatrix}} {i} & 1 \\\\ 0 & 2 \\end{{pmatrix}}", "{i} \\text{{ cents}}", "{i}\\%", "{i}^\\circ",
    "{i} + 2i", "\\sum_{{k=1}}^{{{i}}} k^{{2}}", "\\sin\\left(\\frac{{\\pi}}{{{i}}}\\right)", "\\log_{{2}} {i}",
    "\\text{{(B)}}", "5x - 7y + {i}z + 4 = 0",
]  # fmt: skip


def retained_bytes(fill, clear) -> int:
    """Bytes that ``fill()`` left allocated and ``clear()`` freed: what the cache alone kept alive."""
    gc.collect()
    tracemalloc.start()
    try:
        fill()
        gc.collect()
        full = tracemalloc.get_traced_memory()[0]
        clear()
        gc.collect()
        return full - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


def test_least_recently_used_entries_go_first_and_the_budget_holds():
    cache = ByteBudgetCache(10 * (ENTRY_OVERHEAD_BYTES + 200))
    for i in range(10):
        cache.put((f"{i:>100}",), True)
        assert cache.info().bytes <= cache.budget_bytes
    assert cache.get((f"{0:>100}",)) is True  # 0 is now the most recently used
    for i in range(10, 14):
        cache.put((f"{i:>100}",), False)
        assert cache.info().bytes <= cache.budget_bytes
    kept = [i for i in range(14) if cache.get((f"{i:>100}",)) is not None]
    assert 0 in kept and 1 not in kept and kept[-1] == 13
    assert cache.info().evictions == 14 - cache.info().currsize
    cache.put(("x" * cache.budget_bytes,), True)  # alone over the budget: not cached, nothing evicted
    assert cache.get(("x" * cache.budget_bytes,)) is None and cache.info().currsize == len(kept)
    cache.clear()
    assert cache.info().currsize == 0 and cache.info().bytes == 0
    with pytest.raises(ValueError, match="budget_bytes"):
        ByteBudgetCache(0)


def test_charges_grow_with_the_strings_not_the_entry_count():
    cache = ByteBudgetCache(2**20)
    cache.put(("a", "b", 5.0), True)
    short = cache.info().bytes
    cache.clear()
    cache.put(("a" * 1000, "b" * 1000, 5.0), True)
    assert cache.info().bytes - short == 2 * (sys.getsizeof("a" * 1000) - sys.getsizeof("a"))


@pytest.mark.parametrize("entries", [1000, 5462, 21846, 43691])  # just past dict resizes: the worst slack
def test_verdict_entries_keep_alive_less_than_they_are_charged(entries):
    cache = ByteBudgetCache(2**40)

    def fill():
        for i in range(entries):
            cache.put((f"\\frac{{{i}}}{{7}}", f"{i}.5", 5.0), i % 2 == 0)

    charged = []
    kept = retained_bytes(lambda: (fill(), charged.append(cache.info().bytes)), cache.clear)
    assert 0.5 * charged[0] < kept <= charged[0]


def test_parsed_answers_keep_alive_less_than_they_are_charged():
    """Parsed answers are sympy trees sharing nodes: deep_size counts a shared node once per entry (over-estimate)."""
    from math_verify import parse

    texts = list(dict.fromkeys(f"${shape.format(i=i)}$" for i in range(2, 12) for shape in SHAPES))
    for text in texts:  # sympy's own imports and caches, before measuring
        parse(text, parsing_timeout=None)

    @byte_budget_cache(2**40)
    def cached_parse(text):
        return parse(text, parsing_timeout=None)

    def fill():
        for text in texts:
            cached_parse(text)

    charged = []
    kept = retained_bytes(lambda: (fill(), charged.append(cached_parse.cache_info().bytes)), cached_parse.cache_clear)
    assert cached_parse.cache_info().misses == len(texts)
    print(f"{len(texts)} parsed answers: {kept} bytes kept alive, {charged[0]} charged")
    assert 0 < kept <= charged[0]
    assert all(deep_size(parse(t, parsing_timeout=None)) > 0 for t in texts[:5])


def test_the_answer_module_caches_have_their_documented_budgets():
    caches = [math_equivalence._parse, math_equivalence._verify_uncached_timeout_free, answers._timed_verdict]
    budgets = [c.cache_info().maxbytes for c in caches]
    assert budgets == [math_equivalence.ANSWER_CACHE_BYTES, *[math_equivalence.VERDICT_CACHE_BYTES] * 2]
    assert sum(budgets) == 32 * 2**20


def test_a_stream_of_new_answers_never_grows_the_verdict_cache_past_its_budget():
    """60k distinct pairs of plain numbers (the fast path, no verify process) through is_equivalent."""
    answers.clear_caches()
    budget = answers._timed_verdict.cache_info().maxbytes
    peak = 0
    for i in range(60_000):
        assert answers.is_equivalent(str(i), str(3 * i + 1)) is False
        if i % 5000 == 0:
            peak = max(peak, answers._timed_verdict.cache_info().bytes)
    info = answers._timed_verdict.cache_info()
    assert info.evictions > 0 and peak <= budget and info.bytes <= budget
    assert info.currsize < 60_000
    answers.clear_caches()
