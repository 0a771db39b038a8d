"""Execute report notebooks with papermill over one or many parameter sets, export HTML.

``run_reports(["dynamics"], store, "reports")`` writes ``reports/dynamics.ipynb``,
``reports/dynamics.html`` and ``reports/index.html``. With a grid of parameter sets each set gets
its own outputs, named from the parameter values that vary (``dynamics__runs-pythia-70m.html``),
never from the time. A notebook that fails keeps its executed ``.ipynb`` (and an HTML render of
it, error included), is recorded as failed, and the batch goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import CkptError, ParameterError, StoreError
from .cache import CACHE_ENV
from .params import declared_parameters, expand_grid, slug, validate_params

log = logging.getLogger(__name__)

#: The Jupyter kernel ``make setup`` registers into .venv.
KERNEL_NAME = "ckpt-toolkit"
FALLBACK_KERNEL = "python3"
#: Report notebooks ``all`` expands to, in the order the index lists them.
DEFAULT_REPORTS = ("overview", "dynamics", "proxies", "explorer")


class ReportError(CkptError):
    """A report notebook cannot be found or its execution could not even start."""


@dataclass
class ReportResult:
    """What happened to one (notebook, parameter set)."""

    report: str
    name: str
    params: dict[str, Any]
    status: str  # "ok" | "failed" | "unchanged" (same inputs as the last run: not re-executed)
    seconds: float
    notebook: Path
    html: Path | None
    error: str = ""
    kernel: str = KERNEL_NAME
    finished: str = ""  # ISO time (UTC) the run ended
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the notebook executed without error (or is unchanged since it did)."""
        return self.status in ("ok", "unchanged")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (paths as text)."""
        d = asdict(self)
        d["notebook"] = str(self.notebook)
        d["html"] = str(self.html) if self.html else None
        return d


def notebooks_dir(override: str | Path | None = None) -> Path:
    """The folder holding the report notebooks: ``override``, ``$CKPT_NOTEBOOKS``, the copy
    shipped inside the installed package (``pip install .``: ``ckpt_toolkit/notebooks``, see
    setup.py), or the repository's top-level ``notebooks/`` (editable install)."""
    import ckpt_toolkit

    candidates = []
    if override is not None:
        candidates.append(Path(override))
    elif os.environ.get("CKPT_NOTEBOOKS"):
        candidates.append(Path(os.environ["CKPT_NOTEBOOKS"]))
    else:
        pkg = Path(ckpt_toolkit.__file__).resolve().parent
        candidates.append(pkg / "notebooks")
        if (pkg.parent / "pyproject.toml").is_file():  # a checkout of this repository
            candidates.append(pkg.parent / "notebooks")
    for c in candidates:
        if c.is_dir() and any(c.glob("*.ipynb")):
            return c
    raise ReportError(
        "report notebooks not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); pass --notebooks DIR or set CKPT_NOTEBOOKS"
    )


def available_reports(nb_dir: str | Path | None = None) -> list[str]:
    """Names of the report notebooks (file stems), default reports first."""
    names = sorted(p.stem for p in notebooks_dir(nb_dir).glob("*.ipynb"))
    return [n for n in DEFAULT_REPORTS if n in names] + [
        n for n in names if n not in DEFAULT_REPORTS
    ]


