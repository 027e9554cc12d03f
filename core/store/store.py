"""The checkpoint store: one SQLite file per tenant, so every run is incremental and a crash loses nothing.

It holds what was pulled (contacts, activities, outcomes, skipped records, one cursor per stream, the record each
merged contact lives on as), what was computed (current scores with each rule's contribution, and a history of
score, band and status changes), what is owed to the CRM (the outbox, see `leadpulse.core.store.outbox`), one row
per run (see `leadpulse.core.store.runs`) and the API calls of the last minutes (see `leadpulse.core.store.calls`).

Pages are applied in one transaction each, cursor included, so a cursor never runs ahead of the data it
covers. Reading for a rescore streams contacts in id order, a chunk at a time, with their activities, so a
million contacts never sit in memory at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby, pairwise
from operator import itemgetter
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, TypedDict, Unpack, overload

import numpy as np
import numpy.typing as npt
import orjson
import sqlite_utils

from leadpulse.core.contract import GoneContact, Page, SkippedRecord
from leadpulse.core.errors import RunLocked, StoreError
from leadpulse.core.model import Activity, ActivityKind, Contact, ContactKind, Outcome, utc
from leadpulse.core.store.calls import CallLog
from leadpulse.core.store.opening import connect, create, damaged, is_damage, open_failure, refuse_foreign
from leadpulse.core.store.outbox import Outbox
from leadpulse.core.store.runs import RunCounts, RunOutcome, RunRecord

#: a row as SQLite gives it or takes it
Row = tuple[Any, ...]


class Card(Protocol):
    """What the store keeps of a score card (`leadpulse.core.engine.scoring.ScoreCard` satisfies it)."""

    @property
    def contact_id(self) -> str: ...

    @property
    def as_of(self) -> datetime: ...

    @property
    def total(self) -> float: ...

    @property
    def axes(self) -> Mapping[str, float]: ...

    @property
    def band(self) -> str: ...

    @property
    def grade(self) -> str | None: ...

    @property
    def valid_until(self) -> datetime | None: ...

    @property
    def quadrant(self) -> Any: ...

    @property
    def contributions(self) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class StoredScore:
    """A contact's current score as last saved, with each rule's contribution and what was last queued for the CRM."""

    contact_id: str
    run_id: int | None
    fingerprint: str
    as_of: datetime
    total: float
    band: str
    grade: str | None
    quadrant: str | None
    axes: Mapping[str, float]
    contributions: tuple[Mapping[str, Any], ...]
    valid_until: datetime | None
    status: str | None
    written: Mapping[str, Any]


class PriorScore(NamedTuple):
    """A contact's saved score as a rescore compares against it: the columns as stored, JSON left as text."""

    total: float
    band: str
    grade: str | None
    quadrant: str | None
    axes: str
    contributions: str
    valid_until: str | None
    status: str | None
    written: str
    decided_under: str | None
    #: the contact's inputs changed after this score was saved (it is dirty)
    inputs_changed: int

    def same_card(self, card: Card) -> bool:
        """Whether `card` would be saved exactly as this score is (the rule fingerprint and as-of aside)."""
        return self.saved_as(saved_card(card))

    def saved_as(self, card: SavedCard) -> bool:
        """Whether a card saved as `card` (see `saved_cards`) is this score (the rule fingerprint and as-of aside)."""
        return self[:_SAVED_CARD] == card

    def same_until(self, card: SavedCard) -> bool:
        """Whether a card saved as `card` keeps this score's `valid_until` (see `Store.save_scored`)."""
        return self.valid_until == card[_VALID_UNTIL]

    def settled(self, decisions: str) -> bool:
        """Whether what this score led to (writes, status, tasks) still stands for an equal card: the contact's
        inputs are as they were when it was saved, and so is everything that turns a score into decisions, whose
        fingerprint is `decisions`."""
        return not self.inputs_changed and self.decided_under == decisions

    def written_values(self) -> Mapping[str, Any]:
        return _EMPTY if self.written == "{}" else _loads(self.written)


#: A score card as the store saves it (see `saved_cards`): total, band, grade, quadrant, axes, contributions and
#: valid_until, in the order of `PriorScore`'s first fields and of a score row's from its total on.
SavedCard = tuple[float, str, "str | None", "str | None", str, str, "str | None"]
_SAVED_CARD = 7
_VALID_UNTIL = 6


def saved_card(card: Card) -> SavedCard:
    """One card as the store saves it: `saved_cards` for many."""
    return (card.total, card.band, card.grade, _enum_value(card.quadrant), encode_axes(card),
            encode_contributions(card), _iso_or_none(card.valid_until))


def saved_cards(
    totals: Sequence[float], bands: Sequence[str], grades: Sequence[str | None], quadrants: Sequence[str | None],
    axes: Mapping[str, Sequence[float]], contributions: Sequence[Any], codes: npt.NDArray[np.int64],
    bounds: Sequence[int], valid_until: npt.NDArray[np.datetime64],
) -> list[SavedCard]:
    """Cards, given field by field, as the store saves them: what `PriorScore.saved_as` compares and `score_row`
    saves. Element i of each field is card i's: its quadrant by value, its value on each axis, and its valid_until
    in UTC (`datetime64[us]`, NaT for none). Its contributions are the elements from ``bounds[i]`` to
    ``bounds[i + 1]``, element k being ``contributions[codes[k]]`` (each object encoded once, however many cards
    it is in). Each card's saved form is `saved_card`'s."""
    texts = np.empty(len(contributions), dtype=object)
    texts[:] = [_encoded_contribution(contribution) for contribution in contributions]
    encoded = texts[codes].tolist()
    return list(zip(
        totals, bands, grades, quadrants, _axes_texts(axes, len(totals)),
        ["[" + ",".join(encoded[start:end]) + "]" for start, end in pairwise(bounds)], _moment_texts(valid_until),
        strict=True,
    ))


def _moment_texts(moments: npt.NDArray[np.datetime64]) -> list[str | None]:
    """UTC `moments` (NaT for none) as `iso` writes them, all at once."""
    texts = np.datetime_as_string(moments.astype("datetime64[ms]"), unit="ms").tolist()
    return [None if text == "NaT" else text + _UTC_SUFFIX for text in texts]


def _axes_texts(axes: Mapping[str, Sequence[float]], size: int) -> list[str]:
    """Each card's axes as `encode_axes` writes them, given axis by axis: each column's numbers written by the
    same encoder in one call."""
    if not axes:
        return [_fast_dumps({})] * size
    template = "{" + ",".join(_fast_dumps(name).replace("%", "%%") + ":%s" for name in axes) + "}"
    columns = [_fast_dumps(list(values))[1:-1].split(",") if size else [] for values in axes.values()]
    return [template % values for values in zip(*columns, strict=True)]


