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
from typing import Optional

import click
import typer

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
    config: Optional[Path] = typer.Option(
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

    for module in (checkpoints, store_cmds, zoo, probe, finetune, importers, dynamics, pairwise, report, demo):
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ckpt`` console script."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="ckpt", standalone_mode=False)
    except CkptError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
