"""Every report notebook executes under papermill on (a) a store of toolkit probe rows and (b) the
real Pythia evaluations, renders self-contained HTML with its sections and figures, escapes run
names, and opens in headless Chromium without console errors.

Kernel starts are expensive (seconds each), so each notebook runs once per store per session and
the tests assert on the outputs.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from ckpt_toolkit.reports import external_urls, run_reports
from ckpt_toolkit.store import ResultsStore

EVIL = "<script>alert(1)</script>"
STEPS = [0, 25, 50, 100, 200, 400, 800]
TOKENS_PER_STEP = 8192
RUNS = {"zoo-small": 1_200_000, "zoo-base": 4_800_000, EVIL: 2_400_000}
DOMAINS = ["encyclopedia", "programs"]
TASKS = {  # task -> (capability, chance, growth midpoint in log10 tokens)
    "capitals": ("world_knowledge", 0.25, 6.0),
    "inventors": ("world_knowledge", 0.25, 6.3),
    "addition": ("math", 0.25, 6.6),
    "counting": ("math", 0.25, 6.9),
    "story_qa": ("reading_comprehension", 0.25, 6.4),
}
FAST = {"proxies": {"n_splits": 3, "n_boot": 40}}


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + np.exp(-z))


def probe_rows(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Rows shaped like the toolkit's ppl / kshot / sft probe output (architecture.md), for three
    runs of different sizes; one run is named like an XSS payload."""
    rng = np.random.default_rng(seed)
    rows, cks = [], []
    for run, params in RUNS.items():
        scale = np.log10(params) - 6.0  # bigger runs learn faster and further
        for step in STEPS:
            tokens = step * TOKENS_PER_STEP
            ck = f"{run}@step{step}"
            base = dict(run=run, checkpoint=ck, step=step, tokens=tokens, params=params)
            cks.append({**base, "config": {"size": run}})
            lt = np.log10(max(tokens, 1.0))
            for d in DOMAINS:
                loss = (
                    2.0 + 4.0 * np.exp(-0.8 * max(lt - 4.5, 0) * (1 + scale)) + rng.normal(0, 0.02)
                )
                for metric, value in (
                    ("loss", loss),
                    ("ppl", np.exp(loss)),
                    ("bpb", loss / np.log(2) / 3.5),
                ):
                    rows.append(
                        {
                            **base,
                            "probe": "ppl",
                            "task": d,
                            "metric": metric,
                            "value": float(value),
                            "n": 200,
                            "spec_hash": "ppl1",
                        }
                    )
            for task, (cap, chance, mid) in TASKS.items():
                p = chance + (0.95 - chance) * _sigmoid(3.0 * (lt - mid + 0.6 * scale))
                acc = float(np.clip(p + rng.normal(0, 0.01), 0, 1))
                se = float(np.sqrt(acc * (1 - acc) / 400))
                prov = json.dumps({"chance": chance})
                for metric, value, err in (
                    ("acc", acc, se),
                    ("acc_norm", min(1.0, acc + 0.01), se),
                    ("gold_logprob", float(np.log(max(acc, 1e-3))), None),
                ):
                    rows.append(
                        {
                            **base,
                            "probe": "kshot",
                            "task": task,
                            "capability": cap,
                            "metric": metric,
                            "value": value,
                            "stderr": err,
                            "n": 400,
                            "shots": 3,
                            "spec_hash": "k3",
                            "provenance": prov,
                        }
                    )
                if step >= 50:  # fine-tuning ground truth on the later checkpoints
                    score = float(np.clip(acc + 0.1 + rng.normal(0, 0.02), 0, 1))
                    rows.append(
                        {
                            **base,
                            "probe": "sft",
                            "task": cap,
                            "metric": "score",
                            "value": score,
                            "spec_hash": f"sft-{task}",
                        }
                    )
    return rows, cks


def synthetic_store(path: Path) -> Path:
    """A store of probe-shaped rows with fine-tuning (sft) targets, one sft row per capability."""
    rows, cks = probe_rows()
    sft = pd.DataFrame([r for r in rows if r["probe"] == "sft"])
    keys = ["run", "checkpoint", "step", "tokens", "params", "probe", "task", "metric"]
    sft = sft.groupby(keys, as_index=False)["value"].mean().assign(spec_hash="sft1")
    rows = [r for r in rows if r["probe"] != "sft"] + sft.to_dict("records")
    ResultsStore(path).upsert(rows, checkpoints=cks)
    return path


