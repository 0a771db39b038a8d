"""The probe registry: declarations, metric directions, parameter validation before any load,
``ckpt probe --list``, and a probe added by declaration alone running through the sweep."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ckpt_toolkit.errors import CkptError, ParameterError
from ckpt_toolkit.probes import registry as reg


# -- declarations and directions -------------------------------------------------------------
def test_builtin_probes_are_declared_with_their_data_and_metrics():
    probes = reg.all_probes()
    assert list(probes)[:3] == ["ppl", "sc_ppl", "kshot"]
    assert {n: p.needs for n, p in probes.items() if n in reg.PROBE_ORDER} == {
        "ppl": "heldout",
        "sc_ppl": "heldout",
        "kshot": "tasks",
    }
    assert probes["ppl"].metrics == ("loss", "ppl", "bpb")
    assert probes["sc_ppl"].metrics == ("sc_loss", "sc_ppl")
    assert set(probes["kshot"].metrics) == {"acc", "acc_norm", "gold_logprob", "bpb", "exact_match"}
    assert probes["kshot"].uses_shots and not probes["ppl"].uses_shots
    assert probes["ppl"].defaults == {
        "window": None,
        "stride": None,
        "rolling": "sliding",
        "prefix_token": None,
    }
    assert probes["sc_ppl"].defaults == {
        "noise_density": 0.15,
        "mean_span": 3.0,
        "seed": 0,
        "window": None,
    }
    assert probes["kshot"].defaults == {"seed": 1234, "separator": "\n\n", "max_new_tokens": 32}


@pytest.mark.parametrize(
    "metric,higher,loss",
    [
        ("acc", True, False),
        ("acc_norm,none", True, False),  # lm-eval 0.4 "metric,filter" names
        ("exact_match", True, False),
        ("gold_logprob", True, False),
        ("ppl", False, True),
        ("sc_ppl", False, True),
        ("bpb", False, True),
        ("word_perplexity", False, True),
        ("bits_per_byte", False, True),
        ("ce_loss", False, True),
        # crows_pairs: |Δ log-likelihood| between stereotyped and anti-stereotyped sentences,
        # smaller = less biased (lm-eval declares higher_is_better: false)
        ("likelihood_difference", False, False),
        ("pct_stereotype", False, False),
        # not in the table: the documented name patterns
        ("eval/c4_en-validation/CrossEntropyLoss", False, True),
        ("lambada_ppl", False, True),
        ("inv_ppl", True, False),  # already oriented: never "invert it"
    ],
)
def test_metric_direction_table(metric, higher, loss):
    assert reg.higher_is_better(metric) is higher
    assert reg.is_loss_metric(metric) is loss


def test_unknown_metric_has_no_direction_and_perplexity_enters_inverted():
    assert reg.metric_info("pct_happy") is None
    assert reg.higher_is_better("pct_happy", default=True) is True
    assert reg.metric_info("ppl").orientation == "inverse"  # 1/PPL, as the pairwise paper
    assert reg.metric_info("loss").orientation == "negate"
    assert reg.metric_info("acc").orientation == "identity"


def test_every_declared_metric_has_a_direction():
    for probe in reg.all_probes().values():
        for m in probe.metrics:
            assert reg.higher_is_better(m) is not None, (probe.name, m)
    with pytest.raises(ParameterError, match="without a direction"):
        reg.Probe("bad", "x", "heldout", (), ("fluency",), run=lambda *a: [])


def test_taxonomy_reads_direction_from_the_registry():
    from ckpt_toolkit.analysis.taxonomy import load_taxonomy

    tax = load_taxonomy()
    assert tax.is_loss_metric("likelihood_difference")  # lower is better
    assert not tax.is_loss_metric("acc")
    assert set(reg.lower_is_better_metrics()) <= set(tax.lower_is_better)


# -- parameter validation --------------------------------------------------------------------
@pytest.mark.parametrize(
    "probe,params,match",
    [
        ("ppl", {"window": -5}, "--window must be >= 1"),
        ("ppl", {"window": 0}, "--window must be >= 1"),
        ("ppl", {"window": 64, "stride": 128}, r"--stride \(128\) must not exceed --window \(64\)"),
        ("ppl", {"stride": "abc"}, "--stride must be an integer"),
        ("ppl", {"strides": 3}, "unknown parameter 'strides'"),
        ("sc_ppl", {"noise_density": 1.0}, "sc_ppl.noise_density must be < 1"),
        ("sc_ppl", {"noise_density": 0}, "sc_ppl.noise_density must be > 0"),
        ("sc_ppl", {"mean_span": 0.5}, "sc_ppl.mean_span must be >= 1"),
        ("sc_ppl", {"window": 4}, "--window must be >= 8"),
        ("kshot", {"max_new_tokens": 0}, "kshot.max_new_tokens must be >= 1"),
        ("kshot", {"separator": 3}, "kshot.separator must be a string"),
        ("kshot", {"seed": 1.5}, "kshot.seed must be an integer"),
    ],
)
def test_probe_parameters_are_validated(probe, params, match):
    with pytest.raises(ParameterError, match=match):
        reg.get_probe(probe).validate(params)


def test_valid_parameters_are_converted():
    assert reg.get_probe("sc_ppl").validate({"seed": "3", "noise_density": "0.3"}) == {
        "noise_density": 0.3,
        "mean_span": 3.0,
        "seed": 3,
        "window": None,
    }
    assert reg.get_probe("ppl").validate({"window": 64, "stride": 64}) == {
        "window": 64,
        "stride": 64,
        "rolling": "sliding",
        "prefix_token": None,
    }


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"dtype": "float8"}, "--dtype must be one of"),
        ({"device": "tpu"}, "--device must be cpu, cuda, cuda:N, mps or auto"),
        ({"device": "cuda:x"}, "--device"),
        ({"batch_size": 0}, "--batch-size must be >= 1"),
        ({"limit": 0}, "--limit must be >= 1"),
    ],
)
def test_sweep_options_are_validated(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        reg.validate_sweep_options(**kwargs)


def test_sweep_options_accept_known_values():
    for device in ("cpu", "cuda", "cuda:1", "mps", "auto"):
        reg.validate_sweep_options(device=device)
    for dtype in ("float32", "bfloat16", "float16", "auto"):
        reg.validate_sweep_options(dtype=dtype)


def test_cli_options_map_onto_the_chosen_probes():
    got = reg.probe_parameters("ppl,sc_ppl", {"--window": 64, "--stride": 32}, ["sc_ppl.seed=4"])
    assert got == {"ppl": {"window": 64, "stride": 32}, "sc_ppl": {"window": 64, "seed": "4"}}
    assert reg.probe_parameters("kshot", {"--window": None}, ["kshot.separator=\\n"]) == {
        "kshot": {"separator": "\n"}
    }
    with pytest.raises(ParameterError, match="--stride applies to probe.s. ppl"):
        reg.probe_parameters("kshot,sc_ppl", {"--stride": 32}, [])
    with pytest.raises(ParameterError, match="expected PROBE.NAME=VALUE"):
        reg.probe_parameters("ppl", {}, ["window64"])
    with pytest.raises(ParameterError, match="--probes: unknown probe"):
        reg.probe_parameters("ppl,nope", {}, [])


# -- the CLI: errors before any checkpoint loads, and --list --------------------------------
@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if the sweep loads a checkpoint."""
    import ckpt_toolkit.probes.sweep as sweep

    def boom(*a, **k):
        raise AssertionError("a checkpoint was loaded before the options were checked")

    monkeypatch.setattr(sweep, "load_checkpoint", boom)


