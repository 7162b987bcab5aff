"""Files appear whole or not at all: written under a temporary name, then renamed into place.

A job killed mid-write (kill -9, a lost database connection, a full disk) leaves no truncated output for the
next run to trust: the rename is atomic on POSIX file systems, and the temporary file is deleted on failure.
The temporary name is unique per process and thread, so concurrent writers never share one, and names where
its writer runs (``WRITER``: the host and PID namespace a PID means something in), so that a later run can
tell a killed writer's file from a live one's (jobs.remove_orphaned_temporaries).

The one way the package writes a whole file: ``write_bytes``, ``write_text``, ``write_json`` and
``write_parquet``, each ``(path, what)``; ``replacing`` for a writer that streams into a path of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import threading
from pathlib import Path
from typing import Iterator


def _writer() -> str:
    """This host and PID namespace, as 8 hex digits: a cluster node or a container has other processes
    under the same PIDs."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # not Linux
        namespace = 0
    return hashlib.blake2s(f"{socket.gethostname()}\0{namespace}".encode(), digest_size=4).hexdigest()


WRITER = _writer()
# A temporary_name: groups 1 and 2 are its writer's WRITER and PID.
TEMPORARY = re.compile(r"^\..+\.([0-9a-f]{8})\.(\d+)\.\d+\.tmp$")


def temporary_name(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place: ``.{name}.{WRITER}.{pid}.{thread}.tmp``."""
    return path.with_name(f".{path.name}.{WRITER}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; it becomes ``path`` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """``text`` as UTF-8."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data) -> None:
    """``data`` as JSON: indented by one space, non-ASCII text as it is, a newline at the end."""
    write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def write_parquet(path: str | os.PathLike, table) -> None:
    """A pyarrow Table as Parquet, zstd-compressed (as every Parquet file of the workflow)."""
    import pyarrow.parquet as pq  # here, not at the top: the workflow imports this module to build its DAG

    with replacing(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
