"""Which classified records a subscriber keeps: flags and a small expression language (pure).

The expression language (``--where``) is a safe subset of Python expressions, parsed with
:mod:`ast` and interpreted here; nothing is ever passed to ``eval``. It has:

* record fields by name: ``survey``, ``kind``, ``alert_id``, ``object_id``, ``ra``, ``dec``,
  ``mjd``, ``band``, ``real_bogus``, ``untrained``, ``classifier_version``, ``source_topic``,
  ``source_partition``, ``source_offset``, ``source_timestamp_ms``, ``ingested_ms``,
  ``classified_ms``, ``schema_version``;
* map look-ups: ``class_scores['galaxy']``, ``survey_scores['drb']`` (a missing key is null);
* the survey's quality flags (v1.3 ``quality`` block, :mod:`schemas.quality`) by name:
  ``quality.good``, ``quality.known_solar_system``, ``quality.snr``, ``quality.nbad`` ... (also
  ``quality['good']``); an unknown flag name is refused, a record without the block gives null;
* ``models`` as the list of model names (``'braai' in models``);
* literals: numbers, strings in quotes, ``true``/``false``/``null`` (or Python's spellings);
* comparisons ``== != < <= > >=`` (chains too: ``0.2 < real_bogus <= 0.9``), ``in`` and
  ``not in`` with a list ``('g', 'r')`` or a string, ``and``, ``or``, ``not``, parentheses,
  unary minus.

A comparison with a null side (a missing score, ``real_bogus`` of an untrained model) is
false, never an error, so ``real_bogus > 0.8`` simply drops records without a score.
Examples: ``real_bogus > 0.8 and survey == 'ztf'``; ``class_scores['galaxy'] >= 0.7 or
band in ('g', 'r')``; ``not untrained and 'braai' in models``; ``quality.good and not
quality.known_solar_system`` (the survey's good-quality rule, no known asteroid).
"""
from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.quality import QUALITY_FIELDS
from stream.subscribe.known import top_class

__all__ = ["FilterError", "Predicate", "FIELDS", "MAP_FIELDS", "MAX_WHERE_CHARS", "MAX_WHERE_DEPTH", "parse_where",
           "flag_predicate", "combine", "accept_all"]

#: Longest ``--where`` expression accepted (a filter, not a program).
MAX_WHERE_CHARS = 2000
#: Deepest nesting accepted (parentheses, ``not``, ``and``/``or``, comparisons): evaluation is
#: recursive, so a deeper expression would raise RecursionError mid-stream instead of up front.
MAX_WHERE_DEPTH = 32

Predicate = Callable[[Mapping[str, Any]], bool]

#: Scalar fields an expression may name.
FIELDS = frozenset({
    "schema_version", "survey", "kind", "alert_id", "object_id", "ra", "dec", "mjd", "band", "real_bogus",
    "untrained", "classifier_version", "source_topic", "source_partition", "source_offset",
    "source_timestamp_ms", "ingested_ms", "classified_ms",
    "mjd_time_scale", "candid", "dia_source_id", "dia_object_id", "magpsf", "sigmapsf", "fid", "isdiffpos",
    "psf_flux", "psf_flux_err", "is_negative",  # v1.2
    "real_bogus_model", "unscored_reason",  # v1.3
})
#: Map fields an expression may index with a string.
MAP_FIELDS = frozenset({"class_scores", "survey_scores", "survey_score_versions", "quality"})
#: The record whose keys are known: ``quality.<flag>`` (or ``quality['<flag>']``).
QUALITY = "quality"
_LITERAL_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}

_ORDER: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}


class FilterError(ValueError):
    """An expression or flag combination that cannot be used; the message says where and why."""


Value = Callable[[Mapping[str, Any]], Any]


def _model_names(record: Mapping[str, Any]) -> list[str]:
    return [str(m.get("name")) for m in (record.get("models") or []) if isinstance(m, Mapping)]


