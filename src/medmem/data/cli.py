"""`medmem data ...` sub-commands."""
from __future__ import annotations

import click


@click.group("data")
def data_group() -> None:
    """Data sets: synthetic MedBank-mini, layouts."""
