"""`bnkeras export` over every keras.applications model, as a user runs it.

For each application (full size, its default input size, untrained weights with
random BN statistics so that a wrong fold cannot hide): build it and save a
`.keras` file in a fresh process, run `bnkeras export FILE --formats ...` in
another, and read its report.json. Prints a markdown table: BN layers, folded,
kept as affine, the largest error of each format relative to the output's
magnitude (and the worst per-layer max rel), export time, peak memory of the export process (and its ratio to the
`.keras` size), and the exit code. Models run one at a time (the largest need
most of a 24 GB machine).

    .venv/bin/python benchmarks/export_zoo.py                       # all 40, ~2-3 hours on 2 cores
    .venv/bin/python benchmarks/export_zoo.py ResNet50 MobileNetV2  # some
    .venv/bin/python benchmarks/export_zoo.py --formats keras,onnx --batch-size 8
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    for path in (source, out):
        subprocess.run(["rm", "-rf", str(path)], check=False)
    return row


def print_row(row, formats):
    if "bn" not in row:
        print(
            f"| {row['model']} | - | - | - | - | {' | '.join('-' for _ in formats)} | - | - | "
            f"{row.get('exit', '-')}: {row['error'].splitlines()[-1][:120]} |",
            flush=True,
        )
        return
    errors = " | ".join(
        "-"
        if row["errors"].get(f) is None
        else f"{row['errors'][f]:.1e}" + ("*" if f in row["void"] else "")
        for f in formats
    )
    layers = "-" if row["layers"] is None else f"{row['layers']:.1e}"
    print(
        f"| {row['model']} | {row['params'] / 1e6:.1f}M | {row['bn']} | {row['folded']} | "
        f"{row['affine']} | {layers} | {errors} | {row['seconds']:.0f} | {row['peak_rss_mb'] / 1024:.1f} "
        f"({row['peak_rss_mb'] / row['size_mb']:.0f}x) | {row['exit']} |",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="application names (default: all 40)")
    parser.add_argument("--formats", default="keras,saved_model,onnx,litert,openvino")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    formats = args.formats.split(",")
    print(
        f"bnkeras export of keras.applications, --formats {args.formats} "
        f"--batch-size {args.batch_size}; error = max |format - original| / max |original|; "
        "per layer = the worst folded layer's max |folded - (conv -> BN)| / max |conv -> BN|; "
        "* = end to end could not decide (chaotic or constant output), the per-layer checks did\n"
    )
    print(
        f"| model | params | BN | folded | affine | per layer | {' | '.join(formats)} | export s | "
        "peak GB (x .keras) | exit |"
    )
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len(formats) + "---:|---:|---:|")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bnkeras-zoo-") as folder:
        for name in args.models or APPLICATIONS:
            row = export_one(name, args.formats, args.batch_size, Path(folder))
            rows.append(row)
            print_row(row, formats)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
