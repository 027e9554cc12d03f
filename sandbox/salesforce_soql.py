"""SOQL for the Salesforce imitation: the tokenizer, syntax tree and parser, binding field paths to the
catalogue, evaluating conditions, narrowing candidates and ordering rows."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .salesforce_records import NUMBERS, TEXT, Field, Row, SObject, fmt_date, full_id, parse_datetime
from .synth import DAY_MS

# -- SOQL: tokens, syntax tree, parser ---------------------------------------------------------------

class SoqlError(Exception):
    """A query Salesforce would refuse: ``code`` is its errorCode (MALFORMED_QUERY, INVALID_FIELD...)."""

    def __init__(self, message: str, code: str = "MALFORMED_QUERY"):
        super().__init__(message)
        self.code = code


_TOKEN = re.compile(r"""\s*(?:
    (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,3})?(?:Z|[+-]\d\d:\d\d))(?![\d:])
  | (?P<date>\d{4}-\d\d-\d\d)(?![\dT:])
  | (?P<number>-?\d+(?:\.\d+)?)(?![\w:-])
  | (?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?::\d+)?)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
)""", re.X)
_KEYWORDS = {"select", "from", "where", "and", "or", "not", "in", "like", "order", "by", "asc", "desc",
             "nulls", "first", "last", "limit", "offset", "true", "false", "null", "count"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    at: int

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "name" else ""


def tokenize(soql: str) -> list[Token]:
    tokens, at = [], 0
    while at < len(soql):
        hit = _TOKEN.match(soql, at)
        if hit is None or hit.end() == at:
            if soql[at:].strip():
                raise SoqlError(_at(soql, at, f"unexpected token: '{soql[at:].split()[0]}'"))
            break
        kind = hit.lastgroup
        tokens.append(Token(kind, hit[kind], hit.start(kind)))
        at = hit.end()
    return tokens


def _at(soql: str, at: int, message: str) -> str:
    # Salesforce echoes the query with a caret under the offending token.
    return f"\n{soql}\n{' ' * at}^\nERROR at Row:1:Column:{at + 1}\n{message}"


@dataclass(frozen=True)
class Literal:
    kind: str  # string, number, boolean, null, datetime, date, range
    value: Any


@dataclass(frozen=True)
class Comparison:
    path: str
    op: str  # = != < <= > >= IN NOT IN LIKE
    value: Literal | tuple[Literal, ...]


@dataclass(frozen=True)
class Logical:
    op: str  # AND, OR
    parts: tuple


@dataclass(frozen=True)
class Negation:
    part: Any


@dataclass(frozen=True)
class Ordering:
    path: str
    descending: bool
    nulls_last: bool


@dataclass(frozen=True)
class Query:
    sobject: str
    fields: tuple[str, ...]
    where: Any = None
    order: tuple[Ordering, ...] = ()
    limit: int | None = None
    offset: int = 0
    count_only: bool = False


class Parser:
    """Recursive descent over the SOQL subset described in the :mod:`leadpulse.sandbox.salesforce` docstring."""

    def __init__(self, soql: str, now_ms: int):
        self.soql, self.now_ms = soql, now_ms
        self.tokens, self.pos = tokenize(soql), 0

    def parse(self) -> Query:
        self.expect("select")
        count_only, fields = self.select_list()
        self.expect("from")
        sobject = self.take_name("an object name")
        where = self.condition() if self.accept("where") else None
        order = self.order_by() if self.accept("order") else ()
        limit = self.integer() if self.accept("limit") else None
        offset = self.integer() if self.accept("offset") else 0
        if self.peek():
            raise self.error(f"unexpected token: '{self.peek().text}'")
        return Query(sobject, fields, where, order, limit, offset, count_only)

    # -- token helpers --

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def accept(self, word: str) -> bool:
        token = self.peek()
        if token and (token.word == word or (token.kind in ("punct", "op") and token.text == word)):
            self.pos += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.accept(word):
            token = self.peek()
            raise self.error(f"unexpected token: '{token.text}'" if token else f"expecting '{word.upper()}', found end")

    def error(self, message: str) -> SoqlError:
        token = self.peek()
        return SoqlError(_at(self.soql, token.at if token else len(self.soql), message))

    def take_name(self, what: str) -> str:
        token = self.peek()
        if token is None or token.kind != "name" or token.word in _KEYWORDS:
            raise self.error(f"expecting {what}, found '{token.text if token else 'end'}'")
        self.pos += 1
        return token.text

    def integer(self) -> int:
        token = self.peek()
        if token is None or token.kind != "number" or not token.text.isdigit():
            raise self.error("expecting a non-negative integer")
        self.pos += 1
        return int(token.text)

    # -- clauses --

    def select_list(self) -> tuple[bool, tuple[str, ...]]:
        if self.accept("count"):
            self.expect("(")
            self.expect(")")
            return True, ()
        fields = [self.take_name("a field name")]
        while self.accept(","):
            fields.append(self.take_name("a field name"))
        return False, tuple(fields)

    def order_by(self) -> tuple[Ordering, ...]:
        self.expect("by")
        items = [self.ordering()]
        while self.accept(","):
            items.append(self.ordering())
        return tuple(items)

    def ordering(self) -> Ordering:
        path = self.take_name("a field name")
        descending = self.accept("desc")
        if not descending:
            self.accept("asc")
        nulls_last = descending  # Salesforce's defaults: NULLS FIRST ascending, NULLS LAST descending
        if self.accept("nulls"):
            nulls_last = self.accept("last")
            if not nulls_last:
                self.expect("first")
        return Ordering(path, descending, nulls_last)

    def condition(self):
        parts, joiner = [self.factor()], None
        while (token := self.peek()) and token.word in ("and", "or"):
            if joiner and token.word != joiner:
                raise self.error(f"unexpected token: '{token.text}' (use parentheses to mix AND and OR)")
            joiner = token.word
            self.pos += 1
            parts.append(self.factor())
        return parts[0] if joiner is None else Logical(joiner.upper(), tuple(parts))

    def factor(self):
        if self.accept("not"):
            return Negation(self.factor())
        if self.accept("("):
            inner = self.condition()
            self.expect(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        path = self.take_name("a field name")
        token = self.peek()
        if token and token.kind == "op":
            self.pos += 1
            return Comparison(path, "!=" if token.text == "<>" else token.text, self.literal())
        if self.accept("like"):
            return Comparison(path, "LIKE", self.literal())
        negated = self.accept("not")
        if self.accept("in"):
            return Comparison(path, "NOT IN" if negated else "IN", self.literal_list())
        raise self.error(f"unexpected token: '{token.text}'" if token else "expecting an operator, found end")

    def literal_list(self) -> tuple[Literal, ...]:
        self.expect("(")
        values = [self.literal()]
        while self.accept(","):
            values.append(self.literal())
        self.expect(")")
        return tuple(values)

    def literal(self) -> Literal:
        token = self.peek()
        if token is None:
            raise self.error("expecting a value, found end")
        self.pos += 1
        if token.kind == "string":
            return Literal("string", re.sub(r"\\(.)", r"\1", token.text[1:-1]))
        if token.kind == "number":
            return Literal("number", float(token.text) if "." in token.text else int(token.text))
        if token.kind == "datetime":
            return Literal("datetime", parse_datetime(token.text))
        if token.kind == "date":
            return Literal("date", token.text)
        if token.kind == "name":
            return self.word_literal(token)
        self.pos -= 1
        raise self.error(f"unexpected token: '{token.text}'")

    def word_literal(self, token: Token) -> Literal:
        word = token.word
        if word in ("true", "false"):
            return Literal("boolean", word == "true")
        if word == "null":
            return Literal("null", None)
        today = self.now_ms - self.now_ms % DAY_MS
        ranges = {"today": (today, today + DAY_MS), "yesterday": (today - DAY_MS, today)}
        if word in ranges:
            return Literal("range", ranges[word])
        days = re.fullmatch(r"last_n_days:(\d+)", word)
        if days:
            return Literal("range", (today - int(days[1]) * DAY_MS, today + DAY_MS))
        self.pos -= 1
        raise self.error(f"unexpected token: '{token.text}'")


def parse_soql(soql: str, now_ms: int) -> Query:
    """The syntax tree of a query, or :class:`SoqlError` (MALFORMED_QUERY)."""
    if not (soql or "").strip():
        raise SoqlError("A query must be given in the q parameter", "MALFORMED_QUERY")
    return Parser(soql, now_ms).parse()


# -- SOQL: binding a query to the objects, and evaluating it ---------------------------------------

@dataclass(frozen=True)
class Accessor:
    """A field path resolved against an sObject: the parents to walk through, then the field."""

    hops: tuple[tuple[str, Field, SObject], ...]  # (relationship name, its id field, the parent object)
    field: Field

    def get(self, row: Row | None) -> Any:
        for _, id_field, parent in self.hops:
            row = row.vendor.row_by_id(parent, row.value(id_field)) if row is not None else None
        return None if row is None else row.value(self.field)


def resolve(objects: dict[str, SObject], sobject: SObject, path: str) -> Accessor:
    """The accessor of ``Email`` or ``Account.Industry`` on ``sobject``; INVALID_FIELD when there is none."""
    *relations, name = path.split(".")
    hops, current = [], sobject
    for relation in relations:
        parent = current.parents.get(relation.lower())
        if parent is None:
            raise SoqlError(f"Didn't understand relationship '{relation}' in field path. If you are attempting to "
                            "use a custom relationship, be sure to append the '__r' after the custom relationship "
                            "name. Please reference your WSDL or the describe call for the appropriate names.",
                            "INVALID_FIELD")
        relationship, id_field, target = parent
        hops.append((relationship, current.field(id_field), objects[target.lower()]))
        current = objects[target.lower()]
    spec = current.field(name)
    if spec is None:
        raise SoqlError(f"No such column '{name}' on entity '{current.name}'. If you are attempting to use a custom "
                        "field, be sure to append the '__c' after the custom field name. Please reference your WSDL "
                        "or the describe call for the appropriate names.", "INVALID_FIELD")
    return Accessor(tuple(hops), spec)


def _criterion_error(spec: Field, wanted: str) -> SoqlError:
    quoted = "be enclosed in quotes" if wanted in ("string", "id") else "not be enclosed in quotes"
    return SoqlError(f"value of filter criterion for field '{spec.name}' must be of type {wanted} and should "
                     f"{quoted}", "INVALID_FIELD")


def coerce(spec: Field, literal: Literal) -> Any:
    """A literal in the field's own terms (ms for datetimes, folded case for text); INVALID_FIELD on a mismatch."""
    if literal.kind == "null":
        return None
    kind = spec.type
    if kind == "datetime":
        if literal.kind in ("datetime", "range"):
            return literal.value
        raise _criterion_error(spec, "dateTime")
    if kind == "date":
        if literal.kind == "range":
            return tuple(fmt_date(ms) for ms in literal.value)
        if literal.kind == "date":
            return literal.value
        raise _criterion_error(spec, "date")
    if kind == "boolean":
        if literal.kind == "boolean":
            return literal.value
        raise _criterion_error(spec, "boolean")
    if kind in NUMBERS:
        if literal.kind == "number":
            return literal.value
        raise _criterion_error(spec, "number")
    if literal.kind != "string":
        raise _criterion_error(spec, "id" if kind in ("id", "reference") else "string")
    if kind in ("id", "reference"):
        if not re.fullmatch(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?", literal.value):
            raise SoqlError(f"invalid ID field: {literal.value}", "INVALID_QUERY_FILTER_OPERATOR")
        return full_id(literal.value)
    return literal.value.casefold()


def comparable(spec: Field, value: Any) -> Any:
    """A row's value in the same terms as :func:`coerce` gives literals."""
    if isinstance(value, str) and spec.type not in ("id", "reference", "date"):
        return value.casefold()
    return value


_ORDER_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
              ">=": lambda a, b: a >= b}


