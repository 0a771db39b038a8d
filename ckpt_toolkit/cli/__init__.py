"""The ``ckpt`` command. Subcommands mirror the flow of data:
zoo → checkpoints → probe → finetune → import → dynamics / pairwise → report; ``demo`` runs it all.

Each area registers its commands from its own module (``register(app)``). A YAML file given
with ``ckpt --config FILE`` supplies option values: top-level keys apply to every subcommand
that has that option (e.g. ``store``), a key named after a subcommand (``probe:``, or
``zoo train:``) holds values for that subcommand only. Flags on the command line override both.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click import ClickException

from ..errors import CkptError
from .common import load_cli_config

app = typer.Typer(
    name="ckpt",
    help="Probe, fine-tune and compare series of pretraining checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML file of option values; CLI flags override it."
    ),
) -> None:
    """Probe, fine-tune and compare series of pretraining checkpoints."""
    if config is not None:
        ctx.default_map = load_cli_config(config, ctx.command)


def _register_all() -> None:
    from . import (
        checkpoints,
        demo,
        dynamics,
        finetune,
        importers,
        pairwise,
        probe,
        report,
        store_cmds,
        zoo,
    )

    for module in (
        checkpoints,
        store_cmds,
        zoo,
        probe,
        finetune,
        importers,
        dynamics,
        pairwise,
        report,
        demo,
    ):
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ckpt`` console script."""
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=argv, prog_name="ckpt", standalone_mode=False)
    except CkptError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        return 2
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except ClickException as exc:
        exc.show()
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
