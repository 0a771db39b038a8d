"""``ckpt report``: execute report notebooks with papermill and write self-contained HTML."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .common import STORE_OPTION


def skip_iri_format_checker() -> None:
    """Make ``import rfc3987_syntax`` fail in this process, unless something imported it already.

    jsonschema (imported by nbformat, hence by papermill and nbconvert) registers the optional
    ``iri`` format checker when ``rfc3987_syntax`` imports, and that import builds a Lark grammar:
    about 1 s of CPU, a tenth of the runner's own work. Notebook validation never checks that
    format (nbformat's schemas do not use it), so ``ckpt report`` goes without it.
    """
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def register(app: typer.Typer) -> None:
    """Add ``ckpt report`` to ``app``."""

    @app.command("report")
    def report(
        names: list[str] = typer.Argument(
            ..., help="Report notebook name(s) (overview, dynamics, proxies, explorer) or 'all'."
        ),
        store: Path = STORE_OPTION,
        out: Path = typer.Option(Path("reports"), "--out", "-o", help="Output folder."),
        params: Path | None = typer.Option(
            None,
            "--params",
            help="YAML of parameter values: flat (each goes to the notebooks that declare it) "
            "or per report ({dynamics: {runs: [...]}}).",
        ),
        grid: Path | None = typer.Option(
            None,
            "--grid",
            help="YAML grid of parameter sets: a list of mappings, or a mapping of names to "
            "lists of values (cartesian product); one report per set.",
        ),
        include_code: bool = typer.Option(
            False, "--include-code", help="Keep code cells and prompts in the HTML."
        ),
        timeout: float = typer.Option(600, "--timeout", help="Seconds per notebook."),
        notebooks: Path | None = typer.Option(
            None, "--notebooks", help="Folder of report notebooks (default: the repository's)."
        ),
        kernel: str | None = typer.Option(
            None, "--kernel", help="Jupyter kernel (default: ckpt-toolkit, else python3)."
        ),
        jobs: int | None = typer.Option(
            None,
            "--jobs",
            "-j",
            help="Notebooks executed at once, each in its own kernel (default: one per usable "
            "core, at most 8).",
        ),
        force: bool = typer.Option(
            False,
            "--force",
            help="Execute every notebook and recompute the cached analyses, even when the "
            "store, notebook and parameters are unchanged since the last run.",
        ),
        list_params: bool = typer.Option(
            False, "--list-params", help="Show each notebook's parameters and exit."
        ),
    ) -> None:
        """Execute report notebooks on a results store; write DIR/<name>.ipynb, .html, index.html.

        Analyses are computed once per store content and kept beside the store
        (<store>.cache/); a report whose store rows, notebook and parameters have not changed
        since its last run in DIR is not executed again ("unchanged"). Exits with status 1
        when any notebook failed (the others are still rendered).
        """
        skip_iri_format_checker()
        from ..reports import declared_parameters, notebooks_dir, run_reports
        from ..reports.runner import _resolve_names

        if list_params:
            nb_dir = notebooks_dir(notebooks)
            for name in _resolve_names(names if names != ["all"] else "all", nb_dir):
                typer.echo(f"{name}:")
                for p in declared_parameters(nb_dir / f"{name}.ipynb").values():
                    typer.echo(f"  {p.name}: {p.type_name} = {p.default!r}  # {p.help}")
            return
        results = run_reports(
            "all" if names == ["all"] else names,
            store,
            out,
            params=params,
            grid=grid,
            include_code=include_code,
            timeout=timeout,
            progress=True,
            notebooks=notebooks,
            kernel=kernel,
            jobs=jobs,
            force=force,
        )
        typer.echo(f"index: {Path(out) / 'index.html'}")
        if not all(r.ok for r in results):
            raise typer.Exit(1)