def satisfies(op: str, value: Any, target: Any) -> bool:
    """Whether a row's (comparable) value satisfies ``op target``; nulls only ever equal null."""
    if isinstance(target, tuple) and op not in ("IN", "NOT IN"):
        return _in_range(op, value, target)
    if op == "=":
        return value == target
    if op == "!=":
        return value != target
    if op == "IN":
        return value in target
    if op == "NOT IN":
        return value is not None and value not in target
    if value is None or target is None:
        return False
    try:
        return _ORDER_OPS[op](value, target)
    except TypeError:
        return False


def _in_range(op: str, value: Any, span: tuple) -> bool:
    # Date literals such as TODAY are ranges: "=" means inside, ">" after its end, "<" before its start.
    if value is None:
        return op == "!="
    start, end = span
    inside = start <= value < end
    return {"=": inside, "!=": not inside, ">": value >= end, ">=": value >= start,
            "<": value < start, "<=": value < end}[op]


def compile_condition(objects: dict[str, SObject], sobject: SObject, node) -> Callable[[Row], bool]:
    """A predicate over rows for a WHERE tree; type errors surface here, before any row is read.

    The comparisons of an AND or an OR that name the same field read its value once per row, and the LIKE
    patterns an OR joins on one field are matched as one regex (``Subject LIKE '%a' OR Subject LIKE '%b'``):
    a disjunction of hundreds of patterns costs about what one does."""
    if isinstance(node, Logical):
        return _logical(objects, sobject, node)
    if isinstance(node, Negation):
        inner = compile_condition(objects, sobject, node.part)
        return lambda row: not inner(row)
    accessor = resolve(objects, sobject, node.path)
    test = like_test([_like_pattern(accessor, node.value)]) if node.op == "LIKE" else _value_test(accessor, node)
    return lambda row: test(accessor.get(row))


