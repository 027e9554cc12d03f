"""Opening a checkpoint store: what is refused, what each failure says, and openers racing on one file."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time

import pytest
import sqlite_utils

from leadpulse.core.errors import StoreError
from leadpulse.core.store import opening
from leadpulse.core.store import store as store_module
from leadpulse.core.store.migrations import INITIAL, MIGRATIONS, applied, migrate
from leadpulse.core.store.store import Store

ALL = [migration.name for migration in MIGRATIONS]


def old_schema_store(path):
    db = sqlite_utils.Database(path)
    db.enable_wal()
    migrate(db, [INITIAL])
    db.close()


def real_sqlite_error(tmp_path, statement: str) -> sqlite3.Error:
    """An error raised by SQLite itself, with its result code, for a failure a test cannot cause as root."""
    path = tmp_path / "probe.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE t (a)").connection.close()
    try:
        sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute(statement)
    except sqlite3.Error as exc:
        return exc
    raise AssertionError(f"{statement} did not fail")


def test_a_missing_path_becomes_a_new_store(tmp_path):
    path = tmp_path / "state" / "acme.sqlite"
    with Store.open(path) as store:
        assert applied(store.db) == ALL
    assert sorted(p.name for p in path.parent.iterdir()) == ["acme.sqlite"]


def test_an_emptied_store_file_is_refused_and_left_as_is(tmp_path):
    path = tmp_path / "acme.sqlite"
    path.write_bytes(b"")
    with pytest.raises(StoreError, match="is not a leadpulse checkpoint store: it is empty") as raised:
        Store.open(path)
    assert str(path) in str(raised.value) and "restore it from a backup" in str(raised.value)
    assert path.read_bytes() == b""


def test_a_database_without_the_migrations_table_is_refused(tmp_path):
    path = tmp_path / "acme.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE other (a)").connection.close()
    with pytest.raises(StoreError, match="holds tables other but no migrations table"):
        Store.open(path)


def test_a_file_that_is_not_a_database_is_offered_the_move_aside(tmp_path):
    path = tmp_path / "acme.sqlite"
    path.write_bytes(b"not a database\n" * 100)
    with pytest.raises(StoreError, match=r"damaged or not an SQLite database.*move it aside"):
        Store.open(path)


def test_an_unwritable_store_names_the_folder_to_fix_and_offers_no_move_aside(tmp_path, monkeypatch):
    readonly = real_sqlite_error(tmp_path, "INSERT INTO t VALUES (1)")
    monkeypatch.setattr(store_module, "connect", lambda path: (_ for _ in ()).throw(readonly))
    with pytest.raises(StoreError) as raised:
        Store.open(tmp_path / "acme.sqlite")
    message = str(raised.value)
    assert "readonly database" in message and f"make {tmp_path} and the files in it writable" in message
    assert "move it aside" not in message


def test_a_folder_that_cannot_be_created_is_a_store_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "state"))

    monkeypatch.setattr(store_module.Path, "mkdir", refuse)
    with pytest.raises(StoreError, match=r"state: cannot be written .*writable by the user leadpulse runs as"):
        Store.open(tmp_path / "state" / "acme.sqlite")


def test_a_store_locked_past_the_wait_says_to_try_again(tmp_path, monkeypatch):
    path = tmp_path / "acme.sqlite"
    old_schema_store(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    monkeypatch.setattr(opening, "_BUSY_MS", 50)
    try:
        with pytest.raises(StoreError, match=r"another process holds the checkpoint store locked.*try again") as raised:
            Store.open(path)
        assert "move it aside" not in str(raised.value)
    finally:
        holder.close()


def test_an_unwritable_run_lock_is_a_store_error_naming_it(tmp_path):
    with Store.open(tmp_path / "acme.sqlite") as store:
        (tmp_path / "acme.sqlite.lock").mkdir()  # a lock file that cannot be opened, even by root
        with pytest.raises(StoreError, match=r"tenant 'acme': .*acme\.sqlite\.lock"), store.lock("acme"):
            pass


def _open_at(path, start_at, results):
    while time.time() < start_at:
        pass
    try:
        Store.open(path).close()
        results.put("ok")
    except StoreError as exc:
        results.put(str(exc))


@pytest.mark.slow
@pytest.mark.parametrize("schema", ["fresh", "old"])
def test_two_processes_opening_one_store_at_once_both_succeed(tmp_path, schema):
    context = multiprocessing.get_context("fork")
    outcomes = []
    for attempt in range(8):
        path = tmp_path / f"acme{attempt}.sqlite"
        if schema == "old":
            old_schema_store(path)
        results = context.Queue()
        start_at = time.time() + 0.2
        openers = [context.Process(target=_open_at, args=(path, start_at, results)) for _ in range(2)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(30)
        outcomes += [results.get(timeout=5) for _ in openers]
        with Store.open(path) as store:
            assert applied(store.db) == ALL
    assert set(outcomes) == {"ok"}


def test_a_store_is_created_on_a_filesystem_without_hard_links(tmp_path, monkeypatch):
    import os

    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    with Store.open(tmp_path / "state" / "acme.sqlite") as store:
        assert store.runs() == []
    assert sorted(p.name for p in (tmp_path / "state").iterdir() if p.suffix == ".sqlite") == ["acme.sqlite"]
