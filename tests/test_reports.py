"""The report runner: parameter validation, grids, failures in a batch, timeouts, HTML export,
index, kernel choice and the CLI — on tiny notebooks (no analysis imports, fast kernels)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ckpt_toolkit.errors import ParameterError, StoreError
from ckpt_toolkit.reports import (
    choose_kernel,
    declared_parameters,
    expand_grid,
    external_urls,
    notebook_to_html,
    run_reports,
    validate_params,
    write_index,
)
from ckpt_toolkit.reports.params import slug


def _notebook(path: Path, params_src: str, body: list[str]) -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "ckpt-toolkit", "display_name": "x", "language": "python"}
    cell = new_code_cell(params_src)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell("# Tiny report"), cell] + [new_code_cell(b) for b in body]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def nb_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("notebooks")
    _notebook(
        d / "tiny.ipynb",
        'store_path: str = "x.duckdb"  # store\n'
        'mode: str = "ok"  # ok, fail or sleep\n'
        "n: int = 3  # number of squares\n"
        "scale: float = 1.0  # multiplier\n"
        "names: list = []  # labels\n"
        "flag: bool = False  # a switch\n",
        [
            "import os, time\n"
            "print('kernel cwd', os.getcwd())\n"
            "if mode == 'fail':\n    raise RuntimeError('boom: the notebook failed on purpose')\n"
            "if mode == 'sleep':\n    time.sleep(60)\n",
            "from IPython.display import HTML, display\n"
            "print('squares', [i * i * scale for i in range(n)])\n"
            "display(HTML('<b>names:</b> ' + ', '.join(names)))",
        ],
    )
    return d


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("store") / "s.duckdb"
    p.write_bytes(b"")  # the tiny notebook never opens it; the runner checks that it exists
    return p


def test_declared_parameters(nb_dir):
    ps = declared_parameters(nb_dir / "tiny.ipynb")
    assert list(ps) == ["store_path", "mode", "n", "scale", "names", "flag"]
    assert (
        ps["n"].type_name == "int" and ps["n"].default == 3 and ps["n"].help == "number of squares"
    )


def test_unparsable_parameter_line_is_an_error(tmp_path):
    nb = _notebook(tmp_path / "bad.ipynb", "x: int = 1  # help with = sign\n", [])
    with pytest.raises(ParameterError, match=r"bad.ipynb.*\['x'\]"):
        declared_parameters(nb)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"nn": 2}, r"tiny.ipynb has no parameter 'nn'"),
        ({"n": "3"}, r"tiny.ipynb: parameter 'n' must be int, got str '3'"),
        ({"n": True}, r"parameter 'n' must be int"),
        ({"flag": "yes"}, r"parameter 'flag' must be bool"),
        ({"names": "a"}, r"parameter 'names' must be list"),
    ],
)
def test_bad_parameters_fail_clearly(nb_dir, params, message):
    with pytest.raises(ParameterError, match=message):
        validate_params(nb_dir / "tiny.ipynb", params)


def test_good_parameters_pass(nb_dir):
    ok = {"n": 2, "scale": 2, "names": ["a"], "flag": True, "mode": "ok"}  # int is a valid float
    assert validate_params(nb_dir / "tiny.ipynb", ok) == ok


def test_run_reports_rejects_bad_params_before_running(nb_dir, store, tmp_path):
    with pytest.raises(ParameterError, match="'bogus'"):
        run_reports(
            ["tiny"], store, tmp_path, params={"bogus": 1}, notebooks=nb_dir, progress=False
        )
    with pytest.raises(ParameterError, match="must be int"):
        run_reports(
            ["tiny"], store, tmp_path, grid={"n": [1, "two"]}, notebooks=nb_dir, progress=False
        )
    assert not list(tmp_path.glob("*.ipynb"))  # nothing ran
    with pytest.raises(StoreError, match="not found"):
        run_reports(["tiny"], tmp_path / "missing.duckdb", tmp_path, notebooks=nb_dir)


def test_grid_expansion_and_names():
    assert expand_grid({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert expand_grid([{"a": 1}, {"a": 2, "b": 3}]) == [{"a": 1}, {"a": 2, "b": 3}]
    assert expand_grid(None) == [{}]
    with pytest.raises(ParameterError):
        expand_grid([1, 2])
    name = slug({"runs": ["pythia-70m", "a b"], "store_path": "/x/y/zoo.duckdb", "k": 3})
    assert name == "runs-pythia-70m+a-b__store_path-zoo__k-3"
    assert not re.search(r"\d{8}|\d{2}:\d{2}", name)


def test_unknown_kernel_falls_back_to_python3(capsys):
    assert choose_kernel("no-such-kernel-xyz") == "python3"
    assert "falling back to 'python3'" in capsys.readouterr().err
    assert choose_kernel() in ("ckpt-toolkit", "python3")


@pytest.fixture(scope="module")
def batch(nb_dir, store, tmp_path_factory):
    """One batch over a grid: a good set, a failing one, one that runs past the timeout; two
    notebooks at a time (worker processes), results in the grid's order."""
    out = tmp_path_factory.mktemp("out")
    grid = [
        {"mode": "ok", "n": 4, "names": ["<b>bold</b>"]},
        {"mode": "fail", "n": 1},
        {"mode": "sleep", "n": 2},
    ]
    results = run_reports(
        ["tiny"], store, out, grid=grid, notebooks=nb_dir, timeout=12, progress=True, jobs=2
    )
    return out, results


