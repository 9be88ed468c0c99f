"""A Typer group whose subcommands are imported only when one of them runs.

Click documents this pattern ("lazily loading subcommands"); Typer has no switch for it. The
group lists every command with its one-line help from a table, so ``arsync --help`` imports
none of them, and ``arsync tenant create`` imports the tenant commands alone, not the web
app, the UI, the mocks or the Sandbox.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
from typer import _click as click  # Typer carries its own Click; its groups are typed with it
from typer.core import TyperCommand, TyperGroup, TyperOption

_value_type = TyperOption.display_type_rich


def _no_type_for_flags(self: TyperOption, ctx: click.Context) -> str | None:
    """Typer 0.29 prints ``<bool>`` beside every flag in ``--help``, as if ``--full`` took a value;
    a flag takes none, so its type column stays empty. Typer has no setting for it."""
    return None if self.is_flag else _value_type(self, ctx)


TyperOption.display_type_rich = _no_type_for_flags  # type: ignore[method-assign]


@dataclass(frozen=True)
class LazyCommand:
    """``target`` names a ``typer.Typer`` as ``module:attribute``; ``help`` is its line in the list.

    A ``group`` keeps its subcommands even when it has only one (``arsync tenant create``).
    """

    target: str
    help: str
    group: bool = False

    def load(self) -> click.Command:
        module, attribute = self.target.split(":")
        typer_app = getattr(importlib.import_module(module), attribute)
        return typer.main.get_group(typer_app) if self.group else typer.main.get_command(typer_app)


class LazyGroup(TyperGroup):
    """The root group: its commands come from :attr:`lazy_commands`, loaded when invoked."""

    lazy_commands: ClassVar[Mapping[str, LazyCommand]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, click.Command] = {}
        self._listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *self.lazy_commands]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = self.lazy_commands.get(cmd_name)
        if lazy is None:
            return super().get_command(ctx, cmd_name)
        if self._listing:
            # Listing the commands in --help needs their help line, not their code.
            return TyperCommand(cmd_name, help=lazy.help)
        if cmd_name not in self._loaded:
            command = lazy.load()
            command.name = cmd_name
            self._loaded[cmd_name] = command
        return self._loaded[cmd_name]

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
