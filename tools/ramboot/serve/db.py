"""The database: SQLite (WAL) by default, PostgreSQL for several replicas; one code path.

Writes go through one writer thread per process that commits them in groups:
it takes every write waiting (up to `batch_limit`), runs them in one
transaction, commits once, and only then answers them all. Should one write
raise (a conflicting event), the group is rolled back and run again with each
write in its own savepoint, so that one fails alone; the common case pays for
no savepoints. A request is acknowledged after its COMMIT
returned: with SQLite's `synchronous=FULL` the WAL is on disk by then, and
PostgreSQL's commit is durable by default. One fsync carries a whole group,
which is what lets a single process store thousands of events a second.

Reads run on a small pool of threads, each with its own connection (WAL
readers never wait for the writer).

SQL is written once with `?` placeholders (turned into `%s` for psycopg).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ramboot.errors import RambootError
from ramboot.serve import migrations

log = logging.getLogger("ramboot.serve.db")

T = TypeVar("T")
Params = Sequence[Any]
# PostgreSQL advisory lock key for migrations: "rbt1" as an integer.
_MIGRATION_LOCK = 0x72627431
# How long an SQLite connection waits for another one's lock.
_BUSY_TIMEOUT_S = 30


def _enter_wal(connection: sqlite3.Connection) -> str:
    """Switch to WAL and return the journal mode SQLite reports.

    SQLite does not call the busy handler for this switch: with several
    processes opening a new database at once, one of them gets "database is
    locked" at once. Retry it, bounded by the same timeout as other locks.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            return str(connection.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


class DatabaseError(RambootError):
    """The database cannot be opened, migrated or used."""


@dataclass(frozen=True)
class Location:
    dialect: str  # "sqlite" or "postgresql"
    target: str  # a file path, or a libpq connection string

    @classmethod
    def parse(cls, url: str) -> Location:
        """`sqlite:///var/lib/ramboot/serve.db`, a plain path, or `postgresql://...`."""
        if url.startswith(("postgresql://", "postgres://")):
            return cls("postgresql", url)
        if url.startswith("sqlite://"):
            path = url.removeprefix("sqlite://")
            if not path.startswith("/"):
                raise DatabaseError(f"{url}: write sqlite:///absolute/path (three slashes)")
            return cls("sqlite", path)
        if "://" in url:
            raise DatabaseError(f"{url}: unsupported database (sqlite:///PATH or postgresql://)")
        return cls("sqlite", str(Path(url).absolute()))


