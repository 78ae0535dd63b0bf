"""The ``glsverify`` command line: one thin module per command, loaded lazily.

Exit codes: 0 success; 2 bad input or usage (one line on stderr, no traceback); 1 internal error.
Set ``GLSVERIFY_DEBUG=1`` to see the traceback of an internal error.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from glsverify import __version__
from glsverify.errors import GlsverifyError

# command name -> module under glsverify.cli that defines ``command``
COMMANDS: dict[str, str] = {
    "info": "info",
    "models": "models",
    "bounds": "bounds",
    "certify": "certify",
    "train": "train",
    "spec": "spec",
    "export": "export",
    "report": "report",
    "demo": "demo",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when the command runs (fast --help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, module in COMMANDS.items() if _module_exists(module))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMANDS.get(name)
        if module is None or not _module_exists(module):
            return None
        return importlib.import_module(f"glsverify.cli.{module}").command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GlsverifyError as error:
            click.echo(f"Error: {error}", err=True)
            ctx.exit(2)


def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(f"glsverify.cli.{module}") is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="glsverify")
def cli() -> None:
    """Train certifiably robust networks with Gaussian Loss Smoothing, and prove it."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps errors to exit codes without tracebacks."""
    try:
        # Without standalone mode click *returns* the code of a ctx.exit(code) (LazyGroup's exit 2, or
        # --version's 0) instead of raising; commands themselves return None.
        code = cli.main(args=argv, prog_name="glsverify", standalone_mode=False)
    except click.exceptions.Exit as exit_:
        sys.exit(exit_.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except GlsverifyError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the one place that turns crashes into exit code 1
        if os.environ.get("GLSVERIFY_DEBUG"):
            raise
        click.echo(f"Internal error: {type(error).__name__}: {error} "
                   "(set GLSVERIFY_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
