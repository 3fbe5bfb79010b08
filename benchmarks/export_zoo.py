"""`bnkeras export` over every keras.applications model, as a user runs it.

For each application (full size, its default input size, untrained weights with
random BN statistics so that a wrong fold cannot hide): build it and save a
`.keras` file in a fresh process, run `bnkeras export FILE --formats ...` in
another, and read its report.json. Writes a markdown table (to stdout, row by row, and to
`--out`, default docs/benchmarks/export_zoo.md, which the docs include, through
benchmarks/_common.py: machine, versions, date, load and the command line): BN layers, folded,
kept as affine, the largest error of each format relative to the output's
magnitude (and the worst per-layer max rel), export time, peak memory of the export process (and its ratio to the
`.keras` size), and the exit code. Models run one at a time (the largest need
most of a 24 GB machine).

    python benchmarks/export_zoo.py                       # all 40, ~2-3 hours on 2 cores
    python benchmarks/export_zoo.py ResNet50 MobileNetV2  # some
    python benchmarks/export_zoo.py MobileNetV3Small --formats keras,onnx --out /tmp/zoo.md  # smoke
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Report, add_output_arguments

APPLICATIONS = [
    "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtSmall", "ConvNeXtTiny", "ConvNeXtXLarge",
    "DenseNet121", "DenseNet169", "DenseNet201",
    "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3",
    "EfficientNetB4", "EfficientNetB5", "EfficientNetB6", "EfficientNetB7",
    "EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3",
    "EfficientNetV2L", "EfficientNetV2M", "EfficientNetV2S",
    "InceptionResNetV2", "InceptionV3",
    "MobileNet", "MobileNetV2", "MobileNetV3Large", "MobileNetV3Small",
    "NASNetLarge", "NASNetMobile",
    "ResNet101", "ResNet152", "ResNet50", "ResNet101V2", "ResNet152V2", "ResNet50V2",
    "VGG16", "VGG19", "Xception",
]  # fmt: skip

# Builds one application with random BN statistics and saves it (run in a child process).
BUILD = """
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, numpy as np
name, path = sys.argv[1], sys.argv[2]
keras.utils.set_random_seed(0)  # the same weights on every run: a rerun exports the same model
model = getattr(keras.applications, name)(weights=None)
rng = np.random.default_rng(0)
for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        shape = layer.moving_mean.shape
        layer.moving_mean.assign(rng.normal(0.0, 0.5, shape))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, shape))
        if layer.scale:
            layer.gamma.assign(rng.uniform(0.5, 1.5, shape))
        if layer.center:
            layer.beta.assign(rng.normal(0.0, 0.2, shape))
