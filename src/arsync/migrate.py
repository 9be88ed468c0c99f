"""Applies the Alembic migrations shipped inside the package.

The migrations live in ``arsync/migrations`` rather than at the repository root so that an
installed ``arsync`` (``arsync db upgrade``) can find them without a checkout.

Every command starts by bringing the schema to head. Nearly always it is there already, so
that is checked first with one query; Alembic, whose import alone takes about a quarter of a
second, is loaded only when there is something to apply.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, text

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"


def head_revision() -> str:
    """The newest revision: migration files are named ``NNNN_what.py`` with ``revision = "NNNN"``."""
    return max(path.name[:4] for path in (MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it has no schema yet."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def alembic_config(url: str) -> Any:
    config = _alembic("alembic.config").Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database behind ``engine`` to ``revision``."""
    if revision == "head" and current_revision(engine) == head_revision():
        return
    with engine.begin() as connection:
        config = alembic_config(str(engine.url))
        config.attributes["connection"] = connection
        _alembic("alembic.command").upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database behind ``engine`` back to ``revision`` (each migration's downgrade)."""
    with engine.begin() as connection:
        config = alembic_config(str(engine.url))
        config.attributes["connection"] = connection
        _alembic("alembic.command").downgrade(config, revision)


def _alembic(module: str) -> Any:
    return importlib.import_module(module)
