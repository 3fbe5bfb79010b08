"""Bad config input: `bnkeras train` exits 2 with one line naming the key and the value,
before any data is read, and leaves the user's files alone."""

import re

import pytest

from bnkeras.cli import main
from tests.conftest import tree_hashes


def _write(path, data):
    path.write_bytes(data)
    return str(path)


CASES = [
    # (id, extra argv made from tmp_path, regex the one line must match)
    (
        "non-utf8-yaml",
        lambda tmp: ["--config", _write(tmp / "bad.yaml", b"train: {epochs: 2}\n# caf\xe9\n")],
        r"bad.yaml is not UTF-8 text \(byte 0xe9 at offset 24\): save it as UTF-8",
    ),
    (
        "yaml-path-is-a-directory",
        lambda tmp: ["--config", str(tmp)],
        r"Config file .* is a directory: give the path of a YAML file",
    ),
    (
        "virtual-batch-0",
        lambda tmp: ["--set", "norm.virtual_batch_size=0"],
        r"norm.virtual_batch_size must be an integer in \[1, 2147483647\]. Received: norm.virtual_batch_size=0$",
    ),
    (
        "min-scale-above-1",
        lambda tmp: ["--set", "data.min_scale=1.5"],
        r"data.min_scale must be a finite number in \(0, 1\]. Received: data.min_scale=1.5$",
    ),
    (
        "crop-fraction-0",
        lambda tmp: ["--set", "data.crop_fraction=0"],
        r"data.crop_fraction must be a finite number in \(0, 1\]. Received: data.crop_fraction=0$",
    ),
    (
        "shuffle-buffer-0",
        lambda tmp: ["--set", "data.shuffle_buffer=0"],
        r"data.shuffle_buffer must be an integer in \[1, 2147483647\]. Received: data.shuffle_buffer=0$",
    ),
    (
        "image-size-0",
        lambda tmp: ["--set", "data.image_size=0"],
        r"data.image_size must be an integer in \[1, 16384\]. Received: data.image_size=0$",
    ),
    (
        "mean-wrong-length",
        lambda tmp: ["--set", "data.mean=[0.5, 0.5]"],
        r"data.mean must be a list of 3 numbers.*Received: data.mean=\[0.5, 0.5\]$",
    ),
    (
        "std-wrong-length",
        lambda tmp: ["--set", "data.std=[0.2, 0.2, 0.2, 0.2]"],
        r"data.std must be a list of 3 numbers.*Received: data.std=\[0.2, 0.2, 0.2, 0.2\]$",
    ),
    (
        "std-zero",
        lambda tmp: ["--set", "data.std=[0.2, 0, 0.2]"],
        r"data.std must be .* > 0. Received: data.std=\[0.2, 0, 0.2\]$",
    ),
    (
        "lr-nan",
        lambda tmp: ["--lr", "nan"],
        r"train.lr must be a finite number > 0. Received: train.lr=nan$",
    ),
    (
        "lr-inf",
        lambda tmp: ["--lr", "inf"],
        r"train.lr must be a finite number > 0. Received: train.lr=inf$",
    ),
    (
        "negative-warmup",
        lambda tmp: ["--set", "train.warmup_epochs=-1"],
        r"train.warmup_epochs must be an integer in \[0, 500000\]. Received: train.warmup_epochs=-1$",
    ),
    (
        "eval-split-int",
        lambda tmp: ["--set", "data.eval_split=5"],
        r"data.eval_split must be a non-empty string or null. Received: data.eval_split=5$",
    ),
    (
        "bad-mixed-precision",
        lambda tmp: ["--set", "train.mixed_precision=fp8"],
        r"valid values are false, float16, bfloat16. Received: train.mixed_precision='fp8'$",
    ),
]


@pytest.mark.parametrize("argv,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_is_one_line_exit_2_and_touches_nothing(tmp_path, capsys, argv, message):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("the user's file")
    extra = argv(inputs)
    before = tree_hashes(tmp_path)
    code = main(["train", "--workdir", str(run), *extra])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("bnkeras train: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert tree_hashes(tmp_path) == before
