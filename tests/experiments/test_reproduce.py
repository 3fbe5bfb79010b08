import json
import logging
import math
import shutil

import pytest

from bnkeras import cli
from bnkeras.experiments import EXPERIMENTS, ReproduceError, report, runner
from tests.conftest import built_once

RECORD_FIELDS = {
    "format",
    "experiment",
    "claim",
    "setup",
    "settings",
    "quick",
    "versions",
    "machine",
    "protocol",
    "seeds",
    "metrics",
    "claims",
    "verdicts",
    "result",
    "files",
}
CLAIM_FIELDS = {
    "name",
    "statement",
    "metric",
    "comparison",
    "test",
    "direction",
    "margin",
    "n_a",
    "n_b",
    "measurable",
    "preconditions",
    "verdict",
    "verdict_text",
}


@pytest.fixture(scope="session")
def all_quick(tmp_path_factory):
    """`bnkeras reproduce all --quick` once a session: every experiment in workdir/NAME
    (only read: tests that run on an experiment take a copy with `quick_run`)."""
    logger = logging.getLogger("bnkeras")
    handlers, level = list(logger.handlers), logger.level
    with built_once(tmp_path_factory, "science") as (workdir, build):
        if build:
            try:  # the CLI shows progress through the `bnkeras` logger
                assert cli.main(["reproduce", "all", "--workdir", str(workdir), "--quick"]) == 0
            finally:
                logger.handlers[:] = handlers
                logger.setLevel(level)
    return workdir


@pytest.fixture(params=list(EXPERIMENTS))
def quick_run(request, all_quick, tmp_path):
    """(name, a private copy of the experiment's quick results)."""
    workdir = tmp_path / request.param
    shutil.copytree(all_quick / request.param, workdir)
    return request.param, workdir


