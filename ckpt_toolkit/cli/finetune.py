"""``ckpt finetune``: supervised fine-tuning ground truth for every checkpoint and SFT task."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import (
    ADDRESS_OPTION,
    ALLOW_PICKLE_OPTION,
    EXECUTOR_OPTION,
    MAX_RETRIES_OPTION,
    MEMORY_OPTION,
    NUM_CPUS_OPTION,
    NUM_GPUS_OPTION,
    STORE_OPTION,
    THREADS_OPTION,
    TIMEOUT_OPTION,
    TOKENS_PER_STEP_OPTION,
    TRUST_REMOTE_CODE_OPTION,
    executor_options,
)


def finetune_cmd(
    source: str = typer.Argument(
        ...,
        help="Checkpoints: a folder, checkpoint-N folders, a manifest (zoo), or hf://org/repo@revs.",
    ),
    store: Path = STORE_OPTION,
    tasks: list[Path] | None = typer.Option(
        None,
        "--tasks",
        help="Task JSONL file or folder (repeatable); default: the zoo world's tasks.",
    ),
    spec: Path | None = typer.Option(
        None, "--spec", help="YAML overriding the default fine-tuning spec (default_spec.yaml)."
    ),
    checkpoints: str = typer.Option(
        "final", "--checkpoints", help="Which checkpoints per run: final, all or last:N."
    ),
    only: str | None = typer.Option(
        None, "--only", help="Comma-separated SFT task names (default: all)."
    ),
    group_by: str = typer.Option(
        "capability",
        "--group-by",
        help="SFT task = a capability (its task files are datasets) or a task.",
    ),
    executor: str = EXECUTOR_OPTION,
    address: str | None = ADDRESS_OPTION,
    num_cpus: float | None = NUM_CPUS_OPTION,
    num_gpus: float | None = NUM_GPUS_OPTION,
    memory: str | None = MEMORY_OPTION,
    max_retries: int | None = MAX_RETRIES_OPTION,
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    timeout: float | None = TIMEOUT_OPTION,
    threads: str = THREADS_OPTION,
    tokens_per_step: str | None = TOKENS_PER_STEP_OPTION,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    allow_pickle: bool = ALLOW_PICKLE_OPTION,
    trust_remote_code: bool = TRUST_REMOTE_CODE_OPTION,
) -> None:
    """Fine-tune checkpoints on each SFT task's train split; store test scores (probe 'sft')."""
    options = executor_options(
        address, num_cpus, num_gpus, memory, max_retries, timeout, threads, executor
    )
    from ..finetune import run_finetune
    from .checkpoints import source_with_tokens

    report = run_finetune(
        source_with_tokens(source, tokens_per_step),
        store,
        tasks=[str(t) for t in tasks] if tasks else None,
        spec=spec,
        checkpoints=checkpoints,
        executor=executor,
        executor_options=options,
        progress=progress,
        only=[s.strip() for s in only.split(",") if s.strip()] if only else None,
        group_by=group_by,
        device=device,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
    )
    typer.echo(
        f"finetune: {len(report.done)} done, {len(report.skipped)} already stored, "
        f"{len(report.failed)} failed; {report.rows_written} rows written to {store}"
    )
    if report.failed:
        typer.echo(report.summary(), err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``ckpt finetune`` to ``app``."""
    app.command("finetune")(finetune_cmd)
