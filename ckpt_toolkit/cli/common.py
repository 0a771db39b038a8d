"""Shared CLI pieces: the YAML config loader and common options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import ParameterError
from ..store import DEFAULT_STORE
from ..yamlfiles import read_yaml_mapping

#: The common ``--store`` option; every command that reads or writes results uses it.
STORE_OPTION = typer.Option(
    Path(DEFAULT_STORE), "--store", "-s", help="Results store (DuckDB file)."
)


def _params(cmd: Any) -> set[str]:
    return {p.name for p in cmd.params if p.name}


def load_cli_config(path: Path, root: Any) -> dict[str, Any]:
    """Turn a YAML config into click's ``default_map`` for ``root``'s subcommands.

    Unknown keys are errors, so a typo never silently falls back to a default.
    """
    data = read_yaml_mapping(path, "config file")

    # every leaf command, by its space-separated path ("zoo train", "probe")
    leaves: dict[str, Any] = {}

    def walk(cmd: Any, prefix: str) -> None:
        if hasattr(cmd, "commands"):  # a group
            for name, sub in cmd.commands.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            leaves[prefix] = cmd

    walk(root, "")

    def leaf_for(key: str) -> str | None:
        for cand in (key, key.replace("_", " "), key.replace("-", " ")):
            if cand in leaves:
                return cand
        return None

    scoped = {leaf_for(k): v for k, v in data.items() if isinstance(v, dict) and leaf_for(k)}
    data = {k: v for k, v in data.items() if not (isinstance(v, dict) and leaf_for(k))}
    globals_ = {k.replace("-", "_"): v for k, v in data.items()}
    all_opts = set().union(*(_params(c) for c in leaves.values())) if leaves else set()
    bad = sorted(k for k in globals_ if k not in all_opts)
    if bad:
        raise ParameterError(
            f"config file {path}: unknown option(s) {bad}; known options: {sorted(all_opts)}"
        )

    default_map: dict[str, Any] = {}
    for leaf_path, cmd in leaves.items():
        values = {k: v for k, v in globals_.items() if k in _params(cmd)}
        scoped_vals = scoped.get(leaf_path) or {}
        for k, v in scoped_vals.items():
            k = k.replace("-", "_")
            if k not in _params(cmd):
                raise ParameterError(
                    f"config file {path}: '{leaf_path}' has no option {k!r}; "
                    f"its options: {sorted(_params(cmd))}"
                )
            values[k] = v
        if not values:
            continue
        node = default_map
        parts = leaf_path.split()
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node.setdefault(parts[-1], {}).update(values)
    return default_map


# -- checkpoint-loading options shared by every command that loads checkpoints ------------------
ALLOW_PICKLE_OPTION = typer.Option(
    False,
    "--allow-pickle",
    help="Load pickled weights (.bin/.pt) with torch.load(weights_only=True); off by default.",
)
TRUST_REMOTE_CODE_OPTION = typer.Option(
    False,
    "--trust-remote-code",
    help="Run a checkpoint's own modelling code (config.json auto_map); off by default.",
)


# -- executor options shared by probe, finetune and zoo train (ckpt_toolkit/executors.py) ----
EXECUTOR_OPTION = typer.Option(
    "local",
    "--executor",
    help="local (this process, default), processes (worker processes) or ray.",
)
ADDRESS_OPTION = typer.Option(
    None,
    "--address",
    help="Ray cluster address (with --executor ray; default: RAY_ADDRESS or a local cluster).",
)
NUM_CPUS_OPTION = typer.Option(
    None, "--num-cpus", help="CPUs per task: caps its threads; Ray reserves them."
)
NUM_GPUS_OPTION = typer.Option(
    None,
    "--num-gpus",
    help="GPUs per task, fractions allowed (default: 1 for --device cuda/auto, else 0).",
)
MEMORY_OPTION = typer.Option(
    None, "--memory", help="Memory per task, e.g. 8GiB (reserved by Ray; limits workers)."
)
MAX_RETRIES_OPTION = typer.Option(
    None, "--max-retries", help="Retries of a failed task before it is reported as failed."
)
TIMEOUT_OPTION = typer.Option(
    None, "--timeout", help="Seconds per task attempt; a longer one fails (and is retried)."
)
#: ``--tokens-per-step`` of every command that resolves a checkpoint source.
TOKENS_PER_STEP_OPTION = typer.Option(
    None, "--tokens-per-step", help="N, or run=N,run2=M: tokens seen = step x N."
)
THREADS_OPTION = typer.Option(
    "auto",
    "--threads",
    help="torch threads per task: auto (the free cores, see docs/threads.md) or N.",
)


def executor_options(
    address: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    memory: str | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    threads: str | int | None = None,
    executor: str | None = None,
) -> dict[str, Any]:
    """The executor flags given on the command line (None = not given), validated now — before
    anything loads — against ``executor`` when it is given (``--timeout -1``, ``--executor
    dask``, ``--address`` without ``--executor ray`` are :class:`ParameterError` naming the flag)."""
    from ..executors import ExecutorOptions, validate_executor

    opts = ExecutorOptions(
        address=address,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        memory=memory,
        max_retries=max_retries,
        timeout=timeout,
        threads=threads,
    )
    if executor is not None:
        validate_executor(executor, opts)
    given = opts.given()
    if memory is not None:
        given["memory"] = memory  # the text as typed; executors parse it again
    return given