class Selection(TypedDict, total=False):
    """Which contacts a scoring read selects besides all or the due ones (see `Store.scoring_chunks`): those due
    at `as_of`, under rules `fingerprint` and decisions `decisions`, `chunk_size` at a time, with ids in
    ``(after, through]``."""

    as_of: datetime | None
    fingerprint: str | None
    decisions: str | None
    chunk_size: int
    after: str
    through: str | None


class ContactRows(Sequence[Contact]):
    """The contacts of a chunk as the store read them (rows that start with `_CONTACT_COLUMNS`), each made a
    `Contact` when first asked for: a scoring pass makes only those it creates a task for. Their `ids` and
    `fields`, and each one's `kind` and `status`, are read off the rows without making any."""

    __slots__ = ("_made", "_rows", "fields", "ids")

    def __init__(self, rows: Sequence[Row]) -> None:
        self._rows = rows
        self.ids: list[str] = [row[0] for row in rows]
        #: each contact's fields, the very mapping its `Contact` holds
        self.fields: list[dict[str, Any]] = [_loads(row[8]) for row in rows]
        self._made: list[Contact | None] = [None] * len(rows)

    def __len__(self) -> int:
        return len(self._rows)

    def kind(self, i: int) -> ContactKind:
        """Contact `i`'s kind, without making it."""
        return _CONTACT_KINDS[self._rows[i][1]]

    def status(self, i: int) -> str | None:
        """Contact `i`'s lifecycle value in the CRM, without making it."""
        status: str | None = self._rows[i][6]
        return status

    @overload
    def __getitem__(self, i: int) -> Contact: ...

    @overload
    def __getitem__(self, i: slice) -> list[Contact]: ...

    def __getitem__(self, i: int | slice) -> Contact | list[Contact]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self._rows)))]
        made = self._made[i]
        if made is None:
            made = self._made[i] = _contact(self._rows[i], self.fields[i])
        return made


class ActivitiesRead(NamedTuple):
    """Which activity rows a scoring read gives: those of these kinds, and those of these vendor types (what
    `leadpulse.core.engine.columnar.ColumnEngine.activities_read` finds the rules read)."""

    kinds: frozenset[str]
    vendor_types: frozenset[str]

    def clause(self) -> tuple[str, list[str]]:
        """The SQL condition on an activity row that selects them, and its parameters."""
        terms = [f"{column} IN ({','.join('?' * len(values))})"
                 for column, values in (("kind", self.kinds), ("vendor_type", self.vendor_types)) if values]
        return (f"({' OR '.join(terms)})" if terms else "0"), [*sorted(self.kinds), *sorted(self.vendor_types)]


class ScoringBatch(NamedTuple):
    """A chunk of contacts to score (see `Store.scoring_batches`): each with its saved score, and all their
    activity rows (see `leadpulse.core.engine.scoring.ActivityRow`) in one list, by contact, then id."""

    contacts: ContactRows
    priors: list[PriorScore | None]
    activities: list[Row]


#: One contact to score: the contact, its activity rows (see `leadpulse.core.engine.scoring.ActivityRow`) and its
#: saved score.
ScoringInput = tuple[Contact, list[Row], "PriorScore | None"]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One change of a contact's score, band or lifecycle status."""

    at: datetime
    run_id: int | None
    old_total: float | None
    new_total: float
    old_band: str | None
    new_band: str
    old_status: str | None
    new_status: str | None


_UTC_SUFFIX = "+00:00"


def iso(moment: datetime) -> str:
    """The store's one timestamp format: UTC, millisecond precision, so text order is time order."""
    if moment.tzinfo is UTC:  # what the store and the engine make: nothing to convert
        return moment.isoformat(timespec="milliseconds")
    return utc(moment).isoformat(timespec="milliseconds")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"cannot store a {type(value).__name__} as JSON: {value!r}")


# One encoder for the store: json.dumps with options builds a new encoder per call, a cost paid per contact.
_dumps = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode


def _fast_dumps(value: Any) -> str:
    """Compact JSON for what a rescore saves per contact; datetimes in the store's format, as `_dumps` writes."""
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # what orjson refuses and json accepts (NaN, lone surrogates)
        return json.loads(text)


def encode_axes(card: Card) -> str:
    """A card's axes as the store saves them."""
    return _fast_dumps(card.axes)


def encode_contributions(card: Card) -> str:
    """A card's contributions, one JSON object per rule that fired, as the store saves them."""
    return "[" + ",".join([_encoded_contribution(c) for c in card.contributions]) + "]"


#: Each contribution's JSON, remembered: a rescore meets the same few (a fit rule's is always the same) over and
#: over, for every card it compares with the saved one and saves.
_ENCODED: dict[Any, str] = {}
_ENCODED_LIMIT = 100_000


#: ... and by the very object, for the contributions the engines hand to many cards (a fit rule's, the usual ones
#: of a column-wise chunk): found by identity, without hashing ten fields. Each entry holds its object, so no other
#: object can take its id while it is here.
_BY_OBJECT: dict[int, tuple[Any, str]] = {}


def _encoded_contribution(contribution: Any) -> str:
    """`contribution` as the JSON object `_fast_dumps` writes for it."""
    held = _BY_OBJECT.get(id(contribution))
    if held is not None and held[0] is contribution:
        return held[1]
    if not _plain(contribution) or getattr(contribution, "age_days", None) is not None:
        # a decayed one tells its own age: met once, it would only crowd the others out of the memory
        return _fast_dumps(_contribution(contribution))
    try:
        text = _ENCODED.get(contribution)
    except TypeError:  # an unhashable contribution (not the engine's)
        return _fast_dumps(_contribution(contribution))
    if text is None:
        text = _fast_dumps(_contribution(contribution))
        if len(_ENCODED) < _ENCODED_LIMIT:
            _ENCODED[contribution] = text
    else:  # met before: likely an object handed to many cards
        if len(_BY_OBJECT) >= _ENCODED_LIMIT:
            _BY_OBJECT.clear()
        _BY_OBJECT[id(contribution)] = (contribution, text)
    return text


def _plain(contribution: Any) -> bool:
    """Whether `contribution` holds what the engine puts in one (text, float points other than zero, an int count):
    only then do equal contributions read the same (12 and 12.0, 0.0 and -0.0, 1 and True are equal, not alike)."""
    points = contribution.points
    return (
        points.__class__ is float and points != 0.0 and contribution.occurrences.__class__ is int
        and contribution.rule_id.__class__ is str and contribution.axis.__class__ is str
        and contribution.detail.__class__ is str
    )


def _iso_or_none(moment: datetime | None) -> str | None:
    return iso(moment) if moment is not None else None


_EMPTY: Mapping[str, Any] = MappingProxyType({})