def _finite_numbers(value):
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_numbers(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def test_quick_run_writes_documented_files(quick_run):
    name, workdir = quick_run
    record = json.loads((workdir / "results.json").read_text())
    assert set(record) >= RECORD_FIELDS
    assert record["experiment"] == name and record["quick"] is True
    assert list(record["seeds"]) == ["0"]
    seed = record["seeds"]["0"]
    assert {"metrics", "curves", "wall_seconds", "load"} <= set(seed)
    assert _finite_numbers(record)  # JSON has no NaN; diverged values are null
    for metric in record["metrics"].values():
        assert set(metric) == {"per_seed", "mean", "sd"} and len(metric["per_seed"]) == 1
    assert [c["name"] for c in record["claims"]] == [
        c["name"] for c in record["protocol"]["claims"]
    ]
    assert record["verdicts"] == {c["name"]: c["verdict"] for c in record["claims"]}
    for claim in record["claims"]:
        assert set(claim) >= CLAIM_FIELDS
        # one seed: no interval, so no claim is supported or contradicted
        assert claim["verdict"] in ("inconclusive", "precondition not met"), claim
        assert claim["verdict_text"].startswith(claim["verdict"])
    accuracies = [v["mean"] for k, v in record["metrics"].items() if "accuracy" in k]
    assert accuracies and all(0.0 <= a <= 1.0 for a in accuracies)
    for file in record["files"]:
        assert (workdir / file).stat().st_size > 0
    assert any(f.endswith(".png") for f in record["files"])
    # summary.md is written from this very record (every claim's verdict, every metric's row)
    summary = (workdir / "summary.md").read_text()
    assert summary.startswith(f"# `bnkeras reproduce {name}`")
    assert summary == report.summary_markdown(record)
    for metric in record["metrics"]:
        assert f"| {metric} | " in summary, metric
    for claim in record["claims"]:
        assert f"| **{claim['name']}**: " in summary and f"**{claim['verdict']}**" in summary
    assert record["protocol"]["limitations"] in summary


def test_rerun_skips_completed_seeds(quick_run, caplog):
    name, workdir = quick_run
    before = json.loads((workdir / "results.json").read_text())["seeds"]
    with caplog.at_level(logging.INFO, logger="bnkeras"):
        runner.reproduce(name, workdir, seeds=1, quick=True)
    assert f"{name}: seed 0 already done" in caplog.text
    assert "step" not in caplog.text  # no training happened
    assert json.loads((workdir / "results.json").read_text())["seeds"] == before


def test_all_writes_one_row_per_experiment(all_quick):
    text = (all_quick / "summary.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    for name in EXPERIMENTS:
        record = json.loads((all_quick / name / "results.json").read_text())
        claims = [row for row in rows if row.startswith(f"| [{name}]({name}/summary.md) |")]
        # one row per claim, none left out: no headline from a single comparison
        assert len(claims) == len(record["claims"]) >= 1
        for row, claim in zip(claims, record["claims"], strict=True):
            assert f"**{claim['name']}**" in row and f"| {claim['verdict']} |" in row


def test_refuses_results_of_other_settings(quick_run):
    name, workdir = quick_run
    text = (workdir / "results.json").read_text()
    with pytest.raises(ReproduceError, match="another experiment or settings"):
        runner.reproduce(name, workdir, seeds=1, quick=False)
    assert (workdir / "results.json").read_text() == text


def test_never_overwrites_foreign_files(tmp_path):
    (tmp_path / "summary.md").write_text("mine")
    with pytest.raises(ReproduceError, match="summary.md exists and was not written"):
        runner.reproduce("fig1", tmp_path, quick=True)
    assert (tmp_path / "summary.md").read_text() == "mine"
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.json").write_text('{"some": "file"}')
    with pytest.raises(ReproduceError, match="not written by `bnkeras reproduce`"):
        runner.reproduce("lr", other, quick=True)
    assert (other / "results.json").read_text() == '{"some": "file"}'
    with pytest.raises(ReproduceError, match="not written by `bnkeras reproduce all`"):
        runner.reproduce_all(tmp_path, quick=True)
    assert (tmp_path / "summary.md").read_text() == "mine"


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert cli.main(["reproduce", "fig1", "--workdir", str(afile), "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"Received: workdir='{afile}'" in err
    assert cli.main(["reproduce", "lr", "--workdir", str(tmp_path / "w"), "--seeds", "0"]) == 2
    assert "Received: seeds=0" in capsys.readouterr().err
    assert cli.main(["reproduce", "fig2", "--workdir", str(tmp_path)]) == 2  # argparse's usage


def test_resume_with_a_diverged_seed(all_quick, tmp_path):
    # A diverged run stores null (JSON has no NaN); resuming must still summarize.
    workdir = tmp_path / "lr"
    shutil.copytree(all_quick / "lr", workdir)
    record = json.loads((workdir / "results.json").read_text())
    record["seeds"]["0"]["metrics"]["accuracy_none_best"] = None
    (workdir / "results.json").write_text(json.dumps(record))
    runner.reproduce("lr", workdir, seeds=1, quick=True)
    record = json.loads((workdir / "results.json").read_text())
    assert record["metrics"]["accuracy_none_best"] == {"per_seed": [None], "mean": None, "sd": None}
    claims = [c for c in record["claims"] if "accuracy_none_best" in c["comparison"]]
    assert claims and all(c["verdict"] != "supported" for c in claims)
    assert "nan" in record["result"]


def test_refuses_results_of_the_older_format(tmp_path):
    # Format 1 (3 seeds, one verdict per experiment) was measured under no protocol: its seeds
    # are kept, never mixed into a run of today's protocols.
    old = {"format": "bnkeras-reproduce/1", "experiment": "fig1", "seeds": {"0": {}}}
    (tmp_path / "results.json").write_text(json.dumps(old))
    with pytest.raises(ReproduceError, match="older `bnkeras reproduce`.*another --workdir"):
        runner.reproduce("fig1", tmp_path, quick=True)
    assert json.loads((tmp_path / "results.json").read_text()) == old