@pytest.mark.parametrize(
    "args,match",
    [
        (["--dtype", "float8"], "--dtype must be one of"),
        (["--device", "tpu"], "--device must be cpu, cuda, cuda:N, mps or auto; got 'tpu'"),
        (["--window", "-5"], "--window must be >= 1, got -5"),
        (["--window", "0"], "--window must be >= 1, got 0"),
        (["--window", "32", "--stride", "64"], r"--stride \(64\) must not exceed --window \(32\)"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--shots", "-1"], "--shots must be non-negative"),
        (["--param", "sc_ppl.noise_density=2"], "sc_ppl.noise_density must be < 1"),
        (["--probes", "kshot", "--window", "64"], "--window applies to probe.s. ppl, sc_ppl"),
        (["--probes", "ppl,nope"], "--probes: unknown probe"),
    ],
)
def test_cli_rejects_bad_options_before_loading(
    tiny_checkpoint, tmp_path, capsys, no_loading, args, match
):
    import re

    from ckpt_toolkit.cli import main

    store = tmp_path / "s.duckdb"
    held = tmp_path / "held"
    held.mkdir()
    (held / "wiki.txt").write_text("The capital of Avalon is Brill.\n")
    argv = ["probe", str(tiny_checkpoint), "--heldout", str(held), "-s", str(store), "-q"]
    assert main(argv + args) == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert not store.exists()  # nothing was opened or written either


def test_stride_above_the_models_own_window_is_an_error(tiny_checkpoint):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ckpt_toolkit.probes.specs import ProbeSpec

    model = AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint))
    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    assert model.config.max_position_embeddings == 128  # tests/helpers.py
    probe = reg.get_probe("ppl")
    spec = ProbeSpec("ppl", "d", params=probe.validate({"stride": 200}))
    with pytest.raises(CkptError, match=r"--stride \(200\) must not exceed the window.*128"):
        probe.run(model, tok, spec, ["some text"], 2)


