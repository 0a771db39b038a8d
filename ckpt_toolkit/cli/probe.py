"""``ckpt probe SOURCE``: perplexity, span-corruption perplexity and k-shot probes into the store."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ParameterError
from ..probes.registry import PROBE_ORDER
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


def register(app: typer.Typer) -> None:
    """Add the ``probe`` command to ``app``."""

    @app.command("probe")
    def probe(
        source: str | None = typer.Argument(
            None, help="Folder, checkpoint-N folders, manifest (.csv/.yaml), or hf://org/repo@rev"
        ),
        probes: str = typer.Option(
            ",".join(PROBE_ORDER), "--probes", "-p", help="Comma-separated probe names (--list)."
        ),
        list_probes: bool = typer.Option(
            False, "--list", help="List the probes, their parameters and metrics, and exit."
        ),
        param: list[str] = typer.Option(
            [], "--param", help="Probe parameter PROBE.NAME=VALUE (repeatable; see --list)."
        ),
        tasks: str | None = typer.Option(
            None, "--tasks", "-t", help="Task JSONL file(s) or folder(s), comma-separated."
        ),
        heldout: str | None = typer.Option(
            None, "--heldout", help="Held-out text: <domain>.jsonl / .txt file(s) or folder(s)."
        ),
        shots: str = typer.Option("0", "--shots", help="k-shot settings, e.g. 0,5."),
        batch_size: int = typer.Option(
            64, "--batch-size", "-b", help="Rows per forward pass at most (also capped by tokens)."
        ),
        limit: int | None = typer.Option(
            None, "--limit", help="Score at most N items / documents per task or domain."
        ),
        window: int | None = typer.Option(
            None, "--window", help="ppl/sc_ppl window in tokens (default: the model's)."
        ),
        stride: int | None = typer.Option(
            None, "--stride", help="ppl sliding-window stride (default: window // 2)."
        ),
        rolling: str | None = typer.Option(
            None,
            "--rolling",
            help="ppl windows: sliding (default) or lmeval (lm-eval's loglikelihood_rolling).",
        ),
        prefix_token: str | None = typer.Option(
            None,
            "--prefix-token",
            help="ppl: token string or id before each document instead of BOS (else EOS).",
        ),
        log_items: bool = typer.Option(
            False,
            "--log-items",
            help="Also write per-item scores as Parquet beside the store (<store>.items/).",
        ),
        dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16, float16 or auto."),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N, mps or auto."),
        store: Path = STORE_OPTION,
        executor: str = EXECUTOR_OPTION,
        address: str | None = ADDRESS_OPTION,
        num_cpus: float | None = NUM_CPUS_OPTION,
        num_gpus: float | None = NUM_GPUS_OPTION,
        memory: str | None = MEMORY_OPTION,
        max_retries: int | None = MAX_RETRIES_OPTION,
        timeout: float | None = TIMEOUT_OPTION,
        threads: str = THREADS_OPTION,
        tokens_per_step: str | None = TOKENS_PER_STEP_OPTION,
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
        allow_pickle: bool = ALLOW_PICKLE_OPTION,
        trust_remote_code: bool = TRUST_REMOTE_CODE_OPTION,
    ) -> None:
        """Probe every checkpoint of SOURCE; rows already in the store are not recomputed."""
        options = executor_options(
            address, num_cpus, num_gpus, memory, max_retries, timeout, threads, executor
        )
        from ..probes import run_probes
        from ..probes.registry import format_probe_list, probe_parameters
        from .checkpoints import source_with_tokens

        if list_probes:
            typer.echo(format_probe_list())
            return
        if source is None:
            raise ParameterError("missing SOURCE (a checkpoint folder, manifest, ...); or --list")
        # probe parameters from --window/--stride/--param; run_probes checks every option
        # (values, ranges, dtype, device) before a checkpoint is loaded
        params = probe_parameters(
            probes,
            {
                "--window": window,
                "--stride": stride,
                "--rolling": rolling,
                "--prefix-token": prefix_token,
            },
            param,
        )
        report = run_probes(
            source_with_tokens(source, tokens_per_step),
            store,
            probes=probes,
            tasks=tasks,
            heldout=heldout,
            shots=shots,
            batch_size=batch_size,
            limit=limit,
            dtype=dtype,
            device=device,
            executor=executor,
            executor_options=options,
            progress=not quiet,
            probe_params=params,
            allow_pickle=allow_pickle,
            trust_remote_code=trust_remote_code,
            log_items=log_items,
        )
        typer.echo(
            f"{report.summary()}; {len(report.skipped)} probe(s) already in the store; "
            f"{report.rows_written} rows written to {store}"
        )
        if log_items:
            from ..probes.item_log import item_log_dir

            typer.echo(f"per-item scores: {item_log_dir(store)}/")
        if not report.ok:
            raise typer.Exit(1)
