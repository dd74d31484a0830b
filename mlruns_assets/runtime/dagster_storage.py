"""Dagster's SQLite instance storage on kept connections, for the ``dagster.yaml`` this project
writes into every Dagster home (the UI, the daemon and its run workers load it from there):
``instance_class: KeptConnectionInstance`` makes it the default storage of whatever folder
Dagster gives the instance (DAGSTER_HOME, or the temporary one of ``dg check defs``).

Dagster's stock SQLite storages open a new SQLAlchemy engine, connect, commit and close for
every event: about four connections and a synchronous WAL flush per event, 9-20 ms each, which
was a quarter of an extraction's time. These subclasses keep one engine per database file
(the index and the few newest run shards) and commit with ``synchronous=NORMAL``: a commit is
durable when the process dies (kill -9 included) and on power loss loses at most the newest
events, never the database. A lost materialization record only makes the next ``extract``
re-extract a partition whose rows exist; it never vouches for rows that are not there.

Same files, tables and layout as Dagster's own ``DagsterSqliteStorage``: a home can switch
between the two either way. Subclassing private Dagster classes is the cost; the tests pin the
behaviour (tests/unit/runtime/test_dagster_storage.py) so an upgrade that breaks it fails CI.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
import yaml
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import (
    SqliteScheduleStorage,
)
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClassData

# The index shard plus the run shards of the runs a process is writing (one at a time here).
KEPT_RUN_SHARDS = 4


def kept_engine(conn_string: str) -> sa.Engine:
    """An engine whose connections stay open between uses and commit without a flush to disk.
    ``check_same_thread`` is off because the pool hands a connection to one thread at a time,
    not always the thread that opened it (the extraction runs in a worker thread)."""
    engine = sa.create_engine(
        conn_string,
        pool_size=1,
        max_overflow=4,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
    )

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


class KeptEngines:
    """Engines by database file, newest kept, the rest disposed; dropped without closing in a
    forked child (a connection must not cross a fork)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._engines: OrderedDict[str, sa.Engine] = OrderedDict()
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def get(self, conn_string: str, *, keep: bool = False) -> sa.Engine:
        with self._lock:
            if os.getpid() != self._pid:
                self._engines.clear()
                self._pid = os.getpid()
            engine = self._engines.get(conn_string)
            if engine is None:
                engine = self._engines[conn_string] = kept_engine(conn_string)
            self._engines.move_to_end(conn_string, last=not keep)
            while len(self._engines) > self._capacity:
                _, oldest = self._engines.popitem(last=False)
                oldest.dispose()
            return engine

    def dispose(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


class KeptConnectionEventLogStorage(SqliteEventLogStorage):
    """Dagster's run-sharded SQLite event log, on kept connections."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._kept = KeptEngines(KEPT_RUN_SHARDS + 1)
        super().__init__(base_dir, inst_data)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[sa.Connection]:
        with self._db_lock:
            # The index shard goes to the far end of the eviction order: it is used by every
            # asset event, the run shards by one run each.
            engine = self._kept.get(self.conn_string_for_shard(shard), keep=shard == "index")
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def dispose(self) -> None:
        super().dispose()
        self._kept.dispose()


class KeptConnectionRunStorage(SqliteRunStorage):
    """Dagster's SQLite run storage, on one kept engine."""

    def __init__(self, conn_string: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._kept = KeptEngines(1)
        super().__init__(conn_string, inst_data)

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        with self._kept.get(self._conn_string).connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        super().dispose()
        self._kept.dispose()


class KeptConnectionSqliteStorage(DagsterSqliteStorage):
    """``storage: custom:`` in ``dagster.yaml``: Dagster's SQLite storage under ``base_dir``,
    with runs and events on kept connections (schedules and sensor ticks are rare: stock)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        # Not super().__init__: it would open the stock storages on the same files first.
        self.base_dir = base_dir
        self._run_storage = KeptConnectionRunStorage.from_local(
            os.path.join(base_dir, "history", "")
        )
        self._event_log_storage = KeptConnectionEventLogStorage(
            os.path.join(base_dir, "history", "runs", "")
        )
        self._schedule_storage = SqliteScheduleStorage.from_local(
            os.path.join(base_dir, "schedules")
        )
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()  # type: ignore[no-untyped-call]

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, str]
    ) -> KeptConnectionSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)


class KeptConnectionInstance(DagsterInstance):
    """Dagster's instance, whose default storage is ``KeptConnectionSqliteStorage`` under the
    instance's own folder (a ``storage:`` block in ``dagster.yaml``, e.g. Postgres, still wins).

    An ``instance_class`` rather than a ``storage: custom:`` block because only the instance
    class is told the folder: a storage block would have to name it (``{env: DAGSTER_HOME}``),
    which fails where Dagster uses a temporary folder and no DAGSTER_HOME is set."""

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, ConfigurableClassData | None]:
        return {
            **InstanceRef.config_defaults(base_dir),
            "storage": ConfigurableClassData(
                __name__, KeptConnectionSqliteStorage.__name__, yaml.dump({"base_dir": base_dir})
            ),
        }