model.save(path)
print(model.count_params())
"""


def export_one(name, formats, batch_size, folder):
    source = folder / f"{name}.keras"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    built = subprocess.run(
        [sys.executable, "-c", BUILD, name, str(source)], env=env, capture_output=True, text=True
    )
    if built.returncode:
        return {"model": name, "error": f"build failed: {built.stderr.strip()[-300:]}"}
    out = folder / f"{name}-export"
    started = time.perf_counter()
    command = [sys.executable, "-m", "bnkeras", "export", str(source), "--out", str(out)]
    command += ["--formats", formats, "--batch-size", str(batch_size)]
    run = subprocess.run(command, env=env, capture_output=True, text=True)
    row = {
        "model": name,
        "params": int(built.stdout.split()[-1]),
        "size_mb": source.stat().st_size / 2**20,
        "exit": run.returncode,
        "wall_s": time.perf_counter() - started,
    }
    report_path = out / "report.json"
    if not report_path.exists():  # refused or failed before the end: say why
        row["error"] = (run.stderr.strip() or run.stdout.strip())[-300:]
        return row
    report = json.loads(report_path.read_text())
    fold, verification = report["fold"], report["verification"]
    row.update(
        bn=fold["bn_before"],
        folded=fold["folded"],
        affine=fold["refused"],
        peak_rss_mb=report["peak_rss_mb"],
        seconds=report["seconds"],
        errors={
            check["format"]: max(
                (o["max_abs"] / max(o["peak"], 1e-30) for o in check["outputs"]), default=None
            )
            for check in verification["formats"]
        },
        # Formats whose end-to-end check could not decide (chaotic or constant outputs;
        # the per-layer checks decided): marked with * in the table.
        void=sorted(
            check["format"]
            for check in verification["formats"]
            if any(o["note"] for o in check["outputs"])
        ),
        layers=max(
            (c["max_abs"] / max(c["peak"], 1e-30) for c in verification["layers"]), default=None
        ),
        passed=verification["passed"],
    )
    if run.returncode:  # a verdict or a failure after the report: the command's last line
        lines = (run.stderr.strip() or run.stdout.strip()).splitlines()
        row["why"] = lines[-1][:300] if lines else ""
    for path in (source, out):
        subprocess.run(["rm", "-rf", str(path)], check=False)
    return row


def table_row(row, formats):
    if "bn" not in row:
        return (
            f"| {row['model']} | - | - | - | - | - | {' | '.join('-' for _ in formats)} | - | - | "
            f"{row.get('exit', '-')}: {row['error'].splitlines()[-1][:120]} |"
        )
    errors = " | ".join(
        "-"
        if row["errors"].get(f) is None
        else f"{row['errors'][f]:.1e}" + ("*" if f in row["void"] else "")
        for f in formats
    )
    layers = "-" if row["layers"] is None else f"{row['layers']:.1e}"
    return (
        f"| {row['model']} | {row['params'] / 1e6:.1f}M | {row['bn']} | {row['folded']} | "
        f"{row['affine']} | {layers} | {errors} | {row['seconds']:.0f} | {row['peak_rss_mb'] / 1024:.1f} "
        f"({row['peak_rss_mb'] / row['size_mb']:.0f}x) | {row['exit']} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="application names (default: all 40)")
    parser.add_argument("--formats", default="keras,saved_model,onnx,litert,openvino")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    add_output_arguments(parser, "export_zoo", runs=False)
    args = parser.parse_args()
    report = Report(
        args.out,
        packages=(
            "tensorflow-cpu",
            "keras",
            "tf2onnx",
            "onnxruntime",
            "ai-edge-litert",
            "openvino",
        ),
    )
    formats = args.formats.split(",")
    lines = [
        f"| model | params | BN | folded | affine | per layer | {' | '.join(formats)} | export s | "
        "peak GB (x .keras) | exit |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(formats) + "---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bnkeras-zoo-") as folder:
        for name in args.models or APPLICATIONS:
            row = export_one(name, args.formats, args.batch_size, Path(folder))
            rows.append(row)
            lines.append(table_row(row, formats))
            print(lines[-1], flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    passed = sum(1 for row in rows if row.get("passed") and row.get("exit") == 0)
    why = [f"- {row['model']} (exit {row['exit']}): {row['why']}" for row in rows if "why" in row]
    if why:
        lines += ["", "Exits other than 0, with the command's last line:", "", *why]
    report.write(
        f"`bnkeras export` of {len(rows)} keras.applications models (--formats {args.formats} "
        f"--batch-size {args.batch_size}), each in a fresh process: {passed} of {len(rows)} "
        "exported and verified. Error = max \\|format - original\\| / max \\|original\\| on "
        "the logits; per layer = the worst folded layer's max \\|folded - (conv -> BN)\\| / max "
        "\\|conv -> BN\\|; `*` = end to end could not decide (chaotic or constant output), the "
        "per-layer checks did; export s and peak memory are the export process's "
        "(`report.json` `seconds`, `peak_rss_mb`), with the peak's ratio to the `.keras` file.",
        "\n".join(lines),
    )


if __name__ == "__main__":
    main()
