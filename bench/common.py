"""Helpers shared by the benchmarks: paths, free ports, throwaway PostgreSQL databases."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from arsync.db import make_engine

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results.json"
PG_ADMIN_URL = os.environ.get("ARSYNC_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
ARSYNC = str(Path(sys.executable).parent / "arsync")


def erp_pages(client: httpx.Client, entity: str, page_size: int, decode: Callable[[bytes], Any]) -> Iterator[Any]:
    """Every page of one of the mock ERP's lists, as ``decode`` reads the body, until ``hasMore`` is false."""
    page = 1
    while True:
        body = {"schemaVersion": "1", "page": page, "limit": page_size}
        decoded = decode(client.post(f"/{entity}/list", content=orjson.dumps(body)).content)
        yield decoded
        if not decoded["hasMore"]:
            return
        page += 1


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/``pid``/stat after the command name (proc(5) fields 3 on), or None
    where /proc cannot be read (not Linux, or the process is on another host)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_cpu_seconds(pid: int, *, reaped_children: bool = False) -> float | None:
    """User plus system CPU of process ``pid`` (with ``reaped_children``, also what its exited
    children used), or None where /proc cannot be read."""
    fields = _proc_stat(pid)
    if fields is None:
        return None
    # utime, stime, cutime, cstime are fields 14-17 of proc(5).
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


class PostgresCpu:
    """CPU used by the PostgreSQL server on this host, all its processes: the postmaster's reaped
    children (backends that ended) plus the ones alive now. Backends are separate processes, so
    a client measuring itself never sees this share of a sync's cost."""

    def __init__(self, database_url: str) -> None:
        engine = make_engine(database_url)
        with engine.connect() as connection:
            backend = int(connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        engine.dispose()
        fields = _proc_stat(backend)
        self.postmaster = int(fields[1]) if fields else None  # the backend's parent (field 4)

    def seconds(self) -> float | None:
        if self.postmaster is None:
            return None
        total = process_cpu_seconds(self.postmaster, reaped_children=True)
        if total is None:
            return None
        children = Path(f"/proc/{self.postmaster}/task/{self.postmaster}/children").read_text().split()
        return total + sum(process_cpu_seconds(int(child)) or 0.0 for child in children)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Database:
    """A PostgreSQL database made for one benchmark step, dropped afterwards."""

    def __init__(self) -> None:
        self.name = f"arsync_bench_{secrets.token_hex(4)}"
        self.admin = make_engine(PG_ADMIN_URL)
        with self.admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        self.url = sa.make_url(PG_ADMIN_URL).set(database=self.name).render_as_string(hide_password=False)

    def drop(self) -> None:
        with self.admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def wait_until_up(url: str, process: subprocess.Popen[bytes], name: str, timeout: float = 30) -> None:
    """Poll ``url`` until it answers 2xx; fail if ``process`` exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{name} did not start") from None
            time.sleep(0.2)


class MockErpProcess:
    def __init__(self, size: dict[str, int]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [ARSYNC, "mock-erp", "--host", "127.0.0.1", "--port", str(self.port), "--seed", "1"]
        for entity, count in size.items():
            args += [f"--{entity}", str(count)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_up(f"{self.url}/_mock/state", self.process, "mock ERP")
        except RuntimeError:
            self.stop()
            raise

    def mutate(self, counts: dict[str, int]) -> None:
        httpx.post(f"{self.url}/_mock/mutate", json=counts, timeout=30).raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
