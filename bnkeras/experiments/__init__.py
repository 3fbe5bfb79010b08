"""`bnkeras reproduce`: classic batch-normalization experiments at CPU scale.

One module per experiment (fig1, lr, renorm, ghost, landscape, precise_bn) over
shared helpers: `data` (MNIST-1D and the embedded shapes as arrays), `models`
(the small networks, norm layer injected), `training` (a plain SGD loop),
`probes` (measurements taken during training), `stats` (Welch's t and the
verdict), `report` (summary.md and figures) and `runner` (seeds, resume and the
work directory's results.json). Importing this package does not import
TensorFlow; `runner.reproduce` does.
"""

from bnkeras.errors import Error

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
