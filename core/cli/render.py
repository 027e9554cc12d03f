"""How the commands draw their output: rich tables and styled lines, data always shown as it is (a name with
"[/b]", a pattern with "[a-z]" is never read as markup)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.engine.scoring import bent_notes, shown_points
from leadpulse.core.model import Contact, Lifecycle
from leadpulse.core.runtime.comparison import Comparison, ContactMove
from leadpulse.core.runtime.run import RunSummary
from leadpulse.core.store.runs import RunCounts
from leadpulse.core.store.store import Store, StoredScore

# Piped output (CI logs, the README) gets room for the explanation tables instead of 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=160)


def literal(value: object) -> str:
    """`value` as rich markup that shows it as is: data and error text (a name with "[/b]", a pattern with
    "[a-z]") are never read as markup, while the styling written around them ("[red]...[/red]") still applies."""
    return escape(str(value))


def percent(value: float | None) -> str:
    """A share or rate as a table shows it (``12.5%``), ``-`` when there is none."""
    return "-" if value is None else f"{value:.1%}"


def data_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None) -> Table:
    """A rich table of data: its headers, title and cells are shown as given (see `literal`)."""
    table = Table(*map(literal, headers), title=None if title is None else literal(title))
    for row in rows:
        table.add_row(*map(literal, row))
    return table


#: how a table heads each of a run's counts
COUNT_HEADERS = {name: {"api_calls": "API calls", "rate_limited": "429s"}.get(name, name) for name in RunCounts.names()}


@dataclass(frozen=True)
class Unfinished:
    """A tenant whose run could not begin (`outcome` "not started") or broke off on a fault in leadpulse or a
    library ("failed"), and why: the error, which names the tenant and what to do, with secrets masked."""

    tenant: str
    outcome: str
    reason: str


NOT_STARTED = "not started"


def summary_table(summaries: Sequence[RunSummary], title: str = "sync", *,
                  unfinished: Sequence[Unfinished] = ()) -> Table:
    headers = ("tenant", "run", "outcome", *COUNT_HEADERS.values(), "seconds")
    rows: list[tuple[object, ...]] = [
        (s.tenant, s.run_id, s.outcome.value, *s.as_dict().values(), f"{s.seconds:.2f}") for s in summaries
    ]
    rows += [(n.tenant, "-", n.outcome, *["-"] * (len(COUNT_HEADERS) + 1)) for n in unfinished]
    return data_table(headers, rows, title=title)


def say(style: str, label: str, text: str) -> None:
    """One line: `label` in `style`, then `text` as it is (rich markup in it is shown, not applied), unwrapped."""
    console.print(f"[{style}]{label}[/{style}] {literal(text)}", highlight=False, soft_wrap=True)


def print_summaries(summaries: Sequence[RunSummary], title: str = "sync", *,
                    unfinished: Sequence[Unfinished] = ()) -> None:
    """The runs' table, then each run's error in full (a table cell would cut it), and why any tenant's run did
    not start or broke off."""
    console.print(summary_table(summaries, title, unfinished=unfinished))
    for s in summaries:
        if s.error:
            say("red", s.outcome.value, s.error)
        for note in s.notes:
            say("yellow", s.tenant, note)
        if more := s.skipped + s.refused - len(s.notes):
            say("yellow", s.tenant, f"... and {more} more skipped or refused (`leadpulse status --parked` lists the "
                "writes given up on; the store's skipped table has every skipped record)")
        if s.deferral:
            say("yellow", s.tenant, s.deferral)
    for n in unfinished:
        say("red", n.outcome, n.reason)


def pending_table(store: Store, tenant: TenantConfig, *, run_id: int, shown: int = 15) -> Table:
    """What the CRM would be sent: the first pending writes and tasks, and how many there are in all.

    `run_id` is the dry run's: the outbox lists the pending rows not tried in a given run, and a dry run tries
    none, so every pending row is listed, the ones never tried included.
    """
    counts = store.outbox.counts()
    writes, tasks = counts.get(("write", "pending"), 0), counts.get(("task", "pending"), 0)
    rows = [(write.contact_id, ", ".join(f"{name}={value}" for name, value in write.values.items()))
            for write in store.outbox.pending_writes(shown, run_id=run_id)]
    rows += [(task.contact_id, f"task for owner {task.owner_id or '-'}: {task.subject}")
             for task in store.outbox.pending_tasks(shown, run_id=run_id)]
    return data_table(("contact", "would write"), rows,
                      title=f"{tenant.name}: dry run, {writes} writes and {tasks} tasks not sent")


@dataclass(frozen=True)
class OpenLead:
    """A well-scored contact that is not a customer yet, and its lifecycle status in the CRM's words: the one
    leadpulse set when it set one (the CRM may not have it yet: a dry run, a backlog), else the CRM's as last pulled."""

    score: StoredScore
    contact: Contact | None
    status: str | None