class Tx:
    """A connection inside a transaction, with rows as dicts."""

    def __init__(self, connection: Any, dialect: str) -> None:
        self.connection = connection
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Params = ()) -> Any:
        return self.connection.execute(self._sql(sql), tuple(params))

    def one(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        row = self.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def all(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self.execute(sql, params).fetchall()]

    def locked(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        """`one`, with the row locked for a read-modify-write (FOR UPDATE on
        PostgreSQL; SQLite's writer already holds the whole database)."""
        return self.one(sql + (" FOR UPDATE" if self.dialect == "postgresql" else ""), params)


@dataclass
class _Write:
    fn: Callable[[Tx], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


_STOP = object()


class Database:
    def __init__(self, url: str, *, batch_limit: int = 256, readers: int = 4) -> None:
        self.location = Location.parse(url)
        self.batch_limit = batch_limit
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="rb-db-read")
        self._local = threading.local()
        self._reader_connections: list[Any] = []
        self._lock = threading.Lock()
        self.batches = 0
        self.writes = 0

    @property
    def dialect(self) -> str:
        return self.location.dialect

    # -- connections ----------------------------------------------------------------------------

    def connect(self) -> Any:
        if self.dialect == "sqlite":
            path = Path(self.location.target)
            if not path.parent.is_dir():
                raise DatabaseError(f"{path}: directory {path.parent} does not exist")
            try:
                connection = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_S,
                                             check_same_thread=False)
                connection.row_factory = sqlite3.Row
                connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_S * 1000}")
                mode = _enter_wal(connection)
                if mode != "wal":
                    raise DatabaseError(f"{path}: cannot use WAL mode (got {mode})")
                connection.execute("PRAGMA synchronous = FULL")
                connection.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as error:
                raise DatabaseError(f"{path}: {error}") from None
            return connection
        try:
            import psycopg  # noqa: PLC0415 (only PostgreSQL deployments need it)
            from psycopg.rows import dict_row  # noqa: PLC0415
        except ImportError:
            raise DatabaseError("PostgreSQL needs psycopg: pip install 'ramboot[serve]'") from None
        try:
            return psycopg.connect(self.location.target, autocommit=True, row_factory=dict_row,
                                   connect_timeout=10)
        except psycopg.Error as error:
            raise DatabaseError(f"PostgreSQL: {str(error).strip()}") from None

    @contextlib.contextmanager
    def transaction(self, connection: Any) -> Iterator[Tx]:
        """One transaction on `connection` (used by migrations, tests and tools)."""
        tx = Tx(connection, self.dialect)
        tx.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        try:
            yield tx
        except BaseException:
            tx.execute("ROLLBACK")
            raise
        tx.execute("COMMIT")

    # -- life cycle -----------------------------------------------------------------------------

    def migrate(self) -> int:
        """Bring the schema to migrations.LATEST; returns the version found before."""
        connection = self.connect()
        try:
            with self.transaction(connection) as tx:
                if self.dialect == "postgresql":
                    tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
                tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = tx.one("SELECT max(version) AS version FROM schema_version")
                found = int(row["version"]) if row and row["version"] is not None else 0
                if found > migrations.LATEST:
                    raise DatabaseError(
                        f"the database schema is version {found}, newer than this ramboot "
                        f"knows ({migrations.LATEST}): upgrade ramboot")
                for migration in migrations.MIGRATIONS:
                    if migration.version <= found:
                        continue
                    log.info("database: applying migration %d (%s)", migration.version,
                             migration.description)
                    for statement in migrations.statements(migration, self.dialect):
                        tx.execute(statement)
                    tx.execute("INSERT INTO schema_version (version) VALUES (?)",
                               (migration.version,))
            return found
        finally:
            connection.close()

    def start(self) -> None:
        self.migrate()
        connection = self.connect()
        self._writer = threading.Thread(target=self._write_loop, args=(connection,),
                                        name="rb-db-writer", daemon=True)
        self._writer.start()

    def stop(self) -> None:
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join(timeout=30)
            self._writer = None
        self._readers.shutdown(wait=True)
        with self._lock:
            for connection in self._reader_connections:
                with contextlib.suppress(Exception):
                    connection.close()
            self._reader_connections.clear()

    # -- writing --------------------------------------------------------------------------------

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in the writer's next group; returns after that group committed."""
        if self._writer is None:
            raise DatabaseError("the database is not started")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Write(fn, loop, future))
        return await future

    def _write_loop(self, connection: Any) -> None:
        stopping = False
        while not stopping:
            batch: list[_Write] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
                if len(batch) >= self.batch_limit:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit_group(connection, batch)
        connection.close()

    def _run_group(self, tx: Tx, batch: list[_Write], *, isolate: bool) -> list[tuple[bool, Any]]:
        """Run every write of `batch` in one transaction and commit it.

        isolate=False: the fast path, no savepoints; the first write that raises
        makes it raise `_Retry` (after a rollback). isolate=True: each write in
        its own savepoint, so one that fails leaves the others.
        """
        outcomes: list[tuple[bool, Any]] = []
        tx.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        try:
            for write in batch:
                if not isolate:
                    outcomes.append((True, write.fn(tx)))
                    continue
                tx.execute("SAVEPOINT one")
                try:
                    outcomes.append((True, write.fn(tx)))
                    tx.execute("RELEASE SAVEPOINT one")
                except Exception as error:  # this write only: the group goes on
                    tx.execute("ROLLBACK TO SAVEPOINT one")
                    tx.execute("RELEASE SAVEPOINT one")
                    outcomes.append((False, error))
            tx.execute("COMMIT")
        except Exception:
            with contextlib.suppress(Exception):
                tx.execute("ROLLBACK")
            raise
        return outcomes

    def _commit_group(self, connection: Any, batch: list[_Write]) -> None:
        tx = Tx(connection, self.dialect)
        try:
            try:
                outcomes = self._run_group(tx, batch, isolate=False)
            except Exception:
                # Some write refused (a conflict, a bad row): nothing was kept;
                # run the group again with each write in its own savepoint.
                outcomes = self._run_group(tx, batch, isolate=True)
        except Exception as error:
            log.error("database: a group of %d write(s) failed: %s", len(batch), error)
            failure = DatabaseError(f"database write failed: {error}")
            outcomes = [(False, failure)] * len(batch)
        self.batches += 1
        self.writes += len(batch)
        # One wake-up of each event loop per group, not one per write.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for write, (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(write.loop, []).append((write.future, ok, value))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle_all, settled)

    # -- reading --------------------------------------------------------------------------------

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` on a reader thread's connection (autocommit: one snapshot per statement)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, fn)

    def _read(self, fn: Callable[[Tx], T]) -> T:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self.connect()
            with self._lock:
                self._reader_connections.append(connection)
        return fn(Tx(connection, self.dialect))


def _settle_all(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in settled:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
