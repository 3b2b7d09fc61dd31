"""What every ``mmsafe`` command prints on failure or warning, escaped: a message quoting a file name or a spec with
square brackets must print as written, not be read as rich markup."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape


def fail(msg: str) -> NoReturn:
    """Print ``error: msg`` on stderr and exit with status 2 (bad input or configuration)."""
    Console(stderr=True).print(f"[red]error:[/red] {escape(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def warn(msg: str) -> None:
    Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(msg)}", highlight=False, soft_wrap=True)
