"""``ckpt zoo``: pretrain the built-in checkpoint zoo, list presets, write the world alone."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import (
    ADDRESS_OPTION,
    MAX_RETRIES_OPTION,
    MEMORY_OPTION,
    NUM_CPUS_OPTION,
    NUM_GPUS_OPTION,
    TIMEOUT_OPTION,
    executor_options,
)

zoo_app = typer.Typer(
    help="Pretrain a zoo of small models on the built-in world (checkpoints + manifest).",
    no_args_is_help=True,
)


@zoo_app.command("train")
def train(
    preset: str = typer.Option("smoke", "--preset", "-p", help="smoke, quick or paper."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder (required: training never picks one for you)."
    ),
    overrides: Path | None = typer.Option(
        None,
        "--overrides",
        help="YAML file merged into the preset (world, defaults, variants, ...).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the world, data order and initialization."),
    executor: str | None = typer.Option(
        None,
        "--executor",
        help="processes (variants side by side; default when --workers > 1), local or ray.",
    ),
    address: str | None = ADDRESS_OPTION,
    num_cpus: float | None = NUM_CPUS_OPTION,
    num_gpus: float | None = NUM_GPUS_OPTION,
    memory: str | None = MEMORY_OPTION,
    max_retries: int | None = MAX_RETRIES_OPTION,
    timeout: float | None = TIMEOUT_OPTION,
    threads: str = typer.Option(
        "auto",
        "--threads",
        help="torch threads per variant: auto (the preset's, 1) or N; workers x threads <= cores.",
    ),
    runs: str | None = typer.Option(
        None, "--runs", help="Comma-separated variant names to train (default: all)."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Variants trained side by side (processes executor; fewer if the cores are busy).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train every variant of a preset; writes OUT/manifest.csv, OUT/world/, OUT/runs/."""
    options = executor_options(
        address,
        num_cpus,
        num_gpus,
        memory,
        max_retries,
        timeout,
        executor=executor or "processes",
    )
    from ..zoo import train_zoo

    manifest = train_zoo(
        preset=preset,
        out=out,
        overrides=overrides,
        seed=seed,
        executor=executor,
        progress=not quiet,
        runs=[r.strip() for r in runs.split(",") if r.strip()] if runs else None,
        workers=workers,
        executor_options=options,
        threads=threads,
    )
    typer.echo(str(manifest))


@zoo_app.command("presets")
def presets(
    preset: str | None = typer.Argument(None, help="Show this preset's variants in full."),
) -> None:
    """List the zoo presets (variants, sizes, steps, tokens per variant)."""
    import json

    from ..zoo import PRESETS, resolve_preset, resolve_variants

    names = [preset] if preset else list(PRESETS)
    for name in names:
        cfg = resolve_preset(name)
        specs = resolve_variants(cfg)
        sizes = sorted({s["size"] for s in specs})
        tok = sum(s["steps"] * s["batch_size"] * s["seq_len"] for s in specs)
        typer.echo(
            f"{name}: {len(specs)} variants, sizes {sizes}, "
            f"{specs[0]['steps']} steps x {specs[0]['batch_size']}x{specs[0]['seq_len']} tokens, "
            f"{tok / 1e6:.1f}M training tokens in all"
        )
        if preset:
            for s in specs:
                keep = (
                    "objective",
                    "size",
                    "lr",
                    "mixture",
                    "length_filter",
                    "domain_tags",
                    "steps",
                )
                typer.echo(f"  {s['run']}: " + json.dumps({k: s[k] for k in keep}))


@zoo_app.command("world")
def world(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder to write world.json, tasks/, heldout/."
    ),
    seed: int = typer.Option(0, "--seed"),
    preset: str = typer.Option("quick", "--preset", "-p", help="Preset whose world sizes to use."),
) -> None:
    """Write only the world (tasks, held-out text, corpus) without training anything."""
    from ..world import build_world
    from ..zoo import resolve_preset

    path = build_world(seed, resolve_preset(preset)["world"]).write(out)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add ``ckpt zoo ...`` to ``app``."""
    app.add_typer(zoo_app, name="zoo")
