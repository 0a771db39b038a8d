"""``ckpt pairwise``: how well does each proxy (and a learned comparator) predict which of two
checkpoints fine-tunes better? (arXiv 2504.12491)"""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ParameterError


def _split(s: str | None) -> list[str] | None:
    if s is None:
        return None
    out = [x.strip() for x in s.split(",") if x.strip()]
    return out or None


def pairwise_cmd(
    ctx: typer.Context,
    table: Path | None = typer.Option(
        None,
        "--table",
        "-t",
        help="Per-model CSV/Parquet: one row per model, proxy and target columns.",
    ),
    store: Path | None = typer.Option(
        None, "--store", "-s", help="Read the results store instead of --table."
    ),
    targets: str | None = typer.Option(
        None,
        "--targets",
        help="Comma-separated target columns (default with --store: every sft:<task>).",
    ),
    proxies: str | None = typer.Option(
        None,
        "--proxies",
        help="Comma-separated proxy columns, higher = better (default: every numeric non-target "
        "column; with --store the aggregate proxies inv_ppl, inv_sc_ppl, kshot_*, cap_kshot_*).",
    ),
    out: Path = typer.Option(Path("pairwise_out"), "--out", "-o", help="Output folder."),
    pool: str = typer.Option(
        "final", "--pool", help="With --store: final (one model per run) or all."
    ),
    splits: int = typer.Option(20, "--splits", help="Number of random model-level splits."),
    train_frac: float = typer.Option(
        0.6, "--train-frac", help="Share of models on the train side."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (splits, bootstrap, classifier)."),
    classifier: str = typer.Option("xgboost", "--classifier", help="xgboost or logreg."),
    baseline: str = typer.Option(
        "logreg", "--baseline", help="Second classifier scored on the same splits; 'none' to skip."
    ),
    ties: str = typer.Option("half", "--ties", help="Proxy ties: half (credit 0.5) or exclude."),
    min_gap: float = typer.Option(
        0.0, "--min-gap", help="Pairs with |Δtarget| <= this are target ties, left out."
    ),
    invert: list[str] | None = typer.Option(
        None, "--invert", help="A proxy where lower is better (repeatable)."
    ),
    combine: list[str] | None = typer.Option(
        None,
        "--combine",
        help='Combined proxy "name=+a,-b" over min-max normalised proxies (repeatable).',
    ),
    no_auto_combine: bool = typer.Option(
        False, "--no-auto-combine", help="Do not add combo:all (sum of all normalised proxies)."
    ),
    ppl_proxy: str | None = typer.Option(
        None, "--ppl-proxy", help="Perplexity proxy for the relative error reduction."
    ),
    n_boot: int = typer.Option(200, "--n-boot", help="Bootstrap resamples for intervals."),
    z_max: float = typer.Option(5.0, "--z-max", help="Robust z above which a value is flagged."),
    drop_flagged: bool = typer.Option(
        False, "--drop-flagged", help="Drop models with flagged values."
    ),
    model_col: str | None = typer.Option(None, "--model-col", help="Column naming the models."),
    group_col: str | None = typer.Option(
        None,
        "--group-col",
        help="Pair only models sharing this column's value (e.g. params: fixed model size).",
    ),
    no_transfer: bool = typer.Option(False, "--no-transfer", help="Skip the cross-target matrix."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Pairwise accuracy of proxies vs post-fine-tuning scores, and the learned comparator.

    Writes proxy_accuracy.csv, comparator.csv, transfer.csv, gap_quantiles.csv, importance.csv,
    topk.csv, borda.csv, correlations.csv, flags.csv, splits.csv, models.csv and summary.json
    into --out.
    """
    import pandas as pd

    from ..analysis.pairwise import evaluate_pairwise, write_outputs
    from ..analysis.pairwise_store import model_table_from_store, summary_proxies, task_targets

    if table is not None and store is not None:
        # a store set for every command in a --config file yields to an explicit --table
        source = ctx.get_parameter_source("store")
        if getattr(source, "name", "") == "DEFAULT_MAP":
            store = None
    if (table is None) == (store is None):
        raise ParameterError("give exactly one of --table or --store")
    target_list, proxy_list = _split(targets), _split(proxies)
    if table is not None:
        if not table.is_file():
            raise ParameterError(f"table not found: {table}")
        if table.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(table)
        else:
            df = pd.read_csv(table)
        if target_list is None:
            target_list = [c for c in df.columns if str(c).startswith("sft:") and "/" not in c]
            if not target_list:
                raise ParameterError(f"--targets is required: {table} has no sft:* column")
    else:
        from ..store import ResultsStore

        st = ResultsStore(store, read_only=True)
        df = model_table_from_store(st.to_pandas(), st.checkpoints(), pool=pool)
        target_list = target_list or task_targets(df)
        if not target_list:
            raise ParameterError(f"no sft:<task> targets in {store}; run `ckpt finetune` first")
        proxy_list = proxy_list or summary_proxies(df)
    import warnings

    from ..analysis.pairwise import PairwiseWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PairwiseWarning)
        result = evaluate_pairwise(
            df,
            target_list,
            proxy_list,
            invert=invert or (),
            combine=combine or None,
            auto_combine=not no_auto_combine,
            ppl_proxy=ppl_proxy,
            ties=ties,
            min_gap=min_gap,
            classifier=classifier,
            baseline=None if baseline.lower() == "none" else baseline,
            n_splits=splits,
            train_frac=train_frac,
            seed=seed,
            n_boot=n_boot,
            z_max=z_max,
            drop_flagged=drop_flagged,
            model_col=model_col,
            group_col=group_col,
            transfer=not no_transfer,
            progress=progress,
        )
    for w in caught:
        if issubclass(w.category, PairwiseWarning):
            typer.secho(f"warning: {w.message}", fg="yellow", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    paths = write_outputs(result, out)
    s = result.summary
    typer.echo(
        f"{s['n_models_used']} models ({s['n_models_excluded']} excluded), "
        f"{len(s['targets'])} target(s), {len(s['proxies'])} proxies; {len(result.flags)} flag(s)"
    )
    acc = result.proxy_accuracy
    comp = result.comparator
    for t in s["targets"]:
        a = acc[acc["target"] == t].dropna(subset=["accuracy"])
        a = a.sort_values("accuracy", ascending=False)
        if a.empty:
            typer.echo(f"  {t}: no pair of models differs in this target; nothing to rank")
            continue
        line = ", ".join(f"{r.proxy} {r.accuracy:.3f}" for r in a.head(3).itertuples())
        typer.echo(f"  {t}: best proxies {line}")
        if len(comp):
            c = comp[(comp["target"] == t) & (comp["kind"] == "comparator")]
            for r in c.itertuples():
                typer.echo(f"    {r.method}: {r.accuracy_mean:.3f} ± {r.accuracy_sd:.3f}")
    typer.echo(f"wrote {len(paths)} files to {out}")


def register(app: typer.Typer) -> None:
    """Add ``ckpt pairwise`` to ``app``."""
    app.command("pairwise")(pairwise_cmd)