@pytest.fixture(scope="session")
def zoo_store(request, tmp_path_factory) -> Path:
    """The smoke zoo probed by the toolkit (ppl + kshot), plus a copy of one run's rows under an
    XSS-like run name; without the zoo/probe modules, probe-shaped rows built here instead."""
    path = tmp_path_factory.mktemp("zoo") / "results.duckdb"
    try:
        from ckpt_toolkit.probes import run_probes
        from ckpt_toolkit.zoo import train_zoo  # noqa: F401
    except ImportError:
        return synthetic_store(path)
    manifest = request.getfixturevalue("smoke_zoo")
    run_probes(str(manifest), path, probes=("ppl", "kshot"), limit=6, batch_size=16, progress=False)
    store = ResultsStore(path)
    df = store.to_pandas()
    first = sorted(df["run"].unique())[0]
    evil = df[df["run"] == first].copy()
    evil["checkpoint"] = evil["checkpoint"].str.replace(first, EVIL, regex=False)
    evil["run"] = EVIL
    store.upsert(evil.drop(columns=["created_at"]))
    return path


@pytest.fixture(scope="session")
def pythia_store(tmp_path_factory, pythia_evals) -> Path:
    """Two Pythia sizes (70m, 160m) imported from the real lm-eval JSON files."""
    from ckpt_toolkit.importers import import_lm_eval

    path = tmp_path_factory.mktemp("pythia") / "pythia.duckdb"
    files = sorted(pythia_evals.glob("pythia-70m/zero-shot/*.json")) + sorted(
        pythia_evals.glob("pythia-160m/zero-shot/*.json")
    )
    import_lm_eval(files, path, progress=False)
    return path


