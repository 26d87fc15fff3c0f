"""Cross-process "only one at a time" locks for maintenance flows.

PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) on a dedicated
connection, released when the block ends or the process dies. SQLite (one machine): an
exclusive ``flock`` on a file beside the database.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Iterator

__all__ = ["try_exclusive"]


def _lock_id(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def try_exclusive(dsn: str, name: str) -> Iterator[bool]:
    """Yield True when this process holds the lock ``name``, False when another does."""
    if dsn.startswith(("postgresql://", "postgres://")):
        import psycopg2

        conn = psycopg2.connect(dsn, connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (_lock_id(name),))
                got = bool(cur.fetchone()[0])
            try:
                yield got
            finally:
                if got:
                    with conn.cursor() as cur:
                        cur.execute("SELECT pg_advisory_unlock(%s)", (_lock_id(name),))
        finally:
            conn.close()
        return
    import fcntl

    path = dsn.split("sqlite:///", 1)[-1]
    folder = Path(path).parent if path and path != ":memory:" else Path("/tmp")
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / f".{name}.lock"
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            got = True
        except BlockingIOError:
            got = False
        try:
            yield got
        finally:
            if got:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
