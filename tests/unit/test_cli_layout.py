"""The CLI loads a command's module only when that command runs, and lists each one truthfully."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from alembic.script import ScriptDirectory

from arsync import migrate
from arsync.cli.main import COMMANDS

HEAVY = ("arsync.web", "arsync.ui", "arsync.mocks", "arsync.sandbox")
# Every command that opens the database registers all tables, the Sandbox's too.
TABLES_ONLY = {"arsync.sandbox", "arsync.sandbox.models"}

PROBE = """
import json, sys
from arsync.cli import app
sys.argv = ["arsync", *json.loads(sys.argv[1])]
try:
    app()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.startswith("arsync"))))
"""


def _imported_by(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, check=True)
    modules: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return modules


@pytest.mark.parametrize(
    "args",
    [["--help"], ["tenant", "create", "--help"], ["sync", "--help"], ["connection", "list", "--help"]],
)
def test_everyday_commands_import_neither_the_web_app_nor_the_ui_nor_the_mocks(args: list[str]) -> None:
    imported = _imported_by(*args)
    assert not [m for m in imported if m.startswith(HEAVY) and m not in TABLES_ONLY], imported


def test_help_imports_no_command_at_all() -> None:
    imported = _imported_by("--help")
    assert not [m for m in imported if m.startswith("arsync.cli.") and m not in ("arsync.cli.main", "arsync.cli.lazy")]
    assert "arsync.bootstrap" not in imported


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_listed_help_line_is_the_commands_own(name: str) -> None:
    command = COMMANDS[name].load()
    own = " ".join((command.help or "").split("\n\n")[0].split())
    assert own == COMMANDS[name].help


def test_the_head_revision_read_from_file_names_is_alembics() -> None:
    scripts = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert migrate.head_revision() == scripts.get_current_head()


def test_help_shows_a_type_only_where_an_option_takes_a_value() -> None:
    shown = subprocess.run([sys.executable, "-m", "arsync.cli", "sync", "--help"], capture_output=True, text=True,
                           env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"}, check=True).stdout  # fmt: skip
    assert "--full" in shown and "<bool>" not in shown
    assert "<str>" in shown  # the connection id still says what it takes
