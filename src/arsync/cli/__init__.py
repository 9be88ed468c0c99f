"""``arsync``: the command-line entry point.

Each command lives in its own module and is imported only when it runs (see :mod:`.lazy`);
:data:`.main.COMMANDS` lists them.
"""

from arsync.cli.main import app

__all__ = ["app"]
