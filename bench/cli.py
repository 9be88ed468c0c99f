"""CLI start-up: ``arsync --help`` and ``arsync tenant create`` as a user runs them, each a fresh process.

The comparison is the eager CLI: the same help, printed after importing every command's module
first, which is what ``arsync`` did before its commands were loaded lazily (one module that
imported the web app, the UI, the mocks and the Sandbox for every command).
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.common import ARSYNC

RUNS = 9

EAGER_HELP = """
import importlib, sys
from arsync.cli import app
from arsync.cli.main import COMMANDS
for command in COMMANDS.values():
    importlib.import_module(command.target.split(":")[0])
sys.argv = ["arsync", "--help"]
app()
"""


def median_seconds(args: Callable[[], list[str]], env: dict[str, str]) -> float:
    times = []
    for _ in range(RUNS):
        command = args()
        started = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        env = dict(os.environ, ARSYNC_DATA_DIR=data_dir)
        subprocess.run([ARSYNC, "db", "upgrade"], env=env, capture_output=True, check=True)
        lazy_help = median_seconds(lambda: [ARSYNC, "--help"], env)
        eager_help = median_seconds(lambda: [sys.executable, "-c", EAGER_HELP], env)
        tenant_create = median_seconds(lambda: [ARSYNC, "tenant", "create", f"b-{secrets.token_hex(4)}"], env)
    result: dict[str, Any] = {
        "runs": RUNS,
        "helpSeconds": round(lazy_help, 3),
        "eagerHelpSeconds": round(eager_help, 3),
        "tenantCreateSeconds": round(tenant_create, 3),
        "helpSpeedup": round(eager_help / lazy_help, 2),
    }
    result["targets"] = {"help >= 3x faster than eager": result["helpSpeedup"] >= 3}
    print(f"  arsync --help {lazy_help:.3f}s, eager {eager_help:.3f}s ({result['helpSpeedup']}x); "
          f"tenant create {tenant_create:.3f}s", flush=True)  # fmt: skip
    return result