def open_leads(store: Store, tenant: TenantConfig, n: int) -> list[OpenLead]:
    """The `n` best-scored contacts that are not customers yet."""
    customer = _crm_values(tenant).get(Lifecycle.CUSTOMER)
    leads = (_lead(tenant, s, store.contact(s.contact_id)) for s in store.top_scores(n * 20))
    return list(islice((lead for lead in leads if not _is_customer(lead, customer)), n))


def _is_customer(lead: OpenLead, customer: str | None) -> bool:
    # The CRM's status counts too: a customer there may still carry the stage leadpulse set before the deal closed.
    return customer is not None and customer in (lead.status, getattr(lead.contact, "status", None))


def _crm_values(tenant: TenantConfig) -> Mapping[Lifecycle, str]:
    """The CRM's value of each lifecycle stage, as the tenant maps them (none without a lifecycle section)."""
    return tenant.scoring.lifecycle.values if tenant.scoring.lifecycle else {}


def _lead(tenant: TenantConfig, stored: StoredScore, contact: Contact | None) -> OpenLead:
    values = _crm_values(tenant)
    # The store keeps the neutral stage leadpulse set; the table speaks the CRM's values, as the CRM's status does.
    status = values.get(Lifecycle(stored.status), stored.status) if stored.status else getattr(contact, "status", None)
    return OpenLead(stored, contact, status)


def hottest_table(leads: Sequence[OpenLead]) -> Table:
    rows = [
        (lead.score.contact_id, getattr(lead.contact, "name", None) or "-", f"{lead.score.total:g}", lead.score.band,
         lead.score.grade or "-", lead.status or "-", _top_reasons(lead.score))
        for lead in leads
    ]
    return data_table(("contact", "name", "score", "band", "grade", "status", "why"), rows, title="hottest open leads")


def _top_reasons(stored: StoredScore) -> str:
    return "; ".join(c["detail"] for c in sorted(stored.contributions, key=lambda c: -abs(c["points"]))[:3])


def band_table(counts: dict[str, int], band_names: Sequence[str]) -> Table:
    total = sum(counts.values()) or 1
    rows = [(band, counts.get(band, 0), f"{100 * counts.get(band, 0) / total:.1f}%")
            for band in reversed([*band_names, *sorted(set(counts) - set(band_names))])]
    return data_table(("band", "contacts", "share"), rows, title="band distribution")


def print_explanation(stored: StoredScore, contact: object, values: Mapping[str, str] | None = None,
                      standing: str | None = None) -> None:
    """A contact's score rule by rule: each row's points (a decayed row with what it was worth undecayed, its age
    and half-life; a capped one with its cap), how many occurrences counted of how many matched, why, and the
    value that matched; then its lifecycle status. A contact no rule matched says so."""
    who = getattr(contact, "name", None) or getattr(contact, "email", None) or stored.contact_id
    axes = ", ".join(f"{name} {shown_points(value, sign=False)}" for name, value in stored.axes.items())
    title = (f"{who} ({stored.contact_id}): {shown_points(stored.total, sign=False)} {stored.band}, grade "
             f"{stored.grade or '-'}, {(stored.quadrant or '-').replace('_', ' ')} [{axes}]")
    values = values or {}
    rows = [(c["rule_id"], c["axis"], shown_points(c["points"]), _times(c), _why(c), values.get(c["rule_id"], ""))
            for c in stored.contributions]
    if not rows:
        console.print(literal(f"{title}\nno rule matched this contact: its score is "
                              f"{shown_points(stored.total, sign=False)}"))
    else:
        console.print(data_table(("rule", "axis", "points", "times", "why", "matched"), rows, title=title))
    status = getattr(contact, "status", None)
    console.print(literal(f"lifecycle status in the CRM: {status or '(none)'}; last set by leadpulse: "
                          f"{stored.status or '(none)'}" + (f"; {standing}" if standing else "")))


