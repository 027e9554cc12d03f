"""The column-wise engine agrees with the per-contact engine, card for card, on random tenants and data placed on
every boundary (see generated_rules.py): hundreds of seeded cases, each a rule set loaded as the product loads a
tenant file, 20 to 50 contacts and four moments. Whole `ScoreCard`s are compared: total, axes, band, grade,
quadrant, lifecycle events, `valid_until` and every contribution with what bent it."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from generated_rules import case, loaded, report

from leadpulse.core.engine import scoring
from leadpulse.core.engine.columnar import EXPIRY_SOURCES, NEVER, ColumnEngine
from leadpulse.core.engine.columnar_numeric import halvings, ordered_by, ordered_sums, round_half_up
from leadpulse.core.engine.scoring import ActivityRow, Contribution, Engine, ScoreCard
from leadpulse.core.model import Contact
from leadpulse.core.store.store import iso

CASES = 400
CHUNKS = 8
#: the chunks of the cases run again on the rows as the store gives them back (every other case)
STORED_CHUNKS = 8

@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generated")


def differences(engine: ScoreCard, columns: ScoreCard) -> Iterator[str]:
    """Each field of the two cards that differs, in value or in type, and each contribution that does, field by
    field."""
    for field in fields(ScoreCard):
        if field.name == "contributions":
            continue
        ours, theirs = getattr(engine, field.name), getattr(columns, field.name)
        if ours != theirs or type(ours) is not type(theirs):
            yield f"{field.name}: engine {ours!r}, columnar {theirs!r}"
    if type(columns.contributions) is not tuple:
        yield f"contributions: a {type(columns.contributions).__name__}, not a tuple"
    order = [c.rule_id for c in engine.contributions], [c.rule_id for c in columns.contributions]
    if order[0] != order[1]:
        yield f"contribution order: engine {order[0]}, columnar {order[1]}"
    by_rule = {c.rule_id: c for c in engine.contributions}
    found = {c.rule_id: c for c in columns.contributions}
    for rule_id in sorted(by_rule.keys() | found.keys()):
        ours, theirs = by_rule.get(rule_id), found.get(rule_id)
        if ours is None or theirs is None:
            yield f"rule {rule_id}: engine {ours}, columnar {theirs}"
        elif ours != theirs:
            told = [f"{f.name} {getattr(ours, f.name)!r} vs {getattr(theirs, f.name)!r}" for f in fields(Contribution)
                    if getattr(ours, f.name) != getattr(theirs, f.name)]
            yield f"rule {rule_id}: " + ", ".join(told)


def as_stored(rows: dict[str, list[ActivityRow]]) -> dict[str, list[ActivityRow]]:
    """The rows as the store gives them back: times as its UTC text to the millisecond, attributes as JSON text."""
    def stored(row: ActivityRow) -> ActivityRow:
        at = row[3] if isinstance(row[3], datetime) else datetime.fromisoformat(row[3])
        attributes = row[5] if isinstance(row[5], str) else json.dumps(row[5], separators=(",", ":"))
        return (row[0], row[1], row[2], iso(at), row[4], attributes)
    return {cid: [stored(row) for row in found] for cid, found in rows.items()}


def flat_rows(contacts: list[Contact], rows: dict[str, list[ActivityRow]]) -> list[ActivityRow]:
    """The rows in one list, contact by contact, with a row of a contact outside the batch after the first one's
    (a contact gone from the CRM within a chunk's id range): `ColumnEngine.flat_batch` leaves it out."""
    found = [row for contact in contacts for row in rows[contact.id]]
    first = len(rows[contacts[0].id]) if contacts else 0
    return [*found[:first], ("gone", "g1", "page_view", "2025-05-01T00:00:00.000+00:00", None, "{}"), *found[first:]]


def disagreements(seed: int, folder: Path, *, stored: bool = False) -> list[str]:
    """Where the two engines' cards for the case differ; with `stored`, on the rows as the store gives them back,
    the column-wise one reading them as one list (as a scoring pass does)."""
    found = case(seed)
    config = loaded(found, folder)
    engine, columns = Engine(config), ColumnEngine(config)
    rows = as_stored(found.rows) if stored else found.rows
    batch = (columns.flat_batch(found.contacts, flat_rows(found.contacts, rows)) if stored
             else columns.batch(found.contacts, rows))
    faults = []
    for moment in found.moments:
        scores = columns.score(batch, moment)
        cards = scores.cards()
        for i, contact in enumerate(found.contacts):
            card = engine.score_rows(contact, rows[contact.id], moment)
            told = list(differences(card, cards[i])) if card != cards[i] else []
            if card != cards[i] and not told:
                told = [f"cards differ: engine {card}, columnar {cards[i]}"]
            if told:
                faults.append(f"seed {seed}, as of {moment.isoformat()}, contact {contact.id}:\n  " + "\n  ".join(told))
        if cards and scores.card(len(cards) - 1) != cards[-1]:
            faults.append(f"seed {seed}, as of {moment.isoformat()}: card(i) is not cards()[i]")
    return faults


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_the_column_wise_engine_gives_every_contact_the_per_contact_engines_score(chunk: int, folder: Path) -> None:
    faults = [fault for seed in range(chunk, CASES, CHUNKS) for fault in disagreements(seed, folder)]
    report(faults)


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(STORED_CHUNKS))
def test_the_engines_agree_on_rows_as_the_store_gives_them_in_one_list(chunk: int, folder: Path) -> None:
    """The column-wise engine reads the store's text of UTC times column by column, and a chunk's rows as one
    list; the per-contact engine parses each time."""
    seeds = range(chunk, CASES, CHUNKS * 2)
    faults = [fault for seed in seeds for fault in disagreements(seed, folder, stored=True)]
    report(faults)