def choose_kernel(preferred: str = KERNEL_NAME) -> str:
    """``preferred`` if that Jupyter kernel is registered, else ``python3`` (with a warning)."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if preferred in specs:
        return preferred
    msg = (
        f"Jupyter kernel {preferred!r} is not registered (run `make setup`); "
        f"falling back to {FALLBACK_KERNEL!r}"
    )
    log.warning(msg)
    print(f"warning: {msg}", file=sys.stderr)
    return FALLBACK_KERNEL


def _resolve_names(names: Sequence[str] | str, nb_dir: Path) -> list[str]:
    avail = available_reports(nb_dir)
    if names == "all" or (not isinstance(names, str) and list(names) == ["all"]):
        return [n for n in DEFAULT_REPORTS if n in avail] or avail
    names = [names] if isinstance(names, str) else list(names)
    for n in names:
        if n not in avail:
            raise ReportError(f"unknown report {n!r}; available: {', '.join(avail)}")
    return names


def _split_params(
    params: Mapping[str, Any] | None,
    names: list[str],
    declared: dict[str, dict],
    reports: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Per-notebook parameters from a flat mapping (each key goes to the notebooks that declare
    it; a key no selected notebook declares is an error) or a mapping of report name → mapping."""
    params = dict(params or {})
    per: dict[str, dict[str, Any]] = {n: {} for n in names}
    for key, value in params.items():
        if isinstance(value, dict) and (key in declared or key in reports):  # one report's
            if key in per:
                per[key].update(value)
            continue
        owners = [n for n in names if key in declared[n]]
        if not owners:
            if len(names) == 1:  # let validate_params name the notebook and list its params
                per[names[0]][key] = value
                continue
            raise ParameterError(
                f"parameter {key!r} is not declared by any of the notebooks {names}"
            )
        for n in owners:
            per[n][key] = value
    return per


def _load(value: Any, what: str) -> Any:
    from .params import load_yaml_mapping

    if value is None or isinstance(value, (dict, list)):
        return value
    return load_yaml_mapping(value, what)


def run_reports(
    names: Sequence[str] | str,
    store: str | Path | None,
    out_dir: str | Path,
    params: Mapping[str, Any] | str | Path | None = None,
    grid: Mapping[str, Any] | list | str | Path | None = None,
    include_code: bool = False,
    timeout: float = 600,
    progress: bool = True,
    *,
    notebooks: str | Path | None = None,
    kernel: str | None = None,
    index: bool = True,
    jobs: int | None = None,
    force: bool = False,
) -> list[ReportResult]:
    """Execute report notebooks on ``store`` and write ``.ipynb`` + ``.html`` into ``out_dir``.

    ``names``: report names (notebook stems) or ``"all"``. ``params``: a mapping (or YAML file)
    of parameter values, flat or per report. ``grid``: parameter sets (YAML file, a list of
    mappings or a mapping of name → values) each run separately on top of ``params``.
    ``timeout``: seconds per notebook (all its cells together). Every parameter is validated
    against the notebook's declared ones before anything runs (:class:`ParameterError`).
    Failing notebooks are recorded and the batch goes on; ``index`` writes ``index.html``.

    ``jobs``: notebooks executed at once, each in its own kernel (default: one per
    usable core, see :func:`_workers`). A report whose inputs (:func:`inputs_hash`: notebook,
    parameters, store content, toolkit code) equal those of its last run in ``out_dir`` and
    whose files are still there is not executed again: its status is ``unchanged``.
    ``force`` executes every notebook and recomputes the cached analyses
    (:mod:`ckpt_toolkit.reports.cache`).
    """
    from tqdm.auto import tqdm

    if store is not None and not Path(store).is_file():
        raise StoreError(f"results store not found: {store}")
    if jobs is not None:
        _workers(jobs, 1)  # a bad --jobs fails before anything runs
    # absolute paths: notebooks run side by side in threads, and papermill resolves relative
    # paths against a process-wide working directory
    nb_dir = notebooks_dir(notebooks).resolve()
    _clear_papermill_io_cwd()
    selected = _resolve_names(names, nb_dir)
    declared = {n: declared_parameters(nb_dir / f"{n}.ipynb") for n in selected}
    loaded = _load(params, "params")
    if loaded is not None and not isinstance(loaded, Mapping):  # e.g. a YAML list
        raise ParameterError(
            f"params {params if isinstance(params, (str, Path)) else ''} must be a mapping of "
            f"parameter names to values (or report name → mapping), not a "
            f"{type(loaded).__name__}"
        )
    per = _split_params(loaded, selected, declared, available_reports(nb_dir))
    sets = expand_grid(_load(grid, "grid"), "grid")
    varying = [k for k in dict.fromkeys(k for s in sets for k in s)] if len(sets) > 1 else []

    plan: list[tuple[str, dict[str, Any], str]] = []
    for n in selected:
        for s in sets:
            p = dict(per[n])
            if store is not None and "store_path" in declared[n]:
                p["store_path"] = str(Path(store).resolve())
            if "interactive" in declared[n] and "interactive" not in p:
                # batch execution has no widget front-end: live widgets only cost time (and
                # nbclient can stall on their comm traffic); the notebook shows static views
                p["interactive"] = False
            for k, v in s.items():
                if k in declared[n] or len(selected) == 1:
                    p[k] = v
                elif not any(k in declared[m] for m in selected):
                    raise ParameterError(
                        f"grid parameter {k!r} is not declared by any of {selected}"
                    )
            validate_params(nb_dir / f"{n}.ipynb", p, declared[n])
            keys = [k for k in varying if k in declared[n]]
            name = f"{n}__{slug(p, keys)}" if keys else n
            plan.append((n, p, name))
    seen: set[str] = set()
    for _, _, name in plan:
        if name in seen:
            raise ParameterError(f"two parameter sets give the same output name {name!r}")
        seen.add(name)

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    kernel_name = kernel or choose_kernel()
    previous = _previous_entries(out)
    digest = _store_digest(store)
    results: dict[int, ReportResult] = {}
    todo: list[tuple[int, str, dict[str, Any], str, str | None]] = []
    for i, (report, p, name) in enumerate(plan):
        nb_path = nb_dir / f"{report}.ipynb"
        h = inputs_hash(nb_path, p, digest, include_code) if digest is not None else None
        same = None if force or h is None else _unchanged(previous.get(name), h, report, p)
        if same is not None:
            results[i] = same
        else:
            todo.append((i, report, p, name, h))
    workers = _workers(jobs, len(todo))
    cache_env = {CACHE_ENV: "refresh"} if force else {}
    bar = tqdm(total=len(plan), desc="reports", unit="nb", disable=not progress)
    bar.update(len(results))
    if workers <= 1:
        with _environ(cache_env):
            for i, report, p, name, h in todo:
                bar.set_postfix_str(name)
                results[i] = run_one(
                    nb_dir / f"{report}.ipynb", out, name, p, kernel_name, timeout, include_code
                )
                results[i].extra["inputs"] = h
                bar.update(1)
    else:
        results.update(
            _run_parallel(
                todo, nb_dir, out, kernel_name, timeout, include_code, workers, cache_env,
                previous, bar,
            )
        )  # fmt: skip
    bar.close()
    ordered = [results[i] for i in range(len(plan))]
    if index:
        from .index import write_index

        write_index(out, ordered)
    if progress:
        print(summary(ordered), file=sys.stderr)
    return ordered