def _logical(objects: dict[str, SObject], sobject: SObject, node: Logical) -> Callable[[Row], bool]:
    # Terms are compiled in their order, so the first faulty one is the one reported.
    disjunction = node.op == "OR"
    combine = any if disjunction else all
    fields: dict[tuple[str, ...], _FieldTerms] = {}
    entries: list[_FieldTerms | Callable[[Row], bool]] = []
    for part in node.parts:
        if not isinstance(part, Comparison):
            entries.append(compile_condition(objects, sobject, part))
            continue
        accessor = resolve(objects, sobject, part.path)
        key = (*(relationship for relationship, _, _ in accessor.hops), accessor.field.name)
        if key not in fields:
            fields[key] = _FieldTerms(accessor)
            entries.append(fields[key])
        terms = fields[key]
        if part.op != "LIKE":
            terms.tests.append(_value_test(accessor, part))
        elif disjunction:
            terms.patterns.append(_like_pattern(accessor, part.value))
        else:
            terms.tests.append(like_test([_like_pattern(accessor, part.value)]))
    predicates = [entry.predicate(combine) if isinstance(entry, _FieldTerms) else entry for entry in entries]
    if len(predicates) == 1:
        return predicates[0]
    return lambda row: combine(predicate(row) for predicate in predicates)