def _times(contribution: Mapping[str, Any]) -> str:
    counted, matched = contribution["occurrences"], contribution.get("matched")
    return f"{counted} of {matched}" if matched is not None and matched != counted else str(counted)


def _why(contribution: Mapping[str, Any]) -> str:
    """The rule's reason, with what bent its points: the decay (worth, age, half-life) and the cap."""
    notes = []
    if contribution.get("full") is not None and contribution.get("age_days") is not None:
        notes.append(f"of {shown_points(contribution['full'], sign=False)}, last {round(contribution['age_days']):g} "
                     f"days ago, half-life {contribution.get('half_life_days') or 0:g} days")
    notes += bent_notes(contribution["occurrences"], contribution.get("matched"), contribution.get("cap"))
    detail = str(contribution["detail"])
    return detail + (f" ({'; '.join(notes)})" if notes else "")


def move_table(moves: Counter[tuple[str, str]], before: Sequence[str], after: Sequence[str]) -> Table:
    rows = [(band, *(moves.get((band, new), 0) for new in after)) for band in before]
    return data_table(("now \\ proposed", *after), rows, title="band moves")


def print_comparison(comparison: Comparison, before: Sequence[str], after: Sequence[str]) -> None:
    """What `leadpulse compare` shows: the band moves, how the bands were paired, each contact that moves (when
    listed) and the count of moves."""
    console.print(move_table(comparison.bands, before, after))
    if comparison.pairs.by_position:
        pairs = ", ".join(f"{old} is {new}" for old, new in comparison.pairs.pairs.items())
        say("yellow", "note", f"bands paired by position (both rule sets have {len(before)}): {pairs}; a contact "
            "in a band now and in its pair under the proposed rules has not moved")
    elif len(before) != len(after):
        shared = ", ".join(comparison.pairs.pairs) or "none"
        say("yellow", "note", f"the rule sets have {len(before)} and {len(after)} bands, so bands are paired by name "
            f"({shared}); a contact in any other band has moved")
    if comparison.moves:
        console.print(literal(f"contacts that would move ({len(comparison.moves)}), each value as now -> proposed:"))
        console.print(contact_moves_table(comparison.moves))
    summary = f"{comparison.band_moves} of {comparison.contacts} contacts would change band"
    if comparison.lifecycle:
        summary += f", {comparison.status_moves} would change lifecycle status"
    console.print(literal(summary))


def contact_moves_table(moves: Sequence[ContactMove]) -> Table:
    """The contacts that would move, each with its band, score and status under the current and proposed rules."""
    rows = [(m.contact_id, m.name or "-", _band_move(m), move(*m.total), _status_move(*m.status)) for m in moves]
    return data_table(("contact", "name", "band", "score", "status"), rows)


def _band_move(moved: ContactMove) -> str:
    old, new = moved.band
    if moved.band_moved:
        return f"{old} -> {new}"
    return old if old == new else f"{old} (is {new})"


def _status_move(old: str | None, new: str | None) -> str:
    return f"{old or '-'} -> {new or '-'}" if old != new else old or "-"


def move(old: object, new: object) -> str:
    """A value that may have changed, as a history row shows it: `new` alone, or ``old -> new``."""
    if old == new or old is None:
        return "-" if new is None else _text(new)
    return f"{_text(old)} -> {_text(new)}"


def _text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
