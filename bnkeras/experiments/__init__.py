"""`bnkeras reproduce`: classic batch-normalization experiments at CPU scale.

One module per experiment (fig1, lr, renorm, ghost, landscape, precise_bn) over
shared helpers: `data` (MNIST-1D and the embedded shapes as arrays), `models`
(the small networks, norm layer injected), `training` (a plain SGD loop),
`probes` (measurements taken during training), `protocol` (claims, comparisons
and preconditions), `stats` (effect sizes, intervals, Holm, verdicts),
`report` (summary.md and figures) and `runner` (seeds, resume and the work
directory's results.json). Importing this package does not import TensorFlow;
`runner.reproduce` does.

An experiment module defines `NAME`, `CLAIM` (the paper's claim, as text),
`PROTOCOL` (a `protocol.Protocol`, fixed before the runs), `FIGURES`,
`DEFAULT` and `QUICK` (settings), `setup_text(settings)`,
`run_seed(seed, settings)` (returns `metrics`, one number per name, and
`curves`), `result_text(record)` and `plot(record, workdir)` (returns the
figure files it wrote).
"""

from bnkeras.errors import Error

# seeds of a default run: enough for a 95% interval to bound an effect of ~1 seed sd
DEFAULT_SEEDS = 10

# command-line name -> module name
EXPERIMENTS = {
    "fig1": "fig1",
    "lr": "lr",
    "renorm": "renorm",
    "ghost": "ghost",
    "landscape": "landscape",
    "precise-bn": "precise_bn",
}


class ReproduceError(Error, ValueError):
    """Bad input to `bnkeras reproduce` (the CLI prints it as one line)."""
