"""ClickHouse adapter: one URL (chdb:///path embedded, https://... server), migrations, inserts, reads."""

from __future__ import annotations

import re
import struct
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from importlib import resources
from operator import attrgetter
from typing import Any
from urllib.parse import unquote, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DataError, ProgrammingError

from billing.kernel.errors import StoreRejected, StoreUnavailable
from billing.kernel.periods import Month, utc
from billing.metering.events import STORED_FIELDS, StoredEvent
from billing.metering.exactly_once import block_token

# The columns every insert writes, one per StoredEvent field but its properties, which are written
# only by a block that has some, as two maps (their columns default to empty maps).
EVENT_COLUMNS = [name for name in STORED_FIELDS if name != "properties"]
PROPERTY_COLUMNS = ["string_properties", "number_properties"]
# Errors about the rows themselves (a value out of its column's range, a wrong type), raised by the
# driver while encoding the block: nothing reached the server, and nothing ever will.
_PERMANENT = (DataError, ProgrammingError, OverflowError, TypeError, struct.error)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_lock = threading.Lock()
_clients: dict[tuple[str, str], Client] = {}


def connect(url: str, database: str, *, timeout_s: float = 10.0) -> Client:
    """A cached client for (url, database); the database is created when missing."""
    if not _IDENT.match(database):
        raise ValueError(f"bad database name {database!r}")
    key = (url, database)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _new_client(url, database, timeout_s)
            _clients[key] = client
        return client


def connected_urls() -> list[str]:
    """The URLs this process holds a cached client for, first connected first (one per database)."""
    with _lock:
        return [url for url, _database in _clients]


def _new_client(url: str, database: str, timeout_s: float) -> Client:
    parsed = urlparse(url)
    if parsed.scheme == "chdb":
        bootstrap = clickhouse_connect.get_client(dsn=url)
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        return clickhouse_connect.get_client(dsn=url, database=database)
    if parsed.scheme not in ("http", "https", "clickhouse", "clickhouses"):
        raise ValueError(f"unsupported CLICKHOUSE_URL scheme {parsed.scheme!r}")
    secure = parsed.scheme in ("https", "clickhouses")
    common: dict[str, Any] = dict(
        host=parsed.hostname,
        port=parsed.port or (8443 if secure else 8123),
        username=unquote(parsed.username or "default"),
        password=unquote(parsed.password or ""),
        secure=secure,
        connect_timeout=timeout_s,
        send_receive_timeout=timeout_s,
    )
    bootstrap = clickhouse_connect.get_client(**common)
    bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    return clickhouse_connect.get_client(database=database, **common)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("billing.adapters.clickhouse").joinpath("migrations").iterdir():
        match = re.match(r"^(\d+)_(.+)\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


class ClickHouseUsageStore:
    """Everything the domain needs from ClickHouse."""

    def __init__(self, client: Client):
        self.client = client

    @classmethod
    def from_url(cls, url: str, database: str, *, timeout_s: float = 10.0) -> ClickHouseUsageStore:
        return cls(connect(url, database, timeout_s=timeout_s))

    # -- schema ---------------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Apply pending migrations in order; safe to run any number of times."""
        self.client.command(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
            "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version"
        )
        done = {row[0] for row in self.client.query("SELECT version FROM schema_migrations").result_rows}
        applied = []
        for version, name, sql in migrations():
            if version in done:
                continue
            for statement in _statements(sql):
                self.client.command(statement)
            self.client.insert("schema_migrations", [[version, name]], column_names=["version", "name"])
            applied.append(f"{version:04d}_{name}")
        return applied

    # -- writes ---------------------------------------------------------------------------------
    def insert_events(self, events: Sequence[StoredEvent]) -> None:
        """Insert one block. The dedup token makes a replay of the same block a no-op."""
        if not events:
            return
        # Column-oriented: the driver serialises columns, so handing it columns skips a transpose.
        columns = [list(map(attrgetter(c), events)) for c in EVENT_COLUMNS]
        names = EVENT_COLUMNS
        if any(e.properties for e in events):
            columns += map(list, zip(*(e.split_properties() for e in events)))
            names = EVENT_COLUMNS + PROPERTY_COLUMNS
        try:
            self.client.insert(
                "usage_events",
                columns,
                column_names=names,
                column_oriented=True,
                settings={
                    "insert_deduplication_token": block_token(events),
                    "deduplicate_blocks_in_dependent_materialized_views": 1,
                },
            )
        except _PERMANENT as exc:  # the data itself is refused: a retry or replay can never succeed
            raise StoreRejected(f"ClickHouse refused the block: {exc}") from exc
        except Exception as exc:  # any driver/network/server failure means "not known to be stored"
            raise StoreUnavailable(f"ClickHouse insert failed: {exc}") from exc

    # -- reads ----------------------------------------------------------------------------------
    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.client.query(sql, parameters=parameters or {}).result_rows]

    def existing_event_ids(self, tenant_id: str, event_ids: Iterable[str]) -> set[str]:
        ids = list(event_ids)
        if not ids:
            return set()
        rows = self.query(
            "SELECT DISTINCT event_id FROM usage_events WHERE tenant_id = {t:String} AND event_id IN {ids:Array(String)}",
            {"t": tenant_id, "ids": ids},
        )
        return {r[0] for r in rows}

    def now(self) -> datetime:
        """ClickHouse's clock (``now64(3)``): the clock ``stored_at`` is written with, so the close's
        watermark is compared with stored_at on one clock."""
        return utc(self.query("SELECT now64(3, 'UTC')")[0][0])

    def stored_queries(self, month: Month) -> dict[str, int]:
        """Each tenant's stored queries of ``month``, each event once (FINAL)."""
        rows = self.query(
            "SELECT tenant_id, sum(queries) FROM usage_events FINAL "
            "WHERE timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {end:DateTime64(3, 'UTC')} "
            "GROUP BY tenant_id",
            {"start": month.start, "end": month.end},
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def month_usage(self, tenant_id: str, month: Month) -> dict[str, Any]:
        """Exactly-once totals of a tenant's month (duplicates collapsed by FINAL)."""
        rows = self.query(
            """
            SELECT model, sum(sign) AS events, sum(queries), sum(input_tokens), sum(output_tokens),
                   sum(bytes), sum(cost_usd)
            FROM usage_events FINAL
            WHERE tenant_id = {t:String} AND timestamp >= {start:DateTime64(3, 'UTC')}
              AND timestamp < {end:DateTime64(3, 'UTC')}
            GROUP BY model ORDER BY model
            """,
            {"t": tenant_id, "start": month.start, "end": month.end},
        )
        by_model = [
            {
                "model": r[0],
                "events": r[1],
                "queries": r[2],
                "input_tokens": r[3],
                "output_tokens": r[4],
                "bytes": r[5],
                "cost_usd": Decimal(r[6]),
            }
            for r in rows
        ]
        total = {
            k: sum(m[k] for m in by_model)
            for k in ("events", "queries", "input_tokens", "output_tokens", "bytes")
        }
        total["cost_usd"] = sum((m["cost_usd"] for m in by_model), Decimal(0))
        return {"tenant_id": tenant_id, "month": str(month), "by_model": by_model, **total}


def as_utc(value: datetime) -> datetime:
    return utc(value)
