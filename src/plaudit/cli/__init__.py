"""The `plaudit` command line (entry point: plaudit.cli:main)."""

from plaudit.cli.main import cli, main

__all__ = ["cli", "main"]