@dataclass
class _FieldTerms:
    """The terms of one AND or OR on one field: tests of its value, and the LIKE patterns an OR joins."""

    accessor: Accessor
    tests: list[Callable[[Any], bool]] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)

    def predicate(self, combine: Callable[[Iterable[bool]], bool]) -> Callable[[Row], bool]:
        """The terms over the row's value, read once; the patterns as one test."""
        get = self.accessor.get
        tests = [*self.tests, like_test(self.patterns)] if self.patterns else self.tests
        if len(tests) == 1:
            test = tests[0]
            return lambda row: test(get(row))

        def check(row: Row) -> bool:
            value = get(row)
            return combine(test(value) for test in tests)
        return check


def _value_test(accessor: Accessor, node: Comparison) -> Callable[[Any], bool]:
    """The test of a row's raw value for a comparison other than LIKE."""
    spec, op, value = accessor.field, node.op, node.value
    if isinstance(value, tuple):  # IN and NOT IN
        target: Any = frozenset(coerce(spec, literal) for literal in value)
    else:
        target = coerce(spec, value)
        if target is None and op not in ("=", "!="):
            raise SoqlError(f"invalid operator on null for field '{spec.name}'", "MALFORMED_QUERY")
    return lambda raw: satisfies(op, comparable(spec, raw), target)


def _like_pattern(accessor: Accessor, literal: Literal | tuple[Literal, ...]) -> str:
    if accessor.field.type not in TEXT or not isinstance(literal, Literal) or literal.kind != "string":
        raise SoqlError(f"invalid operator on field '{accessor.field.name}': LIKE works on text fields",
                        "INVALID_FIELD")
    return literal.value


