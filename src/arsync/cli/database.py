"""``arsync db``: the database schema."""

from __future__ import annotations

import typer

from arsync import migrate
from arsync.bootstrap import bootstrap
from arsync.cli.common import console
from arsync.config import Settings

db_app = typer.Typer(add_completion=False, help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all database migrations."""
    settings = Settings()
    container = bootstrap(settings, upgrade_schema=False)
    try:
        migrate.upgrade(container.engine)
    finally:
        container.close()
    console.print(f"database at head: {container.engine.url.render_as_string(hide_password=True)}")