def test_cli_list_prints_probes_parameters_and_directions():
    out = subprocess.run(
        [sys.executable, "-m", "ckpt_toolkit.cli", "probe", "--list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in (
        "ppl: perplexity",
        "sc_ppl: span-corruption perplexity",
        "kshot: k-shot",
        "window: tokens per window (default: the model's) [int, default none, >= 1, option --window]",
        "noise_density: share of tokens dropped into spans [float, default 0.15, > 0, < 1]",
        "seed: seed of the k-shot draw from the train split [int, default 1234, >= 0]",
        "ppl (lower is better, loss series)",
        "sc_ppl (lower is better, loss series)",
        "acc (higher is better)",
        "exact_match (higher is better)",
        "--device: cpu, cuda, cuda:N, mps or auto",
    ):
        assert line in out, line


# -- a new probe is one declaration ------------------------------------------------------------
def test_a_registered_probe_runs_through_the_sweep(tiny_checkpoint, tmp_path):
    from ckpt_toolkit.probes import run_probes
    from ckpt_toolkit.store import ResultsStore

    def count_rows(model, tokenizer, spec, texts, batch_size):
        words = [len(t.split()) for t in texts]
        return [
            {
                "metric": "nll",
                "value": float(sum(words)) * spec.params["scale"],
                "stderr": None,
                "n": len(texts),
                "provenance": {"words": words},
            }
        ]

    toy = reg.Probe(
        name="toy_words",
        description="words in the held-out text (a test probe)",
        needs="heldout",
        params=(reg.Param("scale", float, 1.0, "multiplier", minimum=0.0),),
        metrics=("nll",),
        run=count_rows,
        capability="toy",
    )
    reg.register_probe(toy)
    try:
        held = tmp_path / "held"
        held.mkdir()
        (held / "a.jsonl").write_text(
            json.dumps({"text": "one two three"}) + "\n" + json.dumps({"text": "four five"}) + "\n"
        )
        store = tmp_path / "t.duckdb"
        report = run_probes(
            str(tiny_checkpoint),
            store,
            probes="toy_words",
            heldout=held,
            probe_params={"toy_words": {"scale": 2}},
            progress=False,
        )
        assert report.ok and report.rows_written == 1
        row = ResultsStore(store).to_pandas().iloc[0]
        assert (row.probe, row.task, row.metric, row.capability) == ("toy_words", "a", "nll", "toy")
        assert row.value == 10.0 and row.n == 2  # (3 + 2 words) x scale 2
        assert "toy_words" in reg.format_probe_list()
        with pytest.raises(ParameterError, match="toy_words.scale must be >= 0"):
            run_probes(
                str(tiny_checkpoint),
                store,
                probes="toy_words",
                heldout=held,
                probe_params={"toy_words": {"scale": -1}},
                progress=False,
            )
    finally:
        reg._PROBES.pop("toy_words", None)


def test_taxonomy_yaml_may_add_but_not_flip_a_direction(tmp_path):
    from ckpt_toolkit.analysis.taxonomy import load_taxonomy

    extra = tmp_path / "tax.yaml"
    extra.write_text("lower_is_better: [my_error_rate]\n")
    tax = load_taxonomy(extra)
    assert tax.is_loss_metric("my_error_rate") and not load_taxonomy().is_loss_metric(
        "my_error_rate"
    )
    extra.write_text("lower_is_better: [acc]\n")
    with pytest.raises(ParameterError, match=r"tax.yaml: lower_is_better lists 'acc'"):
        load_taxonomy(extra)


def test_spec_hashes_stay_put_except_for_the_changed_sc_ppl():
    from ckpt_toolkit.probes.specs import ProbeSpec
    from ckpt_toolkit.specs import spec_hash

    def fields(probe: str, params: dict) -> dict:
        return {
            "probe": probe,
            "task": "d",
            "shots": 0,
            "data_hash": "h",
            "limit": None,
            "dtype": "float32",
            "params": params,
            "version": 1,
        }

    kshot = {"seed": 1234, "separator": "\n\n", "max_new_tokens": 32}
    assert ProbeSpec("kshot", "d", 0, "h", params=kshot).hash == spec_hash(fields("kshot", kshot))
    sc = {"noise_density": 0.15, "mean_span": 3.0, "seed": 0, "window": None}
    new = ProbeSpec("sc_ppl", "d", 0, "h", params=sc).hash
    assert new == spec_hash({**fields("sc_ppl", sc), "probe_version": 2})
    assert new != spec_hash(fields("sc_ppl", sc))  # rows of the old corruption are recomputed