def test_parallel_notebooks_never_change_the_process_directory(
    nb_dir, store, tmp_path, monkeypatch
):
    """Notebooks run side by side in threads of one process. papermill's ``cwd=`` chdirs the
    whole process, so another notebook's relative output folder could resolve against it
    ("output folder reports doesn't exist" in a make demo). Kernels still start in the
    notebook's folder."""
    from papermill.iorw import papermill_io

    papermill_io.get_handler("local").cwd(os.getcwd())  # as a previous batch may leave it
    monkeypatch.chdir(tmp_path)
    real_chdir, calls = os.chdir, []
    monkeypatch.setattr(os, "chdir", lambda p: calls.append(p) or real_chdir(p))
    grid = [{"mode": "ok", "n": n} for n in (1, 2, 3)]
    results = run_reports(
        ["tiny"], store, "rel-out", grid=grid, notebooks=nb_dir, jobs=3, progress=False
    )
    assert [r.status for r in results] == ["ok"] * 3
    # papermill's file IO still chdirs around each read and write, but only to where we are
    assert {Path(p).resolve() for p in calls} <= {tmp_path.resolve()}
    assert Path.cwd() == tmp_path
    assert papermill_io.get_handler("local")._cwd is None  # nothing stale left for the next run
    htmls = sorted(p.name for p in (tmp_path / "rel-out").glob("tiny__*.html"))
    assert htmls == [f"tiny__mode-ok__n-{n}.html" for n in (1, 2, 3)]
    executed = (tmp_path / "rel-out" / "tiny__mode-ok__n-1.ipynb").read_text()
    assert f"kernel cwd {nb_dir.resolve()}" in executed


def test_batch_names_status_and_outputs(batch):
    out, results = batch
    names = [r.name for r in results]
    assert names == [
        "tiny__mode-ok__n-4__names-b-bold-b",
        "tiny__mode-fail__n-1",
        "tiny__mode-sleep__n-2",
    ]
    ok, fail, slow = results
    assert ok.status == "ok" and ok.error == ""
    assert fail.status == "failed" and "boom" in fail.error and "RuntimeError" in fail.error
    assert slow.status == "failed" and "timed out" in slow.error
    assert slow.seconds < 45
    for r in results:  # the executed notebook is kept, failures included
        assert r.notebook.is_file()
        assert r.html is not None and r.html.is_file()
    executed = nbformat.read(fail.notebook, as_version=4)
    assert any(
        o.get("ename") == "RuntimeError" for c in executed.cells for o in c.get("outputs", [])
    )


