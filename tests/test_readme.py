"""The README: under 10 KB, the two commands first (the ones `.ci/run` and the end-to-end
test stand for), the same commands and examples as the docs' home page, and its Python
examples run as written."""

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
INSTALL_AND_RUN = (
    'python3.11 -m venv .venv && .venv/bin/pip install -e ".[cpu]" && '
    ".venv/bin/bnkeras train --config demo --workdir runs/demo && "
    ".venv/bin/bnkeras export runs/demo --out runs/demo/export --overwrite"
)
INSTALL_AND_TEST = (
    'python3.11 -m venv .venv && .venv/bin/pip install -e ".[cpu,test]" && '
    ".venv/bin/python -m pytest -n 2"
)


def _blocks(language):
    return re.findall(rf"^```{language}\n(.*?)^```$", README, flags=re.MULTILINE | re.DOTALL)


def test_ci_runs_the_readmes_test_command():
    """`.ci/run` runs the README's test command; the worker count is in that command,
    not in pytest's addopts (so that `pytest tests/x.py::test -x --pdb` runs in-process)."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    # `step NAME COMMAND` runs COMMAND and prints its time
    commands = [re.sub(r"^step \S+ ", "", line) for line in ci]
    assert INSTALL_AND_TEST.rsplit(" && ", 1)[1] in commands
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (addopts,) = re.findall(r"^addopts = (.*)$", pyproject, flags=re.MULTILINE)
    assert "-n" not in addopts.strip('"').split()


def test_readme_is_short():
    assert len(README.encode("utf-8")) <= 10 * 1024


def test_readme_starts_with_the_two_commands():
    title, first_block = README.split("```bash\n", 1)
    assert title.strip() == "# bnkeras"
    assert first_block.split("```", 1)[0].splitlines() == [INSTALL_AND_RUN, INSTALL_AND_TEST]


def test_the_docs_home_page_shows_the_readmes_commands_and_examples():
    home = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for block in [*_blocks("bash")[:1], *_blocks("python")]:
        assert f"\n{block}```" in home, block


def test_readme_shows_every_claims_verdict_from_the_committed_results():
    """The README's science table is `report.readme_table` of docs/results: every claim of
    every experiment with its verdict, as results.json holds it (no headline from one)."""
    import json

    from bnkeras.experiments import EXPERIMENTS, report

    records = {
        name: json.loads((ROOT / "docs" / "results" / name / "results.json").read_text())
        for name in EXPERIMENTS
    }
    table = report.readme_table(records)
    assert table in README
    rows = table.splitlines()[2:]
    assert len(rows) == len(EXPERIMENTS)
    for row, record in zip(rows, records.values(), strict=True):
        assert row.count("**") == 2 * len(record["claims"]) >= 2


def test_readme_links_to_existing_files():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if "://" not in target:
            assert (ROOT / target).exists(), target


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path, monkeypatch):
    """The layer example builds and trains a step; the conversion example converts a
    ResNet50; the export example folds, verifies and exports the layer example's model
    (given a batch and the model saved as model.keras)."""
    layers, convert, _, export = _blocks("python")  # the JAX one: test_packaging.py
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(layers, "README layers example", "exec"), namespace)  # noqa: S102
    converted = {**namespace}
    exec(compile(convert, "README conversion example", "exec"), converted)  # noqa: S102
    assert converted["fast"].count_params() == converted["model"].count_params()
    model = namespace["model"]
    batch = np.random.default_rng(0).uniform(0, 1, (32, 32, 32, 3)).astype("float32")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(batch, np.arange(32) % 10, batch_size=32, epochs=1, verbose=0)
    model.save("model.keras")
    namespace["batch"] = batch
    exec(compile(export, "README export example", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "exported" / "report.json").is_file()


def test_the_readmes_jax_example_is_the_backends_pages():
    """The backends page's example runs on JAX without TensorFlow (tests/test_packaging.py);
    the README shows the same code."""
    page = (ROOT / "docs" / "backends.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```python\n(.*?)```", page, re.S)
    assert _blocks("python")[2] == example


def test_the_export_headline_is_the_count_export_zoo_wrote():
    """The README's and the docs home's export row quote docs/benchmarks/export_zoo.md."""
    zoo = (ROOT / "docs" / "benchmarks" / "export_zoo.md").read_text(encoding="utf-8")
    passed, total = re.search(r": (\d+) of (\d+) exported and verified", zoo).groups()
    for page in (README, (ROOT / "docs" / "index.md").read_text(encoding="utf-8")):
        (row,) = [
            line for line in page.splitlines() if "keras.applications models exported" in line
        ]
        assert f"| {passed} of {total} |" in row, row


def test_the_convert_headline_is_the_range_bench_convert_wrote():
    """The README's converted-model row: each model's lowest and highest ratio over the
    sizes and runs of docs/benchmarks/convert.md."""
    table = (ROOT / "docs" / "benchmarks" / "convert.md").read_text(encoding="utf-8")
    ratios = {}
    for model, low, high in re.findall(
        r"^\| (\w+) \| \d+ \| \w+ \| [\d.]+ \| [\d.]+ \| ([\d.]+)-([\d.]+)x \|$",
        table,
        re.MULTILINE,
    ):
        ratios.setdefault(model, []).extend([low, high])
    (row,) = [line for line in README.splitlines() if "converted to bnkeras BN vs Keras BN" in line]
    assert ratios
    for model, values in ratios.items():
        low, high = min(values, key=float), max(values, key=float)
        assert f"{model} {low}-{high}x" in row, (model, low, high, row)
