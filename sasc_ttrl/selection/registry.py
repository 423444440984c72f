"""The registry of selection methods: a name -> [`MethodSpec`] map filled by the [`register_method`] decorator."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .base import Selection, SelectionContext

NEEDS = ("token_stats", "hidden_states", "judge", "verifier")
ALL = "all"

SelectFn = Callable[[Sequence, SelectionContext], Selection]


@dataclass(frozen=True)
class MethodSpec:
    """A registered selection method.

    Attributes:
        name: Registry name (``--methods`` value and output file name).
        select: ``select(candidates, context) -> Selection``.
        needs: What the candidates / context must carry beyond the sampled record: ``token_stats`` (the forward
            pass of `compute_token_features`), ``hidden_states`` (the chain of embeddings), ``judge`` (the model as
            a Yes/No judge), ``verifier`` (a reward model).
        summary: One line saying what the method scores.
    """

    name: str
    select: SelectFn
    needs: frozenset[str]
    summary: str


SELECTION_METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, needs: Iterable[str] = (), summary: str = "") -> Callable[[SelectFn], SelectFn]:
    """Register ``select(candidates, context)`` under ``name``; a duplicate name or an unknown need is refused."""
    needs = frozenset(needs)
    unknown = needs - set(NEEDS)
    if unknown:
        raise ValueError(f"method {name!r}: unknown needs {sorted(unknown)}; expected a subset of {NEEDS}")
    if name == ALL:
        raise ValueError(f"{ALL!r} is reserved (it selects every method)")

    def decorator(fn: SelectFn) -> SelectFn:
        if name in SELECTION_METHODS:
            raise ValueError(f"a selection method named {name!r} is already registered")
        doc = (fn.__doc__ or "").strip().splitlines()
        SELECTION_METHODS[name] = MethodSpec(name, fn, needs, summary or (doc[0] if doc else ""))
        return fn

    return decorator


def get_method(name: str) -> MethodSpec:
    """The method registered under ``name``.

    Raises:
        ValueError: naming the unknown method and listing the registered ones.
    """
    if name not in SELECTION_METHODS:
        raise ValueError(f"unknown selection method {name!r}: expected one of {sorted(SELECTION_METHODS)} or {ALL!r}")
    return SELECTION_METHODS[name]


def resolve_methods(names: Sequence[str], has_verifier: bool = True) -> list[MethodSpec]:
    """Methods by name, in the given order, without repeats; ``all`` expands to every registered method (the
    ``verifier`` method only when a verifier model is available)."""
    specs: list[MethodSpec] = []
    for name in names:
        if name == ALL:
            expanded = [s for s in SELECTION_METHODS.values() if has_verifier or "verifier" not in s.needs]
        else:
            expanded = [get_method(name)]
        specs.extend(s for s in expanded if s not in specs)
    if not specs:
        raise ValueError(f"no selection method given: name one or more of {sorted(SELECTION_METHODS)} or {ALL!r}")
    return specs