# -- skipping unchanged reports ---------------------------------------------------------------
def _store_digest(store: str | Path | None) -> str | None:
    """The store's content hash, or ``None`` (no store, or not readable as one: never skip)."""
    if store is None:
        return None
    from .cache import store_digest

    try:
        return store_digest(store).total
    except Exception as exc:  # noqa: BLE001 - only the skipping is lost; the notebook reports
        log.debug("no content digest of %s (%s): every report runs", store, exc)
        return None


def inputs_hash(
    notebook: Path, params: Mapping[str, Any], store_digest: str, include_code: bool = False
) -> str:
    """What one report depends on: the notebook file, its parameters (and the content of any
    file a ``*_path`` parameter names, the store excepted), the store's content and the
    toolkit's code. Equal hashes give equal reports."""
    import hashlib

    from .cache import REPORT_CODE_PARTS, code_digest, file_digest

    files = {
        k: file_digest(v)
        for k, v in sorted(params.items())
        if k.endswith("_path") and k != "store_path" and isinstance(v, str) and v
    }
    doc = {
        "notebook": hashlib.sha256(notebook.read_bytes()).hexdigest(),
        "params": params,
        "files": files,
        "store": store_digest,
        "code": code_digest(REPORT_CODE_PARTS),
        "include_code": include_code,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _previous_entries(out: Path) -> dict[str, dict[str, Any]]:
    try:
        old = json.loads((out / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    return (
        {e["name"]: e for e in old if isinstance(e, dict) and "name" in e}
        if isinstance(old, list)
        else {}
    )


def _unchanged(
    entry: Mapping[str, Any] | None, h: str, report: str, params: dict[str, Any]
) -> ReportResult | None:
    """A result for a report whose last run had the same inputs and left its files, else
    ``None``."""
    if not entry or entry.get("inputs") != h or entry.get("status") not in ("ok", "unchanged"):
        return None
    html, nb = entry.get("html"), entry.get("notebook")
    if not html or not nb or not Path(html).is_file() or not Path(nb).is_file():
        return None
    return ReportResult(
        report=report,
        name=entry["name"],
        params=params,
        status="unchanged",
        seconds=0.0,
        notebook=Path(nb),
        html=Path(html),
        finished=entry.get("finished", ""),
        extra={
            "inputs": h,
            "rendered_seconds": entry.get("seconds"),
            "execute_s": entry.get("execute_s"),
            "export_s": entry.get("export_s"),
        },
    )


# -- running several notebooks at once ---------------------------------------------------------
#: The most notebooks run at once when ``--jobs`` is not given.
MAX_AUTO_JOBS = 8


def _workers(requested: int | None, n_todo: int) -> int:
    """Notebooks run at once: ``requested``, else one per usable core (affinity and cgroup
    quota) up to :data:`MAX_AUTO_JOBS` (each kernel holds its own copy of the tables), never
    more than there are notebooks."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ParameterError(f"--jobs must be a positive integer, got {requested!r}")
        return max(1, min(requested, n_todo))
    from ..threads import usable_cores

    return max(1, min(usable_cores(), MAX_AUTO_JOBS, n_todo))


#: Which default reports usually take longest (started first when no earlier run says).
_COST_HINT = {"proxies": 3, "dynamics": 2, "overview": 1}
#: Thread variables set in each kernel when notebooks run side by side (cores / workers each).
KERNEL_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables (inherited by the kernels started inside), then restore."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _clear_papermill_io_cwd() -> None:
    """papermill's local file handler keeps one process-wide directory that it chdirs into
    around every read and write; each execute sets it on entry and restores the previous value
    on exit, so executes interleaved by threads can leave a stale one behind (a directory this
    process has since left). Cleared before reading notebooks and after a batch; our paths are
    all absolute."""
    from papermill.iorw import papermill_io

    papermill_io.get_handler("local").cwd(None)


def _run_parallel(
    todo: list[tuple[int, str, dict[str, Any], str, str | None]],
    nb_dir: Path,
    out: Path,
    kernel_name: str,
    timeout: float,
    include_code: bool,
    workers: int,
    cache_env: Mapping[str, str],
    previous: Mapping[str, Mapping[str, Any]],
    bar: Any,
) -> dict[int, ReportResult]:
    """Run notebooks ``workers`` at a time, each driven by a thread of this process (the work is
    done in each notebook's own kernel process; a thread only relays messages and exports the
    HTML, so spawned worker processes would only add their start-up and imports). The ones that
    took longest last time start first. A runner thread that raises fails its notebook only."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from ..threads import usable_cores

    threads = str(max(1, usable_cores() // workers))
    env = {**{v: threads for v in KERNEL_THREAD_VARS}, **cache_env}
    last = {name: float(e.get("seconds") or 0.0) for name, e in previous.items()}
    order = sorted(todo, key=lambda t: (-last.get(t[3], 0.0), -_COST_HINT.get(t[1], 0)))
    results: dict[int, ReportResult] = {}
    with (
        _environ(env),
        contextlib.ExitStack() as cleanup,
        ThreadPoolExecutor(workers, thread_name_prefix="ckpt-report") as pool,
    ):
        cleanup.callback(_clear_papermill_io_cwd)  # run_reports cleared it before reading
        futures = {
            pool.submit(
                run_one, nb_dir / f"{report}.ipynb", out, name, p, kernel_name, timeout,
                include_code,
            ): (i, report, p, name, h)
            for i, report, p, name, h in order
        }  # fmt: skip
        for fut in as_completed(futures):
            i, report, p, name, h = futures[fut]
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - a runner error fails its notebook only
                res = ReportResult(
                    report=report, name=name, params=p, status="failed", seconds=0.0,
                    notebook=out / f"{name}.ipynb", html=None,
                    error=f"report runner failed: {type(exc).__name__}: {exc}", kernel=kernel_name,
                    finished=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
                )  # fmt: skip
            res.extra["inputs"] = h
            results[i] = res
            bar.set_postfix_str(name)
            bar.update(1)
    return results


def run_one(
    notebook: Path,
    out: Path,
    name: str,
    params: dict[str, Any],
    kernel_name: str,
    timeout: float,
    include_code: bool = False,
) -> ReportResult:
    """Execute one notebook with papermill (whole-notebook ``timeout``), then export HTML."""
    import papermill as pm

    from .export import notebook_to_html
    from .kernel import papermill_kernel_options

    out_nb = out / f"{name}.ipynb"
    deadline = time.monotonic() + timeout

    def remaining(_cell: Any) -> int:  # nbclient asks before each cell: the budget left
        return max(1, int(deadline - time.monotonic()))

    t0 = time.monotonic()
    status, error = "ok", ""
    try:
        pm.execute_notebook(
            str(notebook),
            str(out_nb),
            parameters=params,
            kernel_name=kernel_name,
            # the kernel starts in the notebook's folder (nbclient's resources path); papermill's
            # own cwd= would os.chdir the whole process, which races between notebooks run by
            # threads (a relative path then resolves against another notebook's folder)
            resources={"metadata": {"path": str(notebook.parent)}},
            progress_bar=False,
            report_mode=False,
            start_timeout=120,
            timeout_func=remaining,
            **papermill_kernel_options(),  # no kernel log noise on successful runs
        )
    except Exception as exc:  # noqa: BLE001 - any failure is recorded; the batch goes on
        status = "failed"
        error = _describe(exc, timeout, time.monotonic() - t0)
    executed = time.monotonic()
    html = None
    footer = f"{name} · parameters: {json.dumps(params, default=str)} · status: {status}"
    if out_nb.exists():
        try:
            html = notebook_to_html(out_nb, include_code=include_code, footer=footer)
        except Exception as exc:  # noqa: BLE001
            status, error = "failed", error or f"HTML export failed: {exc}"
    seconds = time.monotonic() - t0
    return ReportResult(
        report=notebook.stem,
        name=name,
        params=params,
        status=status,
        seconds=round(seconds, 2),
        notebook=out_nb,
        html=html,
        error=error,
        kernel=kernel_name,
        finished=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        extra={
            "execute_s": round(executed - t0, 2),  # kernel start + cells + shutdown
            "export_s": round(time.monotonic() - executed, 2),  # HTML export
        },
    )


def _describe(exc: Exception, timeout: float, elapsed: float) -> str:
    kind = type(exc).__name__
    if "Timeout" in kind or (elapsed >= timeout and "timed out" in str(exc).lower()):
        return f"timed out after {timeout:g} s"
    ename = getattr(exc, "ename", None)
    evalue = getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{kind}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"


def summary(results: Sequence[ReportResult]) -> str:
    """A short text summary: one line per report and the totals."""
    lines = []
    for r in results:
        mark = "ok  " if r.ok else "FAIL"
        tail = f"  {r.error}" if r.error else ""
        if r.status == "unchanged":
            tail = f"  unchanged (store, notebook and parameters as at {r.finished or 'last run'})"
        lines.append(f"  {mark} {r.name:<40} {r.seconds:7.1f} s{tail}")
    n_ok = sum(r.ok for r in results)
    n_same = sum(r.status == "unchanged" for r in results)
    lines.append(
        f"{n_ok}/{len(results)} reports ok"
        + (f" ({n_same} unchanged, not re-run)" if n_same else "")
    )
    return "\n".join(lines)