def like_regex(pattern: str) -> str:
    """One LIKE pattern as a regex for ``fullmatch`` under IGNORECASE and DOTALL: ``%`` any run, ``_`` one
    character, anything else itself (the literal's backslash escapes are already undone by the parser)."""
    return "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)


def like_test(patterns: list[str]) -> Callable[[Any], bool]:
    """Whether a value matches any of the LIKE patterns (case-insensitive, null never): one compiled regex.

    The patterns are grouped by their leading and trailing ``%`` and each group's middles joined in one
    alternation (``.*(?:\\[a\\]|\\[b\\])``), which the regex engine tries per position by their common prefix
    rather than re-running ``.*`` per pattern. Runs of ``%`` are one ``%``; the language matched is exactly the
    union of the patterns' own."""
    shapes: dict[tuple[bool, bool], list[str]] = {}
    for pattern in dict.fromkeys(re.sub("%+", "%", p) for p in patterns):
        lead = pattern.startswith("%")
        trail = len(pattern) > int(lead) and pattern.endswith("%")
        middle = pattern[int(lead):len(pattern) - int(trail)]
        shapes.setdefault((lead, trail), []).append(like_regex(middle))
    regex = re.compile("|".join(f"{'.*' if lead else ''}(?:{'|'.join(middles)}){'.*' if trail else ''}"
                                for (lead, trail), middles in shapes.items()), re.I | re.S)
    fullmatch = regex.fullmatch
    return lambda value: value is not None and fullmatch(value) is not None


def hints(where) -> list[Comparison]:
    """The comparisons every matching row must satisfy (top-level AND terms): used to narrow candidates."""
    if isinstance(where, Comparison):
        return [where]
    if isinstance(where, Logical) and where.op == "AND":
        return [part for part in where.parts if isinstance(part, Comparison)]
    return []


@dataclass(frozen=True)
class Narrowing:
    """What the hints of a query promise about its rows, in index terms."""

    ids: tuple[str, ...] | None = None  # the rows' Id is one of these
    refs: tuple[str, ...] | None = None  # the rows' WhoId / LeadId / ContactId is one of these
    after: str | None = None  # the rows' Id is at least this
    since_ms: int | None = None  # modified (or created) at or after
    until_ms: int | None = None  # modified at or before

    @classmethod
    def of(cls, where, ref_fields: tuple[str, ...] = ()) -> Narrowing:
        found: dict[str, Any] = {}
        for term in hints(where):
            name, op, value = term.path.lower(), term.op, term.value
            values = value if isinstance(value, tuple) else (value,)
            if any(v.kind != "string" for v in values) and name in ("id", *ref_fields):
                continue
            if name == "id" and op in ("=", "IN"):
                found["ids"] = tuple(full_id(v.value) for v in values)
            elif name == "id" and op in (">", ">=") and isinstance(value, Literal):
                found["after"] = full_id(value.value)
            elif name in ref_fields and op in ("=", "IN"):
                found["refs"] = tuple(full_id(v.value) for v in values)
            elif name in ("lastmodifieddate", "systemmodstamp", "createddate") and isinstance(value, Literal):
                found.update(_time_bounds(name, op, value))
        return cls(**found)


def _time_bounds(name: str, op: str, literal: Literal) -> dict:
    if literal.kind == "datetime":
        start = end = literal.value
    elif literal.kind == "range":
        start, end = literal.value
    else:
        return {}
    bounds = {}
    if op in (">", ">=", "="):
        bounds["since_ms"] = start
    if op in ("<", "<=", "=") and name != "createddate":
        bounds["until_ms"] = end
    return bounds


def sort_rows(pairs: list[tuple[list, int]], order: tuple[Ordering, ...]) -> list[int]:
    """Keys ordered by ORDER BY: stable sorts from the last term to the first."""
    for position in range(len(order) - 1, -1, -1):
        term = order[position]
        null_rank = 1 if term.nulls_last != term.descending else 0

        def key(pair, position=position, null_rank=null_rank):
            value = pair[0][position]
            return (null_rank,) if value is None else (1 - null_rank, value)
        pairs.sort(key=key, reverse=term.descending)
    return [k for _, k in pairs]
