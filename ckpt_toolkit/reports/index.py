"""``DIR/index.html``: every report of a batch with its parameters, run time, status and link.

The page is static HTML with inline CSS (no scripts, no network). Reports already listed in an
existing ``index.json`` beside it are kept unless this batch re-ran them, so running one report
does not drop the others from the index.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._version import __version__

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
p.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #ddd; vertical-align: top; }
th { background: #f0f0f0; }
td.params { font-family: ui-monospace, monospace; font-size: 12px; color: #333; }
.ok, .unchanged { color: #1a7f37; font-weight: 600; }
.failed { color: #c62828; font-weight: 600; }
td.err { color: #c62828; font-size: 12px; }
"""


def _entry(r: Any) -> dict[str, Any]:
    d = r.to_dict() if hasattr(r, "to_dict") else dict(r)
    extra = d.get("extra") or {}
    seconds = d.get("seconds")
    if d["status"] == "unchanged" and extra.get("rendered_seconds") is not None:
        seconds = extra["rendered_seconds"]  # what rendering it took, not the skip
    return {
        "report": d["report"],
        "name": d["name"],
        "params": d.get("params") or {},
        "status": d["status"],
        "seconds": seconds,
        # what the report was computed from (runner.inputs_hash): a re-run with equal inputs
        # is skipped; the stage timings of its last execution
        "inputs": extra.get("inputs", d.get("inputs")),
        "execute_s": extra.get("execute_s", d.get("execute_s")),
        "export_s": extra.get("export_s", d.get("export_s")),
        "notebook": d.get("notebook"),
        "html": d.get("html"),
        "error": d.get("error", ""),
        "finished": d.get("finished")
        or datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }


def _rel(path: str | None, out: Path) -> str | None:
    if not path:
        return None
    try:
        return Path(os.path.relpath(Path(path).resolve(), out.resolve())).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _params_text(params: dict[str, Any]) -> str:
    short = {
        k: (Path(v).name if k.endswith("_path") and isinstance(v, str) else v)
        for k, v in params.items()
    }
    return ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in short.items())


def write_index(out_dir: str | Path, results: Sequence[Any], *, merge: bool = True) -> Path:
    """Write ``out_dir/index.html`` (and ``index.json``) listing ``results``.

    ``results``: :class:`~ckpt_toolkit.reports.runner.ReportResult` objects or their dicts.
    With ``merge`` the entries of an earlier ``index.json`` whose names were not re-run stay.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = [_entry(r) for r in results]
    meta = out / "index.json"
    if merge and meta.is_file():
        try:
            old = json.loads(meta.read_text())
        except (json.JSONDecodeError, OSError):
            old = []
        names = {e["name"] for e in entries}
        kept = [e for e in old if isinstance(e, dict) and e.get("name") not in names]
        kept = [e for e in kept if e.get("html") and Path(e["html"]).exists()]
        entries = kept + entries
    order = {"overview": 0, "dynamics": 1, "proxies": 2, "explorer": 3}
    entries.sort(key=lambda e: (order.get(e["report"], 9), e["report"], e["name"]))
    meta.write_text(json.dumps(entries, indent=1, default=str))

    rows = []
    for e in entries:
        link = _rel(e.get("html"), out)
        nb = _rel(e.get("notebook"), out)
        name = html.escape(e["name"])
        cell = f'<a href="{html.escape(link, quote=True)}">{name}</a>' if link else name
        if nb:
            cell += f' <small>(<a href="{html.escape(nb, quote=True)}">ipynb</a>)</small>'
        secs = f"{e['seconds']:.1f} s" if isinstance(e.get("seconds"), (int, float)) else ""
        status = html.escape(e["status"])
        rows.append(
            "<tr>"
            f"<td>{cell}</td>"
            f"<td>{html.escape(e['report'])}</td>"
            f'<td class="params">{html.escape(_params_text(e["params"]))}</td>'
            f"<td>{html.escape(e['finished'])}</td><td>{secs}</td>"
            f'<td class="{status}">{status}</td>'
            f'<td class="err">{html.escape(e.get("error") or "")}</td>'
            "</tr>"
        )
    n_ok = sum(e["status"] in ("ok", "unchanged") for e in entries)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>ckpt_toolkit reports</title><style>{_CSS}</style></head>
<body><main>
<h1>Checkpoint reports</h1>
<p class="sub">{n_ok} of {len(entries)} reports rendered · ckpt_toolkit {html.escape(__version__)}</p>
<table>
<thead><tr><th>report</th><th>notebook</th><th>parameters</th><th>finished (UTC)</th>
<th>time</th><th>status</th><th>error</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
</main></body></html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
