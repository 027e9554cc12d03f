"""A scoring pass decides a chunk scored column by column from the cards' fields: their CRM values
(`WritebackConfig.values_of`) and the lifecycle stage each reaches (`Engine.status_targets`). Both agree with what
`decide` works out card by card (`WritebackConfig.values_for`, `Engine.decide_status`), on the generated tenants of
the column-wise engine's agreement test (see generated_rules.py), each transition also given a least
value on an axis now and then, at every moment of each case, from every stage set last."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import generated_rules
import pytest
from generated_rules import case, report

from leadpulse.core.config.tenant import Output, WritebackConfig
from leadpulse.core.engine.columnar import ColumnEngine
from leadpulse.core.engine.rules import ScoringConfig
from leadpulse.core.engine.scoring import Engine
from leadpulse.core.model import Lifecycle

CASES = 120
CHUNKS = 4
#: the CRM's status of each contact, besides the generated one: every stage, one no map ranks, none
STATUSES = [*(stage.value for stage in Lifecycle), "unmapped", None]
#: write-back mappings: every output (with each number of reasons), some of them, none
WRITEBACKS = [
    *(WritebackConfig(properties={output: f"p_{output.value}" for output in Output}, reasons=n) for n in (1, 3, 10)),
    WritebackConfig(properties={Output.REASONS: "why", Output.QUADRANT: "q", Output.SCORE: "s"}, reasons=2),
    WritebackConfig(properties={Output.FIT: "f", Output.GRADE: "g"}),
    WritebackConfig(),
]


def with_least_axes(seed: int, folder: Path) -> tuple[Any, ScoringConfig]:
    """The case of `seed`, its lifecycle transitions sometimes asking for a least value on an axis."""
    found = case(seed)
    config = generated_rules.loaded(found, folder)
    if config.lifecycle is None:
        return found, config
    rng = random.Random(seed)
    transitions = tuple(
        transition.model_copy(update={"min_axis": {rng.choice(list(config.axes)): rng.choice([-2, 0, 1.5, 4])}})
        if rng.random() < 0.4 else transition for transition in config.lifecycle.transitions)
    return found, config.model_copy(update={"lifecycle": config.lifecycle.model_copy(update={"transitions": transitions})})


def disagreements(seed: int, folder: Path) -> list[str]:
    found, config = with_least_axes(seed, folder)
    engine, columns = Engine(config), ColumnEngine(config)
    batch = columns.batch(found.contacts, found.rows)
    faults = []
    for moment in found.moments:
        fields = columns.score(batch, moment).fields()
        cards = fields.cards()
        everyone = list(range(len(cards)))
        some = everyone[::-3]  # some of them, in another order
        for writeback in WRITEBACKS:
            for places in (everyone, some):
                ours = writeback.values_of(fields, places)
                theirs = [writeback.values_for(cards[i]) for i in places]
                if ours != theirs or [list(map(type, v.values())) for v in ours] != \
                        [list(map(type, v.values())) for v in theirs]:
                    faults.append(f"seed {seed}, as of {moment}, {writeback}: values {ours} against {theirs}")
        targets = engine.status_targets(fields)
        if (targets is None) != (config.lifecycle is None):
            faults.append(f"seed {seed}: targets {targets} with lifecycle {config.lifecycle}")
            continue
        for i, contact in enumerate(found.contacts):
            for status in STATUSES:
                person = replace(contact, status=status)
                for last_set in (None, *Lifecycle):
                    moved = engine.move_status(status, targets[i] if targets else None, last_set)
                    decided = engine.decide_status(person, cards[i], last_set)
                    if moved != decided:
                        faults.append(f"seed {seed}, as of {moment}, contact {contact.id} in {status}, last set "
                                      f"{last_set}: moves {moved} against {decided} for {cards[i]}")
    return faults


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generated")


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_values_and_moves_from_the_cards_fields_are_those_from_the_cards(chunk: int, folder: Path) -> None:
    faults = [fault for seed in range(chunk, CASES, CHUNKS) for fault in disagreements(seed, folder)]
    report(faults)


def test_the_generated_cases_reach_every_stage_by_every_kind_of_condition(folder: Path) -> None:
    """The agreement above is worth something only if transitions hold and fail, by each kind of condition."""
    reached: set[Lifecycle] = set()
    conditions: set[str] = set()
    for seed in range(0, CASES, 3):
        found, config = with_least_axes(seed, folder)
        if config.lifecycle is None:
            continue
        columns = ColumnEngine(config)
        batch = columns.batch(found.contacts, found.rows)
        targets = Engine(config).status_targets(columns.score(batch, found.moments[0]).fields()) or []
        reached |= {target for target in targets if target is not None}
        if None in targets:
            for transition in config.lifecycle.transitions:
                conditions |= {name for name in ("when", "after", "min_total", "min_band", "grades", "quadrants",
                                                 "min_axis") if getattr(transition, name) is not None}
    assert reached == {Lifecycle.LEAD, Lifecycle.MQL, Lifecycle.SQL, Lifecycle.CUSTOMER}
    assert conditions == {"when", "after", "min_total", "min_band", "grades", "quadrants", "min_axis"}
