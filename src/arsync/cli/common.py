"""What every command shares: the consoles, the common options, the wired application."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from arsync.bootstrap import Container, bootstrap
from arsync.config import Settings
from arsync.errors import ArsyncError

console = Console()
err_console = Console(stderr=True)


def print_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A Rich table on a terminal; piped, tab-separated lines, so no value is cut to the width."""
    if not console.is_terminal:
        for line in (headers, *rows):
            print("\t".join(value if value is not None else "" for value in line))
        return
    table = Table(*headers)
    for row in rows:
        table.add_row(*row)
    console.print(table)


JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]
TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant id or name.")]
EnvOpt = Annotated[str, typer.Option("--environment", help="Environment id or name.")]


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")


@contextmanager
def container() -> Iterator[Container]:
    """The wired application; arsync errors become a one-line message and exit code 1."""
    wired: Container | None = None
    try:
        settings = Settings()
        if settings.database_url is None and not (settings.data_dir / "arsync.db").exists():
            # Run from another directory, the default database is a new, empty one: say so.
            err_console.print(
                f"[yellow]note:[/yellow] no arsync database in {settings.data_dir.resolve()}; creating a new one. "
                "Set ARSYNC_DATA_DIR (or ARSYNC_DATABASE_URL) to use an existing one."
            )
        wired = bootstrap(settings)
        yield wired
    except ArsyncError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    finally:
        if wired is not None:
            wired.close()


def secret_from_env(variable: str, what: str) -> str:
    """A secret passed by environment variable name, so it never shows in ps or shell history."""
    value = os.environ.get(variable)
    if not value:
        err_console.print(f"error: environment variable {variable} is not set (it holds {what})")
        raise typer.Exit(2)
    return value


def print_new_key(payload: dict[str, str], as_json: bool) -> None:
    """Ids and an API key that is shown this once."""
    if as_json:
        print_json(payload)
        return
    for key, value in payload.items():
        console.print(f"{key}: [bold]{value}[/bold]")
    console.print("[dim]The API key is shown only this once.[/dim]")
