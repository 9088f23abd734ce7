"""Built-in commands added through the command hook, exactly as a plugin adds its own."""

from __future__ import annotations

import click

from kdbench import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command(name="schema")
    def schema() -> None:
        """Print the JSON Schema of a cell's record (docs/record.schema.json)."""
        from kdbench.reports import json_schema

        click.echo(json_schema(), nl=False)