def test_batch_html_export(batch):
    out, (ok, fail, _) = batch
    html = ok.html.read_text()
    assert "squares [0.0, 1.0, 4.0, 9.0]" in html  # n=4, scale=1.0 computed in the kernel
    assert "Tiny report" in html
    assert 'class="highlight hl-ipython3"' not in html and '<div class="jp-InputPrompt' not in html
    assert external_urls(html) == []
    # the parameters footer escapes user text
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "boom" in fail.html.read_text()  # the failure's HTML shows the error


def test_include_code_keeps_cells(batch, tmp_path):
    _, (ok, _, _) = batch
    html = notebook_to_html(ok.notebook, tmp_path / "with_code.html", include_code=True).read_text()
    assert 'class="highlight hl-ipython3"' in html and "squares" in html
    assert external_urls(html) == []


def test_index_lists_failures(batch):
    out, results = batch
    index = (out / "index.html").read_text()
    assert index.count('class="ok"') == 1 and index.count('class="failed"') == 2
    for r in results:
        assert f'href="{r.name}.html"' in index
    assert "timed out" in index and "boom" in index
    assert "&lt;b&gt;bold&lt;/b&gt;" in index and "<b>bold</b>" not in index
    entries = json.loads((out / "index.json").read_text())
    assert [e["status"] for e in entries if e["name"] in {r.name for r in results}].count("ok") == 1


def test_write_index_merges_and_escapes(tmp_path):
    (tmp_path / "a.html").write_text("a")
    write_index(
        tmp_path,
        [
            {
                "report": "a",
                "name": "a",
                "params": {},
                "status": "ok",
                "seconds": 1.0,
                "html": str(tmp_path / "a.html"),
            }
        ],
    )
    write_index(
        tmp_path,
        [
            {
                "report": "b",
                "name": "<i>b</i>",
                "params": {"run": "<x>"},
                "status": "failed",
                "seconds": 2.0,
                "html": None,
                "error": "<err>",
            }
        ],
    )
    index = (tmp_path / "index.html").read_text()
    assert 'href="a.html"' in index  # kept from the earlier batch
    assert "&lt;i&gt;b&lt;/i&gt;" in index and "&lt;err&gt;" in index and "<x>" not in index


def test_external_urls_detects_cdn_links():
    html = (
        '<script src="https://cdn.example/require.js"></script><a href="//x.org/a">'
        '<img src="data:image/png;base64,AAA"><a href="dynamics.html">'
    )
    assert external_urls(html) == ["https://cdn.example/require.js", "//x.org/a"]


def test_cli_reports_bad_parameter(nb_dir, store, tmp_path, capsys):
    from ckpt_toolkit.cli import main

    params = tmp_path / "p.yaml"
    params.write_text("tiny:\n  n: three\n")
    rc = main(
        [
            "report",
            "tiny",
            "--store",
            str(store),
            "--out",
            str(tmp_path / "o"),
            "--params",
            str(params),
            "--notebooks",
            str(nb_dir),
        ]
    )
    assert rc == 2
    assert "parameter 'n' must be int" in capsys.readouterr().err
    rc = main(["report", "tiny", "--notebooks", str(nb_dir), "--list-params"])
    assert rc == 0
    assert "n: int = 3  # number of squares" in capsys.readouterr().out


# -- second runs: unchanged reports are not executed again ---------------------------------------
def _store_with_rows(path: Path, n: int) -> Path:
    from ckpt_toolkit.store import ResultsStore

    rows = [
        {"checkpoint": f"r@{i}", "probe": "p", "task": "t", "metric": "m", "value": float(i)}
        for i in range(n)
    ]
    ResultsStore(path).upsert(rows)
    return path


