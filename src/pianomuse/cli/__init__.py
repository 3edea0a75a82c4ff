"""The `pianomuse` command: a thin map from subcommands to typed functions, one module per
group (data, train, write, play; `common` holds what they share).

Each subcommand's docstring is its help. Errors a user can cause print one line on stderr and
exit with status 1, never a traceback.
"""

from __future__ import annotations

from pianomuse.cli import data, play, train, write  # noqa: F401 - each registers its commands
from pianomuse.cli.common import app


def main() -> None:
    """Entry point of the console script."""
    app(prog_name="pianomuse")


__all__ = ["app", "main"]