def unread(seed: int, folder: Path) -> tuple[int, list[str]]:
    """How many of the case's rows the rules do not read (see `ColumnEngine.activities_read`), and where leaving
    them out changes a card, in either engine."""
    found = case(seed)
    config = loaded(found, folder)
    engine, columns = Engine(config), ColumnEngine(config)
    read = columns.activities_read()
    if read is None:
        return 0, []
    kinds, vendor_types = read
    kept = {cid: [row for row in rows if row[2] in kinds or row[4] in vendor_types] for cid, rows in found.rows.items()}
    left_out = sum(len(rows) - len(kept[cid]) for cid, rows in found.rows.items())
    faults = []
    for moment in found.moments:
        every = columns.score(columns.batch(found.contacts, found.rows), moment).cards()
        read_only = columns.score(columns.batch(found.contacts, kept), moment).cards()
        for i, contact in enumerate(found.contacts):
            card = engine.score_rows(contact, kept[contact.id], moment)
            if not (card == read_only[i] == every[i]):
                faults.append(f"seed {seed}, as of {moment}, contact {contact.id}: {every[i]} from every row, "
                              f"{read_only[i]} and {card} from the rows read")
    return left_out, faults


@pytest.mark.slow
def test_the_rows_the_rules_do_not_read_change_no_card(folder: Path) -> None:
    results = [unread(seed, folder) for seed in range(0, CASES, 2)]
    faults = [fault for _, found in results for fault in found]
    report(faults)
    # the cases leave rows out, and often (an inactivity rule on every kind reads them all)
    assert sum(left_out for left_out, _ in results) > 1000
    assert 30 < sum(1 for left_out, _ in results if left_out) < len(results)


def test_a_batch_without_activities_or_without_contacts_scores_as_the_engine_does(folder: Path) -> None:
    found = case(3)
    config = loaded(found, folder)
    engine, columns = Engine(config), ColumnEngine(config)
    moment = found.moments[0]
    quiet = columns.score(columns.flat_batch(found.contacts, []), moment).cards()
    assert quiet == [engine.score_rows(contact, [], moment) for contact in found.contacts]
    assert columns.score(columns.flat_batch([], []), moment).cards() == []


def sole_sources(seed: int, folder: Path) -> Counter[str]:
    """How many cards of the case take their `valid_until` from each source alone (see `EXPIRY_SOURCES`)."""
    found = case(seed)
    columns = ColumnEngine(loaded(found, folder))
    batch = columns.batch(found.contacts, found.rows)
    sole: Counter[str] = Counter()
    for moment in found.moments:
        expiries = columns.expiries(batch, columns.score(batch, moment))
        for source, moments in expiries.items():
            others = np.full(batch.size, NEVER)
            for name, column in expiries.items():
                if name != source:
                    others = np.minimum(others, column)
            sole[source] += int((moments < others).sum())
    return sole


@pytest.mark.slow
def test_the_generated_cases_take_valid_until_from_every_source_alone(folder: Path) -> None:
    sole = sum((sole_sources(seed, folder) for seed in range(0, CASES, 4)), Counter())
    assert {source for source in EXPIRY_SOURCES if sole[source] < 5} == set(), sole


