"""``arsync contract``: the REST contract's JSON Schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from arsync.erp import contract

contract_app = typer.Typer(add_completion=False, help="The Nudge REST contract.", no_args_is_help=True)


@contract_app.command("schema")
def contract_schema(
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of the Nudge REST contract v1."""
    text = json.dumps(contract.json_schema(), indent=2) + "\n"
    if output:
        output.write_text(text)
    else:
        sys.stdout.write(text)
