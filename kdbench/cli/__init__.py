"""The ``kdbench`` command line: the click app, the progress display, ``status``,
``show`` and ``new-plugin``. The top layer: it wires the engine and reporting together
and is imported by neither.
"""

from kdbench.cli.app import cli, main

__all__ = ["cli", "main"]