def test_second_run_skips_unchanged_and_new_row_reruns(nb_dir, tmp_path, capsys):
    from ckpt_toolkit.reports import summary

    store = _store_with_rows(tmp_path / "rows.duckdb", 3)
    out = tmp_path / "out"
    kw = dict(notebooks=nb_dir, progress=False, params={"n": 2})
    (first,) = run_reports(["tiny"], store, out, **kw)
    assert first.status == "ok" and first.extra["inputs"]
    stamp = first.notebook.stat().st_mtime_ns, first.html.stat().st_mtime_ns
    (second,) = run_reports(["tiny"], store, out, **kw)
    assert second.status == "unchanged" and second.ok
    assert (second.notebook.stat().st_mtime_ns, second.html.stat().st_mtime_ns) == stamp
    assert "unchanged" in summary([second]) and "1/1 reports ok (1 unchanged" in summary([second])
    entry = json.loads((out / "index.json").read_text())[0]
    assert entry["status"] == "unchanged" and entry["seconds"] == first.seconds
    # other parameters, a new row, or --force: executed again
    (third,) = run_reports(["tiny"], store, out, notebooks=nb_dir, progress=False, params={"n": 3})
    assert third.status == "ok"
    _store_with_rows(store, 4)  # one new row
    (fourth,) = run_reports(["tiny"], store, out, **kw)
    assert fourth.status == "ok"
    assert run_reports(["tiny"], store, out, **kw)[0].status == "unchanged"
    assert run_reports(["tiny"], store, out, force=True, **kw)[0].status == "ok"
    fourth.html.unlink()  # a missing output is rendered again
    assert run_reports(["tiny"], store, out, **kw)[0].status == "ok"


def test_jobs_option_is_validated_before_running(nb_dir, store, tmp_path):
    with pytest.raises(ParameterError, match="--jobs must be a positive integer"):
        run_reports(["tiny"], store, tmp_path, notebooks=nb_dir, progress=False, jobs=0)
    assert not list(tmp_path.glob("*.ipynb"))


def test_side_by_side_notebooks_are_driven_from_this_process(store, tmp_path, monkeypatch):
    """--jobs 2: every kernel is a child of this process (a runner thread per notebook, no
    worker processes to start), with cores/jobs BLAS threads and --force's cache mode; the
    environment is restored afterwards."""
    import os

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(
        nbs / "env.ipynb",
        'store_path: str = "x.duckdb"  # store\nk: int = 0  # which copy\n',
        [
            "import os\nprint('ppid', os.getppid(), 'omp', os.environ.get('OMP_NUM_THREADS'),"
            " 'cache', os.environ.get('CKPT_ANALYSIS_CACHE'))"
        ],
    )
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("ckpt_toolkit.threads.usable_cores", lambda: 2)
    results = run_reports(
        ["env"], store, tmp_path / "out", grid={"k": [1, 2]}, notebooks=nbs, jobs=2,
        force=True, progress=False,
    )  # fmt: skip
    assert [r.status for r in results] == ["ok", "ok"]
    for r in results:
        text = "".join(
            o.get("text", "") for c in nbformat.read(r.notebook, as_version=4).cells
            for o in c.get("outputs", [])
        )  # fmt: skip
        assert f"ppid {os.getpid()} omp 1 cache refresh" in text
    assert "OMP_NUM_THREADS" not in os.environ


def test_ckpt_report_goes_without_the_iri_format_checker():
    """`ckpt report` blocks rfc3987_syntax (a second of CPU building a grammar at import);
    notebooks still validate."""
    import subprocess
    import sys

    code = (
        "from ckpt_toolkit.cli.report import skip_iri_format_checker\n"
        "skip_iri_format_checker()\n"
        "import sys, nbformat\nfrom jsonschema import FormatChecker\n"
        "nbformat.validate(nbformat.v4.new_notebook())\n"
        "print('iri' in FormatChecker.checkers, sys.modules['rfc3987_syntax'])"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["False", "None"]
