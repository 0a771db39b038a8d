"""``ckpt pairwise``: how well does each proxy (and a learned comparator) predict which of two
checkpoints fine-tunes better? (arXiv 2504.12491)"""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ParameterError


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
        help="Comma-separated proxy columns, higher = better (default: every numeric column "
        "that is not a target, metadata or the model-name column; with --store the aggregate "
        "proxies inv_ppl, neg_bpb, inv_sc_ppl, kshot_*, cap_kshot_* measured on every model).",
    ),
    out: Path = typer.Option(Path("pairwise_out"), "--out", "-o", help="Output folder."),
    pool: str = typer.Option(
        "targets",
        "--pool",
        help="With --store: targets (every checkpoint with a target value), final (last "
        "checkpoint per run) or all.",
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
    target_ties: str = typer.Option(
        "drop",
        "--target-ties",
        help="Pairs whose targets tie (|Δ| <= --min-gap): drop them, or half (credit 0.5).",
    ),
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
    model_col: str | None = typer.Option(
        None,
        "--model-col",
        help="Column naming the models (default: model, id, name or checkpoint); never a proxy.",
    ),
    group_col: str | None = typer.Option(
        None,
        "--group-col",
        help="Pair only models sharing this column's value (e.g. params: fixed model size).",
    ),
    no_transfer: bool = typer.Option(False, "--no-transfer", help="Skip the cross-target matrix."),
    max_train_pairs: int = typer.Option(
        2000,
        "--max-train-pairs",
        help="Training pairs per comparator fit: a seeded sample of this many when a split's "
        "train side has more (0: every pair).",
    ),
    threads: str = typer.Option(
        "auto",
        "--threads",
        help="Worker threads for the comparator's fits: auto (docs/threads.md) or N.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Pairwise accuracy of proxies vs post-fine-tuning scores, and the learned comparator.

    Writes proxy_accuracy.csv, comparator.csv, transfer.csv, gap_quantiles.csv, importance.csv,
    topk.csv, borda.csv, correlations.csv, flags.csv, splits.csv, ground_truth_signal.csv,
    models.csv and summary.json into --out.
    """
    import warnings

    from ..analysis.pairwise import (
        PairwiseWarning,
        evaluate_pairwise,
        evaluate_store,
        table_inputs,
        write_outputs,
    )

    if table is not None and store is not None:
        # a store set for every command in a --config file yields to an explicit --table
        source = ctx.get_parameter_source("store")
        if getattr(source, "name", "") == "DEFAULT_MAP":
            store = None
    if (table is None) == (store is None):
        raise ParameterError("give exactly one of --table or --store")
    options = dict(
        invert=invert or (),
        combine=combine or None,
        auto_combine=not no_auto_combine,
        ppl_proxy=ppl_proxy,
        ties=ties,
        target_ties=target_ties,
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
        max_train_pairs=max_train_pairs or None,
        threads=threads,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PairwiseWarning)
        if table is not None:
            inputs = table_inputs(_read_table(table), targets, proxies, source=str(table))
            result = evaluate_pairwise(
                inputs.table, inputs.targets, inputs.proxies or None, **options
            )
        else:
            from ..store import ResultsStore

            st = ResultsStore(store, read_only=True)
            inputs, result = evaluate_store(
                st.to_pandas(),
                st.checkpoints(),
                pool=pool,
                targets=targets,
                proxies=proxies,
                source=str(store),
                **options,
            )
    for w in caught:
        if issubclass(w.category, PairwiseWarning):
            typer.secho(f"warning: {w.message}", fg="yellow", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    paths = write_outputs(result, out)
    _print_summary(result)
    typer.echo(f"wrote {len(paths)} files to {out}")


def _read_table(path: Path):  # noqa: ANN202 - pandas is imported lazily
    import pandas as pd

    if not path.is_file():
        raise ParameterError(f"table not found: {path}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise ParameterError(f"cannot read the table {path}: {e}") from None


def _print_summary(result) -> None:  # noqa: ANN001
    s = result.summary
    typer.echo(
        f"{s['n_models_used']} models ({s['n_models_excluded']} excluded), "
        f"{len(s['targets'])} target(s), {len(s['proxies'])} proxies; {len(result.flags)} flag(s)"
    )
    sig = result.signal
    if len(sig):
        typer.echo("ground truth signal (variance of SFT scores across models / mean stderr²):")
        for r in sig.itertuples():
            ratio = "unknown" if r.ratio != r.ratio else f"{r.ratio:.1f}"
            typer.echo(f"  {r.target}: ratio {ratio} ({r.ground_truth})")
    comp_state = s.get("comparator", {})
    if not comp_state.get("fitted", True):
        typer.echo(f"comparator: not fitted — {comp_state.get('reason')}")
    acc, comp = result.proxy_accuracy, result.comparator
    for t in s["targets"]:
        a = acc[acc["target"] == t].dropna(subset=["accuracy"])
        a = a.sort_values("accuracy", ascending=False)
        if a.empty:
            typer.echo(f"  {t}: no pair of models differs in this target; nothing to rank")
            continue
        line = ", ".join(f"{r.proxy} {r.accuracy:.3f}" for r in a.head(3).itertuples())
        noise = " [ground truth within noise: not meaningful]" if not a["meaningful"].all() else ""
        typer.echo(f"  {t}: best proxies {line}{noise}")
        if len(comp):
            c = comp[(comp["target"] == t) & (comp["kind"] == "comparator")]
            for r in c.itertuples():
                typer.echo(f"    {r.method}: {r.accuracy_mean:.3f} ± {r.accuracy_sd:.3f}")


def register(app: typer.Typer) -> None:
    """Add ``ckpt pairwise`` to ``app``."""
    app.command("pairwise")(pairwise_cmd)