class LazyJson(Mapping[str, Any]):
    """A JSON object parsed on first access: a rescore reads attributes only for the rules that need them."""

    __slots__ = ("_data", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            self._data = _loads(self._text)
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return repr(self._load())


def _lazy(text: str) -> Mapping[str, Any]:
    return _EMPTY if text == "{}" else LazyJson(text)


_KINDS = {kind.value: kind for kind in ActivityKind}
_CONTACT_KINDS = {kind.value: kind for kind in ContactKind}
_fromiso = datetime.fromisoformat

_CONTACT_COLUMNS = (
    "c.id, c.kind, c.updated_at, c.email, c.name, c.owner_id, c.status, c.opted_out, c.fields, c.raw, c.created_at"
)
_ACTIVITY_COLUMNS = "contact_id, id, kind, occurred_at, vendor_type, attributes"
#: What a rescore reads: contacts in id order, activities in (contact, id) order. The benchmark's plain scan
#: iterates exactly these rows and columns.
CONTACT_SCAN = (
    "SELECT id, kind, updated_at, email, name, owner_id, status, opted_out, fields, raw, created_at FROM contacts"
)
ACTIVITY_SCAN = f"SELECT {_ACTIVITY_COLUMNS} FROM activities"
#: A contact's saved score as `PriorScore` reads it (NULLs when it has none), after its contact columns.
_PRIOR_COLUMNS = (
    "s.contact_id, s.total, s.band, s.grade, s.quadrant, s.axes, s.contributions, s.valid_until, s.status, s.written, "
    "s.decided_under, c.dirty"
)
_SCORE_COLUMNS = (
    "contact_id, run_id, fingerprint, as_of, total, band, grade, quadrant, axes, contributions, valid_until, "
    "status, written"
)
#: What saving a score writes: `_SCORE_COLUMNS` and the decisions fingerprint (see `PriorScore.settled`).
_SAVED_COLUMNS = f"{_SCORE_COLUMNS}, decided_under"
#: What a score scored again to the same result records of that pass (named parameters run, fp, as_of, decided).
_MARKS = "run_id = :run, fingerprint = :fp, as_of = :as_of, decided_under = :decided"
#: What `Store.long_write` lets the write-ahead log grow to before SQLite copies it into the store: 64 MiB of
#: 4 KiB pages. A rescore of 100,000 contacts writes some 150 MiB; at SQLite's default (4 MiB) it stopped to copy and
#: sync 30 times, about 0.3 s of the 2 s it spent saving.
LONG_WRITE_LOG_PAGES = 16_384


def _contact(row: Row, fields: dict[str, Any] | None = None) -> Contact:
    """The contact in a row that starts with `_CONTACT_COLUMNS` (`fields`: its fields, when parsed already)."""
    return Contact(
        row[0], _CONTACT_KINDS[row[1]], _fromiso(row[2]), row[3], row[4], row[5], row[6], bool(row[7]),
        _loads(row[8]) if fields is None else fields, _lazy(row[9]), _fromiso(row[10]) if row[10] else None,
    )


_FIRST = itemgetter(0)


_PRIOR_AT = _CONTACT_COLUMNS.count(",") + 1


def _prior(row: Row) -> PriorScore | None:
    """The saved score in a row of `_CONTACT_COLUMNS` then `_PRIOR_COLUMNS`, if the contact has one."""
    return PriorScore._make(row[_PRIOR_AT + 1:]) if row[_PRIOR_AT] is not None else None


def _stored_score(row: Row) -> StoredScore:
    cid, run_id, fp, as_of, total, band, grade, quadrant, axes, contributions, valid_until, status, written = row
    return StoredScore(
        cid, run_id, fp, _fromiso(as_of), total, band, grade, quadrant, json.loads(axes),
        tuple(json.loads(contributions)), _fromiso(valid_until) if valid_until else None, status,
        json.loads(written),
    )


#: what bent an engagement rule's count or points (see `leadpulse.core.engine.scoring.Contribution`): saved only
#: when set, so a contribution without them reads as it always did
_DETAILS = ("matched", "cap", "full", "age_days", "half_life_days")


def _contribution(contribution: Any) -> dict[str, Any]:
    found = {
        "rule_id": contribution.rule_id,
        "axis": contribution.axis,
        "points": contribution.points,
        "occurrences": contribution.occurrences,
        "detail": contribution.detail,
    }
    for name in _DETAILS:
        value = getattr(contribution, name, None)
        if value is not None:
            found[name] = value
    return found


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Store:
    """One tenant's checkpoint store. Open it with `Store.open`; it is not shared between threads."""

    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self.db = db
        self.path = path
        self.outbox = Outbox(db)
        self.calls = CallLog(db)

    @classmethod
    def open(cls, path: Path | str) -> Store:
        """Open the store at `path`, in WAL mode, migrated to the latest schema; a path that does not exist yet
        becomes a new store, its folder created if needed.

        :raises StoreError: if the file is not a leadpulse store (emptied, overwritten, damaged), cannot be written,
            or stays locked by another process; the message names the file and what to do.
        """
        path = Path(path)
        try:
            if not path.exists():
                create(path)
            db = connect(path)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(open_failure(path, exc)) from exc
        return cls(db, path)

    @classmethod
    @contextlib.contextmanager
    def reading(cls, path: Path | str) -> Iterator[Store]:
        """The existing store at `path`, opened read-only for the block: looking never creates a store, never
        migrates one and never waits on a daemon writing to it (WAL lets readers through).

        :raises StoreError: if it cannot be read, in the block too (damaged, not a leadpulse store, unreadable);
            the message names the file and what to do.
        """
        path = Path(path)
        try:
            db = sqlite_utils.Database(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5))
        except sqlite3.Error as exc:
            raise StoreError(open_failure(path, exc)) from exc
        try:
            refuse_foreign(db, path)
            yield cls(db, path)
        except sqlite3.Error as exc:
            raise StoreError(open_failure(path, exc)) from exc
        finally:
            db.close()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, trace: object) -> None:
        """Close the store; SQLite finding it damaged in the block is said as a `StoreError` naming it."""
        self.close()
        if isinstance(exc, sqlite3.DatabaseError) and is_damage(exc):
            raise StoreError(open_failure(self.path, exc)) from exc

    def verify(self, *, thorough: bool = False) -> list[str]:
        """What SQLite finds wrong in the store (empty when nothing): ``quick_check``, which reads every page once,
        or with `thorough` ``integrity_check``, which also checks each index against its table."""
        check = "integrity_check" if thorough else "quick_check"
        try:
            found = [row[0] for row in self.db.execute(f"PRAGMA {check}(20)")]
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        return [] if found == ["ok"] else found

    def require_sound(self) -> None:
        """:raises StoreError: naming the file and the way out, if SQLite finds it damaged (`verify`)."""
        if problems := self.verify():
            raise StoreError(damaged(self.path, "; ".join(problems)))

    def transaction(self) -> contextlib.AbstractContextManager[sqlite_utils.Database]:
        """One transaction around several calls; nested ones become savepoints."""
        return self.db.atomic()

    @contextlib.contextmanager
    def long_write(self, *, checkpoint: Callable[[], bool] = lambda: True, copies: bool = True) -> Iterator[None]:
        """Around many write transactions in a row (a large scoring pass): SQLite copies its write-ahead log into
        the store file once the log holds `LONG_WRITE_LOG_PAGES` pages instead of its default 1,000 (4 MiB), and
        each copy syncs both files to disk; without `copies`, this connection never does (another one copies the
        log, see `copy_log`). On the way out the default comes back and, when `checkpoint` says so (the pass wrote
        much), the log is copied over at once, so the copy is part of the pass, not of whatever writes next."""
        found = self.db.execute("PRAGMA wal_autocheckpoint").fetchone()
        default = found[0] if found else 1000
        self.db.execute(f"PRAGMA wal_autocheckpoint = {LONG_WRITE_LOG_PAGES if copies else 0}")
        try:
            yield
        finally:
            self.db.execute(f"PRAGMA wal_autocheckpoint = {int(default)}")
            if checkpoint():
                self.copy_log()

    def copy_log(self) -> None:
        """Copy what the write-ahead log holds into the store file, as far as no reader still needs it, waiting
        for nobody: while other connections write (a pass's scoring workers), without holding them up."""
        if not self.db.conn.in_transaction:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @contextlib.contextmanager
    def lock(self, tenant: str) -> Iterator[None]:
        """Hold the tenant's run lock (a file lock beside the store, freed by the OS if the process dies).

        :raises RunLocked: if another run of `tenant` holds it.
        """
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            handle = open(lock_path, "a+")  # noqa: SIM115 - held open by the `with` below, once it opened
        except OSError as exc:
            raise StoreError(f"tenant {tenant!r}: {open_failure(lock_path, exc)}") from exc
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise RunLocked(
                    f"tenant {tenant!r}: another run holds {lock_path} (pid {holder}); "
                    "wait for it to finish, or stop it, then run again"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # pulled data ----------------------------------------------------------------------------------------

    def cursor(self, stream: str) -> str | None:
        """Where `stream` resumes, or None if it was never pulled."""
        row = self.db.execute("SELECT cursor FROM cursors WHERE stream = ?", (stream,)).fetchone()
        return row[0] if row else None

    def cursors(self) -> dict[str, str | None]:
        return dict(self.db.execute("SELECT stream, cursor FROM cursors ORDER BY stream").fetchall())

    def reset_cursors(self) -> None:
        """Forget every stream's cursor, so the next pull starts from the beginning."""
        with self.transaction():
            self.db.execute("DELETE FROM cursors")

    def apply_page(self, page: Page, run_id: int | None = None) -> None:
        """Store a page's records and its stream's cursor in one transaction.

        A contact becomes due for scoring only when what scoring reads changed: the contact's own values
        (not merely its modification time, which the CRM also moves when leadpulse's own writes land) or one of
        its activities, new or edited. Records seen again at a cursor's overlap change nothing.

        A gone contact with `merged_into` hands its activities to that record, which becomes due if it gained any,
        and has its score history copied there once; activities pulled later under its id are stored under that
        record. A contact stored again is no longer gone nor merged.
        """
        with self.transaction():
            conn = self.db.conn
            contacts = [_contact_row(c) for c in page.contacts]
            due = {key[0] for key in _changed(conn, "contacts", _CONTACT_INPUTS, (0,), contacts, _contact_inputs)}
            conn.executemany(_UPSERT_CONTACT, contacts)
            conn.executemany("DELETE FROM merged_contacts WHERE contact_id = ?", [row[:1] for row in contacts])
            due |= self._merge(page.gone)
            activities = self._redirected([_activity_row(a) for a in page.activities])
            due |= {key[0] for key in _changed(conn, "activities", _ACTIVITY_COLUMNS, (0, 1), activities, tuple)}
            conn.executemany(f"INSERT OR REPLACE INTO activities ({_ACTIVITY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                             activities)
            conn.executemany(
                "INSERT OR REPLACE INTO outcomes (contact_id, converted, converted_at) VALUES (?, ?, ?)",
                [(o.contact_id, int(o.converted), iso(o.converted_at) if o.converted_at else None)
                 for o in page.outcomes],
            )
            conn.executemany("UPDATE contacts SET dirty = 1 WHERE id = ? AND dirty = 0",
                             [(cid,) for cid in sorted(due)])
            if page.gone:
                conn.executemany("UPDATE contacts SET gone = ?, dirty = 0 WHERE id = ?",
                                 [(g.reason, g.contact_id) for g in page.gone])
                self.outbox.park_owed_to({g.contact_id: g.reason for g in page.gone})
            now = iso(datetime.now().astimezone())
            conn.executemany(
                "INSERT INTO skipped (run_id, stream, record_id, reason, at) VALUES (?, ?, ?, ?, ?)",
                [(run_id, s.stream, s.record_id, s.reason, now) for s in page.skipped],
            )
            conn.execute(
                "INSERT OR REPLACE INTO cursors (stream, cursor, updated_at) VALUES (?, ?, ?)",
                (page.stream, page.cursor, now),
            )

    def _merge(self, gone: Sequence[GoneContact]) -> set[str]:
        """Record where each of `gone` merged into another record lives on, move its activities there (one kept
        where that record already has the same activity) and copy its score history there (rows it already has
        are not copied again); return the records that gained activities."""
        merges = {g.contact_id: g.merged_into for g in gone if g.merged_into and g.merged_into != g.contact_id}
        if not merges:
            return set()
        conn = self.db.conn
        conn.executemany("INSERT OR REPLACE INTO merged_contacts (contact_id, merged_into) VALUES (?, ?)",
                         merges.items())
        gained = set()
        for source, into in self._merged_into(merges).items():
            moved = conn.execute(_MOVE_ACTIVITIES, {"from": source, "into": into}).rowcount
            conn.execute("DELETE FROM activities WHERE contact_id = ?", (source,))
            conn.execute(_COPY_HISTORY, {"from": source, "into": into})
            if moved > 0:
                gained.add(into)
        return gained

    def _redirected(self, activities: list[Row]) -> list[Row]:
        """Activity rows with the contact of each that was merged into another record replaced by that record."""
        into = self._merged_into({row[0] for row in activities})
        if not into:
            return activities
        return [(into[row[0]], *row[1:]) if row[0] in into else row for row in activities]

    def _merged_into(self, contact_ids: Iterable[str]) -> dict[str, str]:
        """The record each of `contact_ids` that was merged into another lives on as, a chain of merges followed to
        its end (a Lead converted into a Contact later merged into another Contact ends at that one)."""
        hops: dict[str, str] = {}
        asking = set(contact_ids)
        asked: set[str] = set()
        while asking:
            for chunk in _chunks(sorted(asking), 900):
                marks = ",".join("?" * len(chunk))
                found = self.db.execute(
                    f"SELECT contact_id, merged_into FROM merged_contacts WHERE contact_id IN ({marks})", list(chunk)
                )
                hops.update(found.fetchall())
            asked |= asking
            asking = set(hops.values()) - asked
        return {cid: _end_of(cid, hops) for cid in contact_ids if cid in hops}

    def crm_fact(self, name: str) -> Any:
        """A fact the CRM account told about itself (see `set_crm_fact`), or None."""
        row = self.db.execute("SELECT value FROM crm_facts WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_crm_fact(self, name: str, value: Any) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO crm_facts (name, value, updated_at) VALUES (?, ?, ?)",
                (name, json.dumps(value), iso(datetime.now().astimezone())),
            )

    def contact(self, contact_id: str) -> Contact | None:
        row = self.db.execute(f"SELECT {_CONTACT_COLUMNS} FROM contacts c WHERE c.id = ?", (contact_id,)).fetchone()
        return _contact(row) if row else None

    def activities(self, contact_id: str) -> list[Activity]:
        rows = self.db.execute(f"SELECT {_ACTIVITY_COLUMNS} FROM activities WHERE contact_id = ?", (contact_id,))
        return [_activity(row) for row in rows]

    def attribute_values(self, key: str, kinds: Sequence[str], vendor_types: Sequence[str] = (), *,
                         limit: int = 10_000) -> list[Any]:
        """The values attribute `key` takes on the activities of `kinds` or `vendor_types`, each once, up to `limit`
        of them: where ``validate`` looks for an example value two rules both match."""
        if '"' in key or not (kinds or vendor_types):
            return []
        extracted = "CASE WHEN json_valid(attributes) THEN json_extract(attributes, :path) END"
        found = self.db.execute(
            f"""SELECT DISTINCT {extracted} FROM activities
                WHERE (kind IN (SELECT value FROM json_each(:kinds))
                       OR vendor_type IN (SELECT value FROM json_each(:vendor_types)))
                  AND {extracted} IS NOT NULL LIMIT :limit""",
            {"path": f'$."{key}"', "kinds": json.dumps(list(kinds)), "vendor_types": json.dumps(list(vendor_types)),
             "limit": limit},
        )
        return [row[0] for row in found]

    def outcomes(self) -> dict[str, Outcome]:
        """Every stored outcome, by contact id."""
        return {cid: Outcome(cid, bool(converted), _fromiso(at) if at else None)
                for cid, converted, at in self.db.execute("SELECT contact_id, converted, converted_at FROM outcomes")}

    def counts(self) -> dict[str, int]:
        """Rows per table, for status displays."""
        tables = ("contacts", "activities", "outcomes", "skipped", "scores", "history", "outbox", "runs")
        return {table: self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}

    # scoring --------------------------------------------------------------------------------------------

    def contacts_to_score(
        self,
        all: bool = False,
        *,
        as_of: datetime | None = None,
        fingerprint: str | None = None,
        chunk_size: int = 1000,
    ) -> Iterator[tuple[Contact, list[Activity]]]:
        """Stream contacts in id order, each with its activities (in id order).

        With `all`, every contact; otherwise the dirty ones, the never scored, those scored under another
        `fingerprint` (when given) and those whose score's `valid_until` is at or before `as_of` (when given).
        Each chunk is read in full before it is yielded, so saving scores between items is safe.
        """
        chunks = self.scoring_chunks(all, as_of=as_of, fingerprint=fingerprint, chunk_size=chunk_size, priors=False)
        for chunk in chunks:
            for contact, rows, _ in chunk:
                yield contact, [_activity(row) for row in rows]

    def scoring_chunks(
        self, all: bool = False, *, priors: bool = True, **selection: Unpack[Selection]
    ) -> Iterator[list[ScoringInput]]:
        """What `contacts_to_score` selects, a chunk at a time: each contact with its activity rows (in id order)
        and, with `priors`, its saved score. What a rescore reads, without building an `Activity` per row.

        With `decisions`, contacts whose score was decided under another decisions fingerprint (see
        `PriorScore.settled`) are selected too. Only contacts with an id above `after` and, when given, at or
        below `through` (see `scoring_bounds`).
        """
        for rows, found in self._due(all, **selection):
            activities = {cid: list(group) for cid, group in groupby(found, _FIRST)}
            yield [(_contact(row), activities.get(row[0], []), _prior(row) if priors else None) for row in rows]

    def scoring_batches(self, all: bool = False, *, read: ActivitiesRead | None = None,
                        **selection: Unpack[Selection]) -> Iterator[ScoringBatch]:
        """What `scoring_chunks` reads, each chunk's activity rows in one list (by contact, then id), as a
        column-wise scorer takes them; with `read`, only the activity rows of its kinds and vendor types."""
        for rows, found in self._due(all, read=read, **selection):
            yield ScoringBatch(ContactRows(rows), [_prior(row) for row in rows], found.fetchall())

    def _due(
        self, all: bool, *, as_of: datetime | None = None, fingerprint: str | None = None,
        decisions: str | None = None, chunk_size: int = 1000, after: str = "", through: str | None = None,
        read: ActivitiesRead | None = None,
    ) -> Iterator[tuple[list[Row], sqlite3.Cursor]]:
        """Each chunk of the contacts due (see `scoring_chunks`): their rows (`_CONTACT_COLUMNS`, then
        `_PRIOR_COLUMNS`) and a cursor over their activity rows (all, or those `read` names), by contact, then id
        (read it before the next)."""
        where, selected = self._selection(all, as_of, fingerprint, decisions)
        upto = " AND c.id <= :through" if through is not None else ""
        while True:
            params = {**selected, "after": after, "through": through, "n": chunk_size}
            rows = self.db.execute(
                f"""SELECT {_CONTACT_COLUMNS}, {_PRIOR_COLUMNS}
                    FROM contacts c LEFT JOIN scores s ON s.contact_id = c.id
                    WHERE c.id > :after{upto} AND ({where}) ORDER BY c.id LIMIT :n""",
                params,
            ).fetchall()
            if not rows:
                return
            yield rows, self._activities_of(rows, contiguous=all, read=read)
            after = rows[-1][0]

    def inputs_changed(self) -> bool:
        """Whether some contact's inputs changed since it was last scored (it is dirty, due for scoring)."""
        return self.db.execute("SELECT 1 FROM contacts WHERE dirty = 1 LIMIT 1").fetchone() is not None

    def scoring_bounds(
        self,
        all: bool = False,
        *,
        as_of: datetime | None = None,
        fingerprint: str | None = None,
        decisions: str | None = None,
        chunk_size: int = 1000,
    ) -> Iterator[tuple[str, str]]:
        """The `scoring_chunks` selection cut into id ranges ``(after, through]`` of `chunk_size` contacts each, so
        separate readers can share it out. Only each range's last id is read: SQLite steps over the others.
        """
        where, selected = self._selection(all, as_of, fingerprint, decisions)
        found = f"FROM contacts c LEFT JOIN scores s ON s.contact_id = c.id WHERE c.id > :after AND ({where})"
        after = ""
        while True:
            params = {**selected, "after": after, "skip": chunk_size - 1}
            row = self.db.execute(f"SELECT c.id {found} ORDER BY c.id LIMIT 1 OFFSET :skip", params).fetchone()
            if row is None:  # fewer than a chunk left: the last range ends at the last of them
                row = self.db.execute(f"SELECT c.id {found} ORDER BY c.id DESC LIMIT 1", params).fetchone()
                if row is not None:
                    yield after, row[0]
                return
            yield after, row[0]
            after = row[0]

    @staticmethod
    def _selection(
        all: bool, as_of: datetime | None, fingerprint: str | None, decisions: str | None
    ) -> tuple[str, dict[str, Any]]:
        """The WHERE clause that picks the contacts due for scoring, and the parameters it names."""
        params = {"as_of": iso(as_of) if as_of else None, "fp": fingerprint, "decisions": decisions}
        if all:
            return "c.gone IS NULL", params
        terms = ["c.dirty = 1", "s.contact_id IS NULL"]
        if fingerprint is not None:
            terms.append("s.fingerprint != :fp")
        if decisions is not None:
            terms.append("s.decided_under IS NOT :decisions")
        if as_of is not None:
            terms.append("s.valid_until <= :as_of")
        return f"c.gone IS NULL AND ({' OR '.join(terms)})", params

    def _activities_of(self, contact_rows: Sequence[Row], *, contiguous: bool,
                       read: ActivitiesRead | None = None) -> sqlite3.Cursor:
        """The chunk's activity rows (those `read` names, when given), by contact, then id (with `contiguous`, also
        those of contacts in its id range that are not in it)."""
        if contiguous:
            # Every contact in the id range is in the chunk, so one range scan of the clustered table serves it.
            where, params = "contact_id BETWEEN ? AND ?", [contact_rows[0][0], contact_rows[-1][0]]
        else:
            params = [row[0] for row in contact_rows]
            where = f"contact_id IN ({','.join('?' * len(params))})"
        if read is not None:  # SQLite steps over the others in the same range scan: they never become objects
            clause, named = read.clause()
            where, params = f"{where} AND {clause}", [*params, *named]
        return self.db.execute(f"{ACTIVITY_SCAN} WHERE {where} ORDER BY contact_id, id", params)

    def current_scores(self, contact_ids: Sequence[str]) -> dict[str, StoredScore]:
        """The saved score of each of `contact_ids` that has one."""
        found: dict[str, StoredScore] = {}
        for chunk in _chunks(contact_ids, 900):
            rows = self.db.execute(
                f"SELECT {_SCORE_COLUMNS} FROM scores WHERE contact_id IN ({','.join('?' * len(chunk))})", list(chunk)
            )
            for row in rows:
                found[row[0]] = _stored_score(row)
        return found

    def score(self, contact_id: str) -> StoredScore | None:
        return self.current_scores([contact_id]).get(contact_id)

    def save_scores(
        self,
        cards: Sequence[Card],
        run_id: int | None,
        fingerprint: str,
        *,
        statuses: Mapping[str, str] | None = None,
        written: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """Keep `cards` as the contacts' current scores and clear their dirty mark, in one transaction.

        `statuses` holds the lifecycle set for a contact in this run, `written` the CRM values queued for it;
        contacts absent from them keep their previous ones. A history row is added for each contact whose
        total, band or status changed (or that had no score before).
        """
        self.save_scored(score_rows(cards, run_id, fingerprint, statuses=statuses, written=written))

    def save_scored(
        self,
        rows: Sequence[Row],
        unchanged: Sequence[str] = (),
        *,
        run_id: int | None = None,
        fingerprint: str = "",
        as_of: datetime | None = None,
        decided_under: str | None = None,
        span: tuple[str, str] | None = None,
        history: Sequence[Row] | None = None,
        same_until: Sequence[Row] = (),
    ) -> None:
        """Save one scored chunk in one transaction: `rows` (as `score_rows` builds them) replace their contacts'
        scores; the `unchanged` contacts, scored again under `fingerprint` at `as_of` to the very result saved
        before, keep their scores and only record that run, rules, as-of and `decided_under` (the decisions
        fingerprint, see `PriorScore.settled`). No contact saved stays dirty.

        `same_until` are rows like `rows` of contacts whose saved score has the very `valid_until` they carry:
        saved without rewriting the index on it.

        With `span` ``(after, through)``, the chunk is every contact with an id in that range, so the unchanged
        ones and the dirty marks are set with one statement over the range instead of one per contact.

        `history`, when given, is the history rows (see `history_row`) the caller worked out against the saved
        scores it read; else they are worked out here.
        """
        with self.transaction():
            if history is None:
                history = self._history_of(sorted([*rows, *same_until], key=_FIRST) if same_until else rows)
            self.db.conn.executemany(
                """INSERT INTO history (contact_id, run_id, at, old_total, new_total, old_band, new_band, old_status,
                                        new_status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                history,
            )
            self._upsert_scores(rows)
            self._update_scores(same_until)
            marks = {"run": run_id, "fp": fingerprint, "as_of": iso(as_of) if as_of is not None else None,
                     "decided": decided_under}
            if span is not None:
                self._mark_span(span, marks)
                return
            self.db.conn.executemany(
                f"UPDATE scores SET {_MARKS} WHERE contact_id = :id",
                [{**marks, "id": cid} for cid in unchanged],
            )
            self.db.conn.executemany(
                "UPDATE contacts SET dirty = 0 WHERE id = ? AND dirty = 1",
                [(row[0],) for row in (*rows, *same_until)] + [(cid,) for cid in unchanged],
            )

    def _mark_span(self, span: tuple[str, str], marks: dict[str, Any]) -> None:
        # The rows just saved already carry these marks: only the unchanged ones are rewritten.
        params = {"after": span[0], "through": span[1], **marks}
        self.db.execute(
            f"""UPDATE scores SET {_MARKS}
               WHERE contact_id > :after AND contact_id <= :through
                 AND (fingerprint != :fp OR as_of IS NOT :as_of OR run_id IS NOT :run
                      OR decided_under IS NOT :decided)""",
            params,
        )
        self.db.execute("UPDATE contacts SET dirty = 0 WHERE id > :after AND id <= :through AND dirty = 1", params)

    def _history_of(self, rows: Sequence[Row]) -> list[Row]:
        """The history rows saving `rows` (as `score_rows` builds them) adds, against the saved scores."""
        saved: dict[str, Row] = {}
        for chunk in _chunks([row[0] for row in rows], 900):
            found = self.db.execute(
                "SELECT contact_id, total, band, status FROM scores "
                f"WHERE contact_id IN ({','.join('?' * len(chunk))})",
                list(chunk),
            )
            saved.update((row[0], row[1:]) for row in found)
        history = (history_row(row[0], row[1], row[3], row[4], row[5], row[11], saved.get(row[0])) for row in rows)
        return [entry for entry in history if entry is not None]

    def _update_scores(self, rows: Sequence[Row]) -> None:
        """Rows of contacts whose saved score has their `valid_until` already: updated, the index on it untouched
        (SQLite rewrites an index entry whenever a statement sets one of its columns, even to the same value)."""
        updated = self.db.conn.executemany(
            """UPDATE scores SET run_id = ?2, fingerprint = ?3, as_of = ?4, total = ?5, band = ?6, grade = ?7,
                 quadrant = ?8, axes = ?9, contributions = ?10, status = coalesce(?12, status),
                 written = coalesce(?13, written), decided_under = ?14
               WHERE contact_id = ?1""",
            rows,
        ).rowcount
        if updated != len(rows):  # some score was not there after all: save them all the general way
            self._upsert_scores(rows)

    def _upsert_scores(self, rows: Sequence[Row]) -> None:
        self.db.conn.executemany(
            f"""INSERT INTO scores ({_SAVED_COLUMNS})
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, coalesce(?13, '{{}}'), ?14)
                ON CONFLICT (contact_id) DO UPDATE SET run_id = excluded.run_id, fingerprint = excluded.fingerprint,
                  as_of = excluded.as_of, total = excluded.total, band = excluded.band, grade = excluded.grade,
                  quadrant = excluded.quadrant, axes = excluded.axes, contributions = excluded.contributions,
                  valid_until = excluded.valid_until, status = coalesce(excluded.status, scores.status),
                  written = CASE WHEN ?13 IS NULL THEN scores.written ELSE excluded.written END,
                  decided_under = excluded.decided_under""",
            rows,
        )

    def history(self, contact_id: str) -> list[HistoryEntry]:
        """A contact's score, band and status changes, oldest first (those copied from a contact merged into it
        among its own, by time)."""
        rows = self.db.execute(
            """SELECT at, run_id, old_total, new_total, old_band, new_band, old_status, new_status
               FROM history WHERE contact_id = ? ORDER BY at, id""",
            (contact_id,),
        )
        return [HistoryEntry(_fromiso(row[0]), *row[1:]) for row in rows]

    def band_counts(self) -> dict[str, int]:
        """Scored contacts per band."""
        return dict(self.db.execute("SELECT band, count(*) FROM scores GROUP BY band").fetchall())

    def top_scores(self, n: int) -> list[StoredScore]:
        """The `n` highest scores, ties by contact id."""
        rows = self.db.execute(f"SELECT {_SCORE_COLUMNS} FROM scores ORDER BY total DESC, contact_id LIMIT ?", (n,))
        return [_stored_score(row) for row in rows]

    # runs -----------------------------------------------------------------------------------------------

    def start_run(self, tenant: str, started_at: datetime, *, full: bool = False, dry_run: bool = False) -> int:
        """Record the start of a run; returns its id."""
        with self.transaction():
            cursor = self.db.execute(
                "INSERT INTO runs (tenant, started_at, full, dry_run) VALUES (?, ?, ?, ?)",
                (tenant, iso(started_at), int(full), int(dry_run)),
            )
        assert cursor.lastrowid is not None  # an INSERT always has one
        return cursor.lastrowid

    def finish_run(
        self, run_id: int, finished_at: datetime, outcome: RunOutcome, counts: RunCounts, error: str | None = None
    ) -> None:
        """Record how a run ended: its outcome, its counts and its error, if any."""
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET finished_at = :at, outcome = :outcome, error = :error, "
                f"{_RUN_COUNTS_SET} WHERE id = :id",
                {"at": iso(finished_at), "outcome": outcome.value, "error": error, "id": run_id, **counts.as_dict()},
            )

    def run_ended_at(self, run_id: int) -> datetime | None:
        """When run `run_id` finished (when it started, if it never finished), or None if there is no such run."""
        row = self.db.execute("SELECT coalesce(finished_at, started_at) FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _fromiso(row[0]) if row else None

    def api_calls_since(self, moment: datetime) -> int:
        """API calls made by the runs that started at or after `moment`."""
        row = self.db.execute("SELECT coalesce(sum(api_calls), 0) FROM runs WHERE started_at >= ?", (iso(moment),))
        calls: int = row.fetchone()[0]
        return calls

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The latest runs, newest first."""
        return self._runs("1", limit)

    def last_sync(self) -> RunRecord | None:
        """The last finished run that talked to the CRM's write side: dry runs and offline rescores sent nothing."""
        return next(iter(self._runs(_SYNC, 1)), None)

    def unfinished_run(self) -> RunRecord | None:
        """A run started after the last sync and not finished: going now, or killed before it could record its end."""
        later = f"NOT ({_FINISHED}) AND id > (SELECT coalesce(max(id), 0) FROM runs WHERE {_SYNC})"
        return next(iter(self._runs(later, 1)), None)

    def last_error(self) -> str | None:
        """The error the latest run that failed (or stopped on one) recorded."""
        row = self.db.execute("SELECT error FROM runs WHERE error IS NOT NULL AND error != '' ORDER BY id DESC LIMIT 1")
        found = row.fetchone()
        return found[0] if found else None

    def _runs(self, where: str, limit: int) -> list[RunRecord]:
        # A store read (not migrated) by a newer leadpulse may lack the columns of newer counts: those read as 0.
        have = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
        counts = [name if name in have else "0" for name in RunCounts.names()]
        rows = self.db.execute(f"SELECT {_RUN_FACTS}, {', '.join(counts)} FROM runs WHERE {where} ORDER BY id DESC "
                               "LIMIT ?", (limit,))
        return [_run_record(row) for row in rows]

    def skipped_records(self, run_id: int, limit: int) -> list[SkippedRecord]:
        """The first `limit` records run `run_id` read and could not understand, in the order it met them."""
        rows = self.db.execute("SELECT stream, record_id, reason FROM skipped WHERE run_id = ? ORDER BY id LIMIT ?",
                               (run_id, limit))
        return [SkippedRecord(*row) for row in rows]


#: a run row `Store.finish_run` has closed; one still open is going, or its process was killed
_FINISHED = "finished_at IS NOT NULL"
#: a finished run that talked to the CRM's write side: dry runs and offline rescores sent nothing
_SYNC = f"{_FINISHED} AND dry_run = 0"
_RUN_FACTS = "id, tenant, started_at, finished_at, outcome, full, dry_run, error"
_RUN_COUNTS_SET = ", ".join(f"{name} = :{name}" for name in RunCounts.names())


def _run_record(row: Row) -> RunRecord:
    rid, tenant, started, finished, outcome, full, dry_run, error, *counts = row
    return RunRecord(
        id=rid, tenant=tenant, started_at=_fromiso(started), finished_at=_fromiso(finished) if finished else None,
        outcome=RunOutcome(outcome) if outcome else None, full=bool(full), dry_run=bool(dry_run), error=error,
        **dict(zip(RunCounts.names(), counts, strict=True)),
    )


def history_row(contact_id: str, run_id: int | None, at: str, total: float, band: str, status: str | None,
                saved: tuple[float, str, str | None] | None) -> Row | None:
    """The history row that saving a score of `total` and `band` adds, with `status` if set now, over the `saved`
    (total, band, status) the contact had, if any: (contact, run, at, old and new total, band and status). None
    when total, band and status all stay."""
    if saved is None:
        return (contact_id, run_id, at, None, total, None, band, None, status)
    old_total, old_band, old_status = saved
    if total == old_total and band == old_band and (status is None or status == old_status):
        return None
    return (contact_id, run_id, at, old_total, total, old_band, band, old_status,
            old_status if status is None else status)


def score_rows(
    cards: Sequence[Card],
    run_id: int | None,
    fingerprint: str,
    *,
    statuses: Mapping[str, str] | None = None,
    written: Mapping[str, Mapping[str, Any]] | None = None,
    decided_under: str | None = None,
) -> list[Row]:
    """The `scores` rows `Store.save_scores` saves for `cards`: plain tuples, cheap to hand between processes.

    `decided_under` is the decisions fingerprint the cards' writes and tasks were decided under, if they were.
    """
    statuses = statuses or {}
    written = written or {}
    rows = []
    as_of_text: dict[datetime, str] = {}  # one as-of per run: format it once, not per card
    for card in cards:
        cid = card.contact_id
        as_of = as_of_text.get(card.as_of) or as_of_text.setdefault(card.as_of, iso(card.as_of))
        rows.append(score_row(cid, run_id, fingerprint, as_of, saved_card(card), statuses.get(cid),
                              written.get(cid), decided_under))
    return rows


def score_row(contact_id: str, run_id: int | None, fingerprint: str, as_of: str, card: SavedCard,
              status: str | None, written: Mapping[str, Any] | None, decided_under: str | None) -> Row:
    """The `scores` row `Store.save_scored` saves for a card saved as `card` (see `saved_cards`), at `as_of` (the
    store's text of it): with `status` when one was set, and `written` when the values queued for the CRM changed."""
    return (contact_id, run_id, fingerprint, as_of, *card, status,
            _fast_dumps(written) if written is not None else None, decided_under)


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


#: what scoring reads of a stored contact: every column but the modification and creation times
_CONTACT_INPUTS = "id, kind, email, name, owner_id, status, opted_out, fields, raw"


def _contact_inputs(row: Row) -> Row:
    return row[:2] + row[3:10]


def _changed(conn: sqlite3.Connection, table: str, columns: str, keys: Sequence[int], rows: Sequence[Row],
             inputs: Callable[[Row], Row]) -> set[Row]:
    """The keys of `rows` that are new to `table` or differ from its stored row in `columns`.

    `keys` are the positions, in both `rows` and `columns`, of the table's primary key.
    """
    if not rows:
        return set()
    names = [columns.split(", ")[k] for k in keys]
    # One primary-key search per row: SQLite scans the whole table for a row-value IN (VALUES ...), but
    # answers an OR of key equalities with one index search each.
    one = "(" + " AND ".join(f"{name} = ?" for name in names) + ")"
    stored: dict[Row, Row] = {}
    for chunk in _chunks(rows, 200):
        query = f"SELECT {columns} FROM {table} WHERE {' OR '.join([one] * len(chunk))}"
        for found in conn.execute(query, [row[k] for row in chunk for k in keys]):
            stored[tuple(found[k] for k in keys)] = tuple(found)
    return {key for row in rows if stored.get(key := tuple(row[k] for k in keys)) != inputs(row)}


#: A pulled contact, stored (with `dirty` 0: `Store.apply_page` marks it due if scoring reads anything new) and no
#: longer gone.
_UPSERT_CONTACT = """INSERT INTO contacts
      (id, kind, updated_at, email, name, owner_id, status, opted_out, fields, raw, created_at, dirty)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
    ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, updated_at = excluded.updated_at,
      email = excluded.email, name = excluded.name, owner_id = excluded.owner_id,
      status = excluded.status, opted_out = excluded.opted_out, fields = excluded.fields,
      raw = excluded.raw, created_at = COALESCE(excluded.created_at, contacts.created_at), gone = NULL"""
#: A merged contact's activities, put under the record it was merged into (named parameters from, into); where
#: that record already has the same activity, its own is kept.
_MOVE_ACTIVITIES = f"""INSERT OR IGNORE INTO activities ({_ACTIVITY_COLUMNS})
    SELECT :into, id, kind, occurred_at, vendor_type, attributes FROM activities WHERE contact_id = :from"""
#: A merged contact's score history, copied to the record it was merged into (named parameters from, into); a row
#: that record already holds alike is not copied again, so applying the same merge twice adds nothing.
_COPY_HISTORY = """INSERT INTO history (contact_id, run_id, at, old_total, new_total, old_band, new_band, old_status,
                                       new_status)
    SELECT :into, run_id, at, old_total, new_total, old_band, new_band, old_status, new_status FROM history h
    WHERE h.contact_id = :from AND NOT EXISTS (
      SELECT 1 FROM history x WHERE x.contact_id = :into AND x.at = h.at AND x.run_id IS h.run_id
        AND x.old_total IS h.old_total AND x.new_total = h.new_total AND x.old_band IS h.old_band
        AND x.new_band = h.new_band AND x.old_status IS h.old_status AND x.new_status IS h.new_status)
    ORDER BY h.id"""


def _end_of(contact_id: str, hops: Mapping[str, str]) -> str:
    """Where following `hops` from `contact_id` ends; a cycle (which no CRM should report) ends where it closes."""
    seen = {contact_id}
    while (following := hops.get(contact_id)) is not None and following not in seen:
        contact_id = following
        seen.add(contact_id)
    return contact_id


def _contact_row(c: Contact) -> Row:
    return (
        c.id, c.kind.value, iso(c.updated_at), c.email, c.name, c.owner_id, c.status, int(c.opted_out),
        _dumps(dict(c.fields)), _dumps(dict(c.raw)), iso(c.created_at) if c.created_at else None,
    )


def _activity_row(a: Activity) -> Row:
    return (a.contact_id, a.id, a.kind.value, iso(a.occurred_at), a.vendor_type, _dumps(dict(a.attributes)))


def _activity(row: Row) -> Activity:
    contact_id, aid, kind, occurred_at, vendor_type, attributes = row
    return Activity(aid, contact_id, _KINDS[kind], _fromiso(occurred_at), vendor_type, _lazy(attributes))