def bends(seed: int, folder: Path) -> Iterator[str]:
    """What bent each contribution of the engine's cards of the case, and by which rule setting."""
    found = case(seed)
    config = loaded(found, folder)
    engine = Engine(config)
    rules = dict(zip(config.rule_ids(), found.scoring["rules"], strict=True))
    for moment in found.moments:
        for contact in found.contacts:
            for c in engine.score_rows(contact, found.rows[contact.id], moment).contributions:
                if c.matched is not None:
                    rule = rules[c.rule_id]
                    yield from (f"matched, {key}" for key in ("max_occurrences", "min_occurrences", "once") if key in rule)
                    if rule.get("count") in ("days", "sessions"):
                        yield "matched, count"
                if c.cap is not None:
                    yield "cap"
                if c.full is not None:
                    yield "decay" if c.occurrences == 1 else "decay of several"
                    if c.matched is not None:
                        yield "decay, matched"


@pytest.mark.slow
def test_the_generated_cases_bend_contributions_every_way(folder: Path) -> None:
    found = Counter(bent for seed in range(0, CASES, 4) for bent in bends(seed, folder))
    wanted = {"matched, max_occurrences", "matched, min_occurrences", "matched, once", "matched, count", "cap",
              "decay", "decay of several", "decay, matched"}
    assert {bent for bent in wanted if found[bent] < 5} == set(), found


def constructs(section: Any) -> Iterator[str]:
    """Every key and every shape the section uses, with the leaf operators named as such."""
    if isinstance(section, dict):
        for key, value in section.items():
            yield key
            if key in ("count", "activity") and isinstance(value, str):
                yield f"{key}={value}"
            yield from constructs(value)
    elif isinstance(section, list):
        for item in section:
            yield from constructs(item)


def test_the_generated_cases_use_every_construct_of_the_scoring_language() -> None:
    used = Counter(name for seed in range(CASES) for name in constructs(case(seed).scoring))
    wanted = {
        "all", "any", "not", "equals", "in", "contains", "regex", "range", "age", "ahead", "exists", "missing",
        "case_sensitive", "min", "above", "below", "max", "when", "activity", "vendor_type", "where", "count=days",
        "count=sessions", "min_occurrences", "max_occurrences", "once", "unless_followed_by", "within_days",
        "max_points", "expires_after_days", "half_life_days", "inactive_days", "count_never_active", "axis", "weight",
        "grades", "quadrant", "lifecycle", "after", "min_total", "min_band", "quadrants", "id", "decay_recheck",
    }
    assert wanted - used.keys() == set()
    singles = sum("quadrant" not in case(seed).scoring for seed in range(40))
    assert singles > 0  # tenants scoring on a single axis


# ---------------------------------------------------------------- arithmetic, against Python's own


def test_column_wise_halvings_are_pythons_power_to_the_bit() -> None:
    rng = random.Random(5)
    exponents = [rng.uniform(0, 60) for _ in range(200_000)] + [k / 97 for k in range(5_000)] + [0.0, 1.0, 2.0]
    assert halvings(np.array(exponents)).tolist() == [0.5**x for x in exponents]


def test_column_wise_rounding_is_the_engines_half_up_to_the_bit() -> None:
    rng = random.Random(6)
    values = [rng.uniform(-100, 100) for _ in range(100_000)] + [round(rng.uniform(-10, 10), 2) + 0.005
                                                                 for _ in range(50_000)]
    values += [0.625, 2.675, -0.625, 0.1 + 0.2, 12.344, 1.005, 1e12 + 0.125, -0.001]
    assert round_half_up(np.array(values)).tolist() == [scoring.round_half_up(v) for v in values]


def test_column_wise_sums_add_each_group_in_order_as_pythons_sum_does() -> None:
    rng = random.Random(7)
    groups = np.sort(np.array([rng.randrange(500) for _ in range(20_000)]))
    values = np.array([rng.uniform(-3, 3) * 10 ** rng.randint(-3, 3) for _ in range(20_000)])
    sums = ordered_sums(groups, values, 600)
    assert sums.tolist() == [sum(values[groups == g].tolist()) for g in range(600)]


@pytest.mark.parametrize(("major_span", "minor_span"), [
    (1_000, 2**51),  # a chunk's contacts and times in microseconds: one key
    (50, 5),  # many equal pairs: their order is kept
    (2**40, 2**40),  # too wide for one key: numpy's lexsort
    (2**62, 3),
])
def test_ordering_by_two_keys_is_numpys_lexsort(major_span: int, minor_span: int) -> None:
    rng = np.random.default_rng(8)
    for size in (0, 1, 2_000):
        major = np.sort(rng.integers(-major_span // 2, major_span // 2 + 1, size, dtype=np.int64))
        major[::7] = rng.integers(-major_span // 2, major_span // 2 + 1, len(major[::7]), dtype=np.int64)
        minor = rng.integers(-minor_span, minor_span + 1, size, dtype=np.int64)
        assert ordered_by(major, minor).tolist() == np.lexsort((minor, major)).tolist()
