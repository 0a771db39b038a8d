"""``ckpt checkpoints list SOURCE [--verify]``: what a source resolves to."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..checkpoints import fingerprint, resolve_source, verify_folder
from ..checkpoints.loading import local_folder
from ..checkpoints.resolve import leaves_manifest_folder
from ..errors import CkptError, ImportFormatError, ParameterError
from .common import TOKENS_PER_STEP_OPTION


def parse_tokens_per_step(value: str | None) -> int | dict[str, int] | None:
    """``2097152`` (every run) or ``runA=1024,runB=2048`` (per run); ``abc``, ``runA=x``, 0 or
    a negative number raise :class:`ParameterError` naming ``--tokens-per-step``."""
    from ..importers.tokens import parse_tokens_per_step as parse  # the one parser of this value

    try:
        return parse(value)
    except ImportFormatError as exc:
        raise ParameterError(str(exc)) from None


def source_with_tokens(source: str, tokens_per_step: str | None) -> str | list:
    """What a sweep command hands its API: ``source`` itself, or with ``--tokens-per-step`` the
    checkpoints it resolves to with tokens seen = step × N (the APIs take either)."""
    if not tokens_per_step:
        return source
    return resolve_source(source, tokens_per_step=parse_tokens_per_step(tokens_per_step))


def register(app: typer.Typer) -> None:
    """Add the ``checkpoints`` group to ``app``."""
    group = typer.Typer(help="Inspect checkpoint sources.", no_args_is_help=True)
    app.add_typer(group, name="checkpoints")

    @group.command("list")
    def list_(
        source: str = typer.Argument(
            ..., help="Folder, checkpoint-N folders, manifest (.csv/.yaml), or hf://org/repo@rev"
        ),
        verify: bool = typer.Option(
            False, "--verify", help="Check each checkpoint's files and name the broken ones."
        ),
        tokens_per_step: str | None = TOKENS_PER_STEP_OPTION,
        fingerprints: bool = typer.Option(False, "--fingerprint", help="Show weight fingerprints."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
    ) -> None:
        """Show what SOURCE resolves to: run, step, tokens, params, path."""
        refs = resolve_source(source, tokens_per_step=parse_tokens_per_step(tokens_per_step))
        broken = 0
        rows = []
        outside = [ref for ref in refs if leaves_manifest_folder(ref)]
        for ref in refs:
            row = {
                "checkpoint": ref.name,
                "run": ref.run,
                "step": ref.step,
                "tokens": ref.tokens,
                "params": ref.params,
                "path": ref.path + (f"@{ref.revision}" if ref.revision else ""),
            }
            if as_json and ref in outside:
                row["outside_manifest_folder"] = True
            if fingerprints:
                try:
                    row["fingerprint"] = fingerprint(ref)
                except CkptError as exc:
                    row["fingerprint"] = f"? ({exc})"
            if verify:
                try:
                    problems = verify_folder(local_folder(ref))
                except CkptError as exc:
                    problems = [str(exc)]
                row["status"] = "ok" if not problems else "BROKEN: " + "; ".join(problems)
                broken += bool(problems)
            rows.append(row)
        if as_json:
            for row in rows:
                typer.echo(json.dumps(row))
        else:
            cols = list(rows[0]) if rows else []
            widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
            typer.echo("  ".join(c.ljust(widths[c]) for c in cols))
            for r in rows:
                typer.echo("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
            typer.echo(f"{len(refs)} checkpoint(s) in {len({r.run for r in refs})} run(s)")
            for r in outside:  # allowed (shared checkpoints exist), but worth knowing
                typer.echo(
                    f"note: {r.name}: path {r.path} lies outside the manifest's folder "
                    f"{Path(r.manifest or '').parent}"
                )
        if broken:
            typer.secho(f"{broken} broken checkpoint(s)", fg="red", err=True)
            raise typer.Exit(1)