@pytest.fixture(scope="session")
def zoo_reports(zoo_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports-zoo")
    return out, run_reports("all", zoo_store, out, params=FAST, progress=False)


@pytest.fixture(scope="session")
def pythia_reports(pythia_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports-pythia")
    return out, run_reports("all", pythia_store, out, params=FAST, progress=False)


SECTIONS = {
    "overview": [
        "What is in the store",
        "Loss over pretraining",
        "Headline capability curves",
        "Final checkpoints",
    ],
    "dynamics": [
        "Capability categories",
        "Benchmarks, across model sizes",
        "Phases",
        "Fitted curves and extrapolation",
        "Agreement between benchmarks",
        "Loss versus capability",
        "Do bigger models score higher?",
        "Signal and noise",
        "Cross-run disagreements",
        "Decision accuracy",
        "What to monitor",
    ],
    "proxies": [
        "Pairwise accuracy of each proxy",
        "The learned comparator versus single proxies",
        "Transfer across targets",
        "Accuracy by the size of the true gap",
        "Which proxies the comparator relies on",
        "Finding the best model: top-k recall",
    ],
    "explorer": ["Curve explorer", "Static views"],
}
MIN_IMAGES = {"overview": 3, "dynamics": 3, "proxies": 6, "explorer": 2}


def _check_html(html: str, report: str) -> None:
    for title in SECTIONS[report]:
        assert title in html, f"{report}: section {title!r} missing"
    n_img = len(re.findall(r'<img[^>]*src="data:image/png;base64,', html))
    assert n_img >= MIN_IMAGES[report], f"{report}: {n_img} embedded figures"
    assert "Traceback" not in html and "jp-OutputArea-error" not in html
    assert (
        'class="highlight hl-ipython3"' not in html and '<div class="jp-InputPrompt' not in html
    )  # no code by default
    assert external_urls(html) == [], external_urls(html)
    assert "<script src" not in html


@pytest.mark.parametrize("report", list(SECTIONS))
def test_notebook_on_probe_rows(zoo_reports, report):
    out, results = zoo_reports
    res = {r.report: r for r in results}[report]
    assert res.status == "ok", res.error
    html = (out / f"{report}.html").read_text()
    _check_html(html, report)
    # a run named like a script is shown as text, never as markup
    assert EVIL not in html
    if report in ("overview", "dynamics", "explorer"):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    if report == "explorer":  # batch runs skip the live widgets (static views only)
        assert res.params["interactive"] is False


@pytest.mark.parametrize("report", list(SECTIONS))
def test_notebook_on_pythia(pythia_reports, report):
    out, results = pythia_reports
    res = {r.report: r for r in results}[report]
    assert res.status == "ok", res.error
    _check_html((out / f"{report}.html").read_text(), report)


def test_overview_inventory_values(zoo_reports, zoo_store):
    """The run table in the overview matches counts taken straight from the store's rows."""
    out, _ = zoo_reports
    tables = pd.read_html(io.StringIO((out / "overview.html").read_text()))
    runs = next(t for t in tables if "checkpoints" in t.columns and "run" in t.columns)
    con = duckdb.connect(str(zoo_store), read_only=True)
    want = dict(
        con.execute(
            "SELECT run, count(DISTINCT checkpoint) FROM measurements GROUP BY run"
        ).fetchall()
    )
    rows = dict(con.execute("SELECT run, count(*) FROM measurements GROUP BY run").fetchall())
    con.close()
    assert dict(zip(runs["run"], runs["checkpoints"])) == want
    assert dict(zip(runs["run"], runs["rows"])) == rows
    assert EVIL in set(runs["run"])  # read back as text from the escaped table


def test_proxies_without_fine_tuning_uses_stand_in_targets(zoo_reports, pythia_reports):
    for out, _ in (zoo_reports, pythia_reports):
        assert "stand in as targets" in (out / "proxies.html").read_text()
    pout, _ = pythia_reports
    html = (pout / "proxies.html").read_text()
    for t in ("ext_acc:arc_easy", "ext_acc:piqa", "ext_acc:sciq"):  # the default fallbacks
        assert t in html


def test_proxies_notebook_with_fine_tuning_targets(tmp_path, monkeypatch):
    """The proxies notebook's code, run in-process (no kernel) on a store with sft rows: the
    targets are the sft:<capability> columns and the comparator table covers each of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nbformat

    from ckpt_toolkit.reports import notebooks_dir

    store = synthetic_store(tmp_path / "s.duckdb")
    nb = nbformat.read(notebooks_dir() / "proxies.ipynb", as_version=4)
    monkeypatch.setattr(plt, "show", lambda *a, **k: plt.close("all"))
    ns: dict = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        exec(cell.source, ns)  # noqa: S102 - our own notebook
        if "parameters" in cell.metadata.get("tags", []):
            ns.update(store_path=str(store), n_splits=3, n_boot=30, classifier="logreg")
    caps = sorted({c for c, _, _ in TASKS.values()})
    assert ns["stand_in"] is False
    assert sorted(ns["tg"]) == [f"sft:{c}" for c in caps]
    cmp_ = ns["res"].comparator
    assert set(cmp_[cmp_["kind"] == "comparator"]["target"]) == set(ns["tg"])
    # the proxy accuracies are independent pairwise counts over the models
    pa = ns["res"].proxy_accuracy
    assert ((pa["accuracy"] >= 0) & (pa["accuracy"] <= 1)).all()


def test_index_lists_every_report(zoo_reports):
    out, results = zoo_reports
    index = (out / "index.html").read_text()
    for r in results:
        assert f'href="{r.name}.html"' in index
        assert (out / f"{r.name}.html").is_file() and (out / f"{r.name}.ipynb").is_file()
    assert index.count('class="ok"') == len(results) == 4
    assert external_urls(index) == []


# -- a real browser ---------------------------------------------------------------------------
def _ensure_chromium() -> str:
    """The tests never install system packages: `make setup` installs Debian's chromium."""
    from ckpt_toolkit.reports.browser import find_chromium

    exe = find_chromium()
    if not exe:
        pytest.skip("Chromium not installed (`make setup` installs Debian's chromium)")
    return exe


def test_reports_render_in_chromium(zoo_reports, tmp_path):
    from ckpt_toolkit.reports.browser import Chromium, distinct_colors

    exe = _ensure_chromium()
    out, _ = zoo_reports
    with Chromium(exe) as browser:
        index = browser.check(out / "index.html")
        report = browser.check(out / "overview.html", full_page=True)
        dyn = browser.check(out / "dynamics.html")
    for page in (index, report, dyn):
        assert page.console_errors == [], page.console_errors
        assert page.network_requests == [], page.network_requests
        assert page.failed_requests == []
    assert index.title == "ckpt_toolkit reports"
    assert report.images >= MIN_IMAGES["overview"] and report.images_loaded == report.images
    assert dyn.images_loaded == dyn.images >= MIN_IMAGES["dynamics"]
    # figures rendered: a page of plots has many colours, a blank page one or two
    assert distinct_colors(report.screenshot) > 500
    assert distinct_colors(index.screenshot) > 20
    (tmp_path / "overview.png").write_bytes(report.screenshot)