def _compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    if isinstance(op, ast.Eq):
        return left == right
    if isinstance(op, ast.NotEq):
        return left != right
    if isinstance(op, (ast.In, ast.NotIn)):
        if right is None or left is None:
            return False
        try:
            found = left in right
        except TypeError:
            return False
        return found if isinstance(op, ast.In) else not found
    if left is None or right is None:
        return False
    try:
        return bool(_ORDER[type(op)](left, right))
    except TypeError:  # e.g. a string compared with a number: not a match
        return False


@dataclass(frozen=True)
class _Compiler:
    text: str

    def fail(self, node: ast.AST, why: str) -> FilterError:
        col = getattr(node, "col_offset", 0)
        return FilterError(f"--where {self.text!r}: {why} (at column {col + 1})")

    def quality_flag(self, node: ast.AST, flag: str) -> Value:
        if flag not in QUALITY_FIELDS:
            raise self.fail(node, f"unknown quality flag {flag!r}; flags: {', '.join(QUALITY_FIELDS)}")
        return lambda r: (r.get(QUALITY) or {}).get(flag)

    def value(self, node: ast.AST) -> Value:
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, str, bool, type(None))):
                raise self.fail(node, f"literal {node.value!r} is not a number, string, boolean or null")
            const = node.value
            return lambda _r: const
        if isinstance(node, ast.Name):
            if node.id in _LITERAL_NAMES:
                const = _LITERAL_NAMES[node.id]
                return lambda _r: const
            if node.id == "models":
                return _model_names
            if node.id in FIELDS:
                name = node.id
                return lambda r: r.get(name)
            if node.id in MAP_FIELDS:
                raise self.fail(node, f"{node.id} is a map: index it, e.g. {node.id}['galaxy']")
            raise self.fail(node, f"unknown field {node.id!r}; fields: {', '.join(sorted(FIELDS | MAP_FIELDS | {'models'}))}")
        if isinstance(node, ast.Subscript):
            if not (isinstance(node.value, ast.Name) and node.value.id in MAP_FIELDS):
                raise self.fail(node, f"only {', '.join(sorted(MAP_FIELDS))} can be indexed")
            key_node = node.slice
            if not (isinstance(key_node, ast.Constant) and isinstance(key_node.value, str)):
                raise self.fail(node, "a map is indexed by a quoted string, e.g. class_scores['galaxy']")
            field_name, key = node.value.id, key_node.value
            if field_name == QUALITY:
                return self.quality_flag(node, key)
            return lambda r: (r.get(field_name) or {}).get(key)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == QUALITY:
            return self.quality_flag(node, node.attr)
        if isinstance(node, (ast.Tuple, ast.List)):
            items = [self.value(elt) for elt in node.elts]
            return lambda r: tuple(item(r) for item in items)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self.value(node.operand)

            def negate(r: Mapping[str, Any]) -> Any:
                v = inner(r)
                return -v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
            return negate
        if isinstance(node, (ast.BoolOp, ast.Compare)) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
            return self.test(node)
        raise self.fail(node, f"{type(node).__name__} is not part of the filter language")

    def test(self, node: ast.AST) -> Predicate:
        if isinstance(node, ast.BoolOp):
            parts = [self.test(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return lambda r: all(p(r) for p in parts)
            return lambda r: any(p(r) for p in parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.test(node.operand)
            return lambda r: not inner(r)
        if isinstance(node, ast.Compare):
            operands = [self.value(node.left)] + [self.value(c) for c in node.comparators]
            ops = list(node.ops)
            for op in ops:
                if not isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn, *_ORDER)):
                    raise self.fail(node, f"operator {type(op).__name__} is not supported (use == != < <= > >= in)")

            def compare(r: Mapping[str, Any]) -> bool:
                values = [o(r) for o in operands]
                return all(_compare(op, values[i], values[i + 1]) for i, op in enumerate(ops))
            return compare
        value = self.value(node)  # a bare field: its truth value (e.g. ``untrained``)
        return lambda r: bool(value(r))


def parse_where(text: str) -> Predicate:
    """Compile a ``--where`` expression into a predicate over decoded classified records."""
    if not text or not text.strip():
        raise FilterError("--where needs an expression, e.g. \"real_bogus > 0.8 and survey == 'ztf'\"")
    if len(text) > MAX_WHERE_CHARS:
        raise FilterError(f"--where is {len(text)} characters long; the limit is {MAX_WHERE_CHARS}")
    normalized = " ".join(text.split())  # newlines from shells would otherwise be syntax errors
    try:
        tree = ast.parse(normalized, mode="eval")
    except SyntaxError as exc:
        raise FilterError(f"--where {_shorten(text)!r}: syntax error at column {exc.offset}: {exc.msg}") from exc
    except (RecursionError, MemoryError):  # the parser's own nesting limit
        raise FilterError(f"--where is nested too deeply (the limit is {MAX_WHERE_DEPTH} levels)") from None
    depth = _depth(tree.body)
    if depth > MAX_WHERE_DEPTH:
        raise FilterError(f"--where is nested {depth} levels deep; the limit is {MAX_WHERE_DEPTH}")
    return _Compiler(normalized).test(tree.body)


def _shorten(text: str, keep: int = 200) -> str:
    return text if len(text) <= keep else text[:keep] + "..."


def _depth(root: ast.AST) -> int:
    """Nesting depth of an expression tree, counted without recursion."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node)
                     if not isinstance(child, (ast.expr_context, ast.cmpop, ast.boolop, ast.unaryop, ast.operator)))
    return deepest


def flag_predicate(
    *,
    min_rb: float | None = None,
    class_label: str | None = None,
    min_prob: float | None = None,
    survey: str | None = None,
    model: str | None = None,
    untrained: bool | None = None,
) -> Predicate | None:
    """The predicate of the filter flags (all must hold), or None when no flag is given.

    ``class_label`` (a grouped key, ``acai.orphan``) alone keeps records whose most probable
    class *of that model* is that label (models are never compared with each other); with
    ``min_prob`` it keeps records where that label's probability is at least ``min_prob``.
    ``min_prob`` alone keeps records where some class score reaches it.
    """
    tests: list[Predicate] = []
    if min_rb is not None:
        tests.append(lambda r: r.get("real_bogus") is not None and r["real_bogus"] >= min_rb)
    if class_label is not None and min_prob is not None:
        tests.append(lambda r: (r.get("class_scores") or {}).get(class_label, -1.0) >= min_prob)
    elif class_label is not None:
        of_model = class_label.split(".", 1)[0]
        tests.append(lambda r: _top_class_of_model(r, of_model) == class_label)
    elif min_prob is not None:
        tests.append(lambda r: max((r.get("class_scores") or {}).values(), default=-1.0) >= min_prob)
    if survey is not None:
        wanted = survey.lower()
        tests.append(lambda r: str(r.get("survey", "")).lower() == wanted)
    if model is not None:
        tests.append(lambda r: model in _model_names(r))
    if untrained is not None:
        tests.append(lambda r: bool(r.get("untrained")) == untrained)
    if not tests:
        return None
    return lambda r: all(t(r) for t in tests)


def _top_class_of_model(record: Mapping[str, Any], model: str) -> str | None:
    top = top_class(record.get("class_scores") or {}, model)
    return None if top is None else top[0]


def accept_all(_record: Mapping[str, Any]) -> bool:
    return True


def combine(predicates: Sequence[Predicate | None]) -> Predicate:
    """All given predicates must hold (None entries are ignored)."""
    active = [p for p in predicates if p is not None]
    if not active:
        return accept_all
    if len(active) == 1:
        return active[0]
    return lambda r: all(p(r) for p in active)
