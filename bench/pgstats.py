"""What the database server did: WAL bytes, rows written per table, and its CPU (PostgreSQL, Linux).

Shared by the benchmark legs (``bench/legs.py``) and ``bench/scale.py``. Every function takes a
DB-API cursor (Django's ``connection.cursor()`` or a psycopg cursor) on the PostgreSQL database
being measured; nothing here imports Django.

- ``wal_lsn(cursor)``: the current WAL insert position in bytes. Exact at once (no lazy flush):
  the difference of two readings is the WAL written by the whole cluster in between (every
  database of the server, and checkpoints/autovacuum, so keep the server otherwise quiet).
- ``table_writes(cursor, tables)``: ``n_tup_ins``/``n_tup_upd``/``n_tup_hot_upd``/``n_tup_del``
  per table from ``pg_stat_user_tables``. These counters are NOT exact at once, see below.
- ``snapshot(cursor, tables)`` / ``diff(before, after)``: both of the above (and the server CPU)
  at once; ``diff`` gives the per-table and total deltas.
- ``database_wal(cursor, start, end)``: the WAL records between two positions that touch the
  current database (and the commit records of their transactions), per transaction and table,
  read back with ``pg_walinspect``: exact even while other databases of the server are busy.
  ``hold_wal(cursor)`` keeps the WAL from being recycled until then.
- ``postgres_cpu_seconds()``: user+system CPU of every process named ``postgres`` (``/proc``),
  including the backends that have already exited (their CPU is in the postmaster's
  ``cutime``/``cstime`` once it has reaped them).

How the row counters are made reliable (PostgreSQL 15)
------------------------------------------------------
Since PostgreSQL 15 each backend keeps its table counters in local memory and flushes them to
shared memory lazily, in ``pgstat_report_stat()``:

- at the end of a transaction when the backend goes idle, but only if its last flush was at
  least 1 s ago (``PGSTAT_MIN_INTERVAL``); otherwise it arms a timer and flushes
  ``PGSTAT_IDLE_INTERVAL`` = **10 s** later (not ~1 s: waiting 1.5 s is not enough for a
  worker that was busy until the end of the run);
- when the backend exits (the connection is closed);
- ``pg_stat_force_next_flush()`` makes the *calling* backend flush when its current statement
  ends (it cannot flush anyone else's). ``pg_stat_database`` has the same lazy flush, so
  reading it instead does not help.

So a reading counts everything done before it when every other backend of the database has
either disconnected or been idle for more than 10 s. ``wait_for_flush(cursor)`` waits for
exactly that (from ``pg_stat_activity``: ``state = 'idle'`` and ``state_change`` older than
10.5 s, or gone), after forcing the caller's own flush. It returns at once when the other
connections are closed, which is what a benchmark should do before its "after" reading (stop
the ``qcluster``: its workers' backends exit and flush; close the producer's own connections
or read from the producer's connection, which ``snapshot`` flushes). ``snapshot(...,
settle=True)`` calls it first. Also, with ``stats_fetch_consistency = cache`` (the default) a
backend reads the statistics once per transaction: every read here calls
``pg_stat_clear_snapshot()`` first, so it works inside a transaction too.

Run outside a transaction block (Django autocommit) for ``pg_stat_force_next_flush()`` to take
effect before the next statement: inside ``atomic()`` the own backend flushes at commit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "WRITE_COUNTERS",
    "database_wal",
    "diff",
    "hold_wal",
    "lsn_text",
    "postgres_cpu_seconds",
    "release_wal",
    "snapshot",
    "table_writes",
    "wait_for_flush",
    "wal_lsn",
]

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

#: The ``pg_stat_user_tables`` columns ``table_writes`` reads, in this order.
WRITE_COUNTERS = ("n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del")

#: PostgreSQL 15's ``PGSTAT_IDLE_INTERVAL`` (10 s) plus a margin.
IDLE_FLUSH_SECONDS = 10.5


def wal_lsn(cursor: Any) -> int:
    """The current WAL insert position of the server, in bytes since ``0/0``.

    ``pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')``: subtract two readings to get the WAL
    bytes written in between, by every backend of the server (not only this database).
    """
    cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
    return int(cursor.fetchone()[0])


def _clear_snapshot(cursor: Any) -> None:
    cursor.execute("SELECT pg_stat_clear_snapshot()")
    cursor.fetchall()


def flush_own_stats(cursor: Any) -> None:
    """Make this cursor's backend flush its pending table counters (PostgreSQL 15+).

    The flush happens when the statement ends and the backend goes idle, so in autocommit
    mode the next statement sees it. Older servers (no such function) flush on their own
    schedule: nothing is done then.
    """
    cursor.execute(
        "SELECT count(*) FROM pg_proc WHERE proname = 'pg_stat_force_next_flush'"
    )
    if cursor.fetchone()[0]:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.fetchall()
        cursor.execute("SELECT 1")  # a statement boundary: the flush has happened
        cursor.fetchall()


def table_writes(cursor: Any, tables: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
    """Rows inserted/updated/HOT-updated/deleted so far, per table of the current database.

    ``{"webhooks_delivery": {"n_tup_ins": …, "n_tup_upd": …, "n_tup_hot_upd": …,
    "n_tup_del": …}, …}`` from ``pg_stat_user_tables`` (every user table when ``tables`` is
    ``None``; a named table that does not exist is absent). Cumulative since the statistics
    were last reset: subtract two readings (``diff``). The counters are flushed lazily by the
    other backends: see the module docstring and ``wait_for_flush``.
    ``n_tup_hot_upd`` is included in ``n_tup_upd``.
    """
    _clear_snapshot(cursor)
    columns = ", ".join(WRITE_COUNTERS)
    sql = f"SELECT relname, {columns} FROM pg_stat_user_tables"  # noqa: S608 (constants)
    params: list[Any] = []
    if tables is not None:
        names = list(tables)
        if not names:
            return {}
        sql += " WHERE relname = ANY(%s)"
        params.append(names)
    cursor.execute(sql, params)
    out: dict[str, dict[str, int]] = {}
    for row in cursor.fetchall():
        out[row[0]] = {name: int(value or 0) for name, value in zip(WRITE_COUNTERS, row[1:],
                                                                     strict=True)}
    return out


def _backends_not_flushed(cursor: Any) -> int:
    cursor.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend'"
        " AND NOT (state = 'idle' AND state_change < now() - make_interval(secs => %s))",
        [IDLE_FLUSH_SECONDS],
    )
    return int(cursor.fetchone()[0])


def wait_for_flush(cursor: Any, timeout: float = 30.0, poll: float = 0.1) -> float:
    """Wait until the table counters of every backend of this database are in shared memory.

    Forces this backend's own flush, then waits until every other client backend connected to
    the current database has disconnected or has been idle for more than 10.5 s (PostgreSQL 15
    flushes an idle backend's counters at most 10 s after it went idle). Returns the seconds
    waited; ``TimeoutError`` after ``timeout`` (a connection kept busy, or idle in a
    transaction). Close the other connections first (stop the ``qcluster``) to return at once.
    """
    start = time.monotonic()
    flush_own_stats(cursor)
    while _backends_not_flushed(cursor):
        if time.monotonic() - start > timeout:
            raise TimeoutError(
                f"other backends still busy (or idle < {IDLE_FLUSH_SECONDS}s) after {timeout:g}s"
            )
        time.sleep(poll)
    return time.monotonic() - start


def snapshot(cursor: Any, tables: Sequence[str] | None = None, *,
             settle: bool = False, timeout: float = 30.0) -> dict[str, Any]:
    """One reading: ``{"wal": bytes, "tables": table_writes(...), "cpu": seconds, "at": t}``.

    With ``settle=True``, ``wait_for_flush`` runs first (so the row counters include every
    other backend's work); otherwise only this backend's own counters are flushed, which is
    what the "before" reading needs when nothing else is connected, and WAL and CPU are exact
    anyway. Take the WAL reading last so that the flush waits write no WAL inside the window.
    """
    waited = wait_for_flush(cursor, timeout=timeout) if settle else 0.0
    if not settle:
        flush_own_stats(cursor)
    writes = table_writes(cursor, tables)
    cpu = postgres_cpu_seconds()
    return {"wal": wal_lsn(cursor), "tables": writes, "cpu": cpu,
            "at": time.monotonic(), "settle_s": waited}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What happened between two ``snapshot`` readings.

    ``{"wal_bytes": int, "cpu_s": float, "seconds": float, "tables": {table: {counter: delta}},
    "total": {counter: delta summed over the tables}, "rows_written": ins+upd+del (total)}``.
    Tables with no change are left out of ``tables``.
    """
    tables: dict[str, dict[str, int]] = {}
    total = dict.fromkeys(WRITE_COUNTERS, 0)
    for name, counters in after["tables"].items():
        old = before["tables"].get(name, {})
        delta = {key: counters.get(key, 0) - old.get(key, 0) for key in WRITE_COUNTERS}
        if any(delta.values()):
            tables[name] = delta
            for key, value in delta.items():
                total[key] += value
    return {
        "wal_bytes": after["wal"] - before["wal"],
        "cpu_s": after["cpu"] - before["cpu"],
        "seconds": after["at"] - before["at"],
        "tables": tables,
        "total": total,
        "rows_written": total["n_tup_ins"] + total["n_tup_upd"] + total["n_tup_del"],
    }


def lsn_text(position: int) -> str:
    """``wal_lsn``'s integer as PostgreSQL writes an LSN (``'1A/2B3C4D'``)."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def hold_wal(cursor: Any, name: str) -> bool:
    """Keep the server's WAL from now on until this cursor's session ends.

    A temporary physical replication slot (``name``; dropped with the session, or by
    ``release_wal``), so that ``database_wal`` can still read the WAL of the window after a
    checkpoint recycled its segments. Returns ``False`` (nothing held) when the server allows
    no slot (``max_replication_slots = 0``, ``wal_level = minimal``) or the role may not.
    """
    try:
        cursor.execute("SELECT pg_create_physical_replication_slot(%s, true, true)", [name])
        cursor.fetchall()
    except Exception:  # any refusal: the caller reads without the guarantee
        return False
    return True


def release_wal(cursor: Any, name: str) -> None:
    """Drop the slot ``hold_wal`` made (it also goes when the session ends)."""
    cursor.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                   " WHERE slot_name = %s AND temporary", [name])
    cursor.fetchall()


#: Rows ``database_wal`` returns: (xid, table, resource manager, record type, records,
#: bytes, full-page-image bytes). ``table`` is the table a heap, index or TOAST block belongs
#: to ("" for commit/abort records, "?" for a relation not found, such as a dropped one).
WAL_SQL = r"""
WITH r AS (
    SELECT xid, resource_manager AS rmgr, record_type AS rtype, record_length AS len,
           fpi_length AS fpi, regexp_match(block_ref, 'rel \d+/(\d+)/(\d+)') AS ref
    FROM pg_get_wal_records_info(%(start)s::pg_lsn, %(end)s::pg_lsn)
), here AS (
    SELECT oid FROM pg_database WHERE datname = current_database()
), mine AS (
    SELECT r.* FROM r, here WHERE r.ref[1]::oid = here.oid
), xids AS (
    SELECT DISTINCT xid FROM mine WHERE xid <> '0'::xid
), rels AS (
    SELECT c.relfilenode, COALESCE(t.relname, o.relname, c.relname) AS tbl
    FROM pg_class c
    LEFT JOIN pg_index i ON i.indexrelid = c.oid
    LEFT JOIN pg_class t ON t.oid = i.indrelid
    LEFT JOIN pg_class o ON o.reltoastrelid = c.oid
    WHERE c.relfilenode <> 0
)
SELECT m.xid::text, COALESCE(rels.tbl, '?'), m.rmgr, m.rtype, count(*), sum(m.len), sum(m.fpi)
FROM mine m LEFT JOIN rels ON rels.relfilenode = m.ref[2]::oid
GROUP BY 1, 2, 3, 4
UNION ALL
SELECT r.xid::text, '', r.rmgr, r.rtype, count(*), sum(r.len), sum(r.fpi)
FROM r JOIN xids ON xids.xid = r.xid
WHERE r.ref IS NULL
GROUP BY 1, 2, 3, 4
"""


def database_wal(cursor: Any, start: int, end: int | None = None,
                 ) -> list[tuple[str, str, str, str, int, int, int]]:
    """The WAL records written between ``start`` and ``end`` (``wal_lsn`` values; ``end``:
    now) that belong to the current database, grouped by transaction and table.

    Rows of ``(xid, table, resource manager, record type, records, bytes, FPI bytes)``: the
    records with a block of this database (attributed to the table of their first block; an
    index's or a TOAST table's records to their table), plus the block-less records
    (commits) of the transactions seen there, with ``table`` ``""``. ``xid`` ``"0"``: records
    outside any transaction (page pruning, visibility map, hint-bit images). Bytes are record
    lengths, FPIs included (``pg_wal_lsn_diff`` also counts page headers and alignment, ~1%).

    Needs ``CREATE EXTENSION pg_walinspect`` in the database (PostgreSQL 15+) and a role
    allowed to read WAL (superuser or ``pg_read_server_files``); the WAL of the window must
    still be there (``hold_wal``). Only WAL already flushed is read: take ``end`` after the
    commits to measure (a commit is flushed when it returns, with ``synchronous_commit``).
    """
    if end is None:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint")
        end = int(cursor.fetchone()[0])
    if end <= start:
        return []
    cursor.execute(WAL_SQL, {"start": lsn_text(start), "end": lsn_text(end)})
    return [(row[0], row[1], row[2], row[3], int(row[4]), int(row[5]), int(row[6] or 0))
            for row in cursor.fetchall()]


def postgres_cpu_seconds() -> float:
    """User+system CPU seconds of every process whose ``comm`` is ``postgres`` (Linux ``/proc``).

    Sums ``utime+stime`` of the live server processes (postmaster, backends, background
    workers) plus ``cutime+cstime`` (children already reaped: the backends of connections that
    have been closed count too, through the postmaster). Subtract two readings. Only the
    processes this user can read are seen (same container / same user as the server); ``nan``
    when ``/proc`` is not there.
    """
    if not os.path.isdir("/proc"):
        return float("nan")
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                raw = fh.read()
        except OSError:
            continue
        name, _, rest = raw.partition(" (")[2].rpartition(")")
        if name != "postgres":
            continue
        fields = rest.split()
        # fields[0] is state (field 3); utime, stime, cutime, cstime are fields 14 to 17.
        ticks += sum(int(x) for x in fields[11:15])
    return ticks / CLK_TCK
