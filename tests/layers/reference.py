"""NumPy (float64) reference implementations of the three layers."""

import numpy as np


def _bshape(x, axis):
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    return shape


def _axes(x, axis):
    return tuple(a for a in range(x.ndim) if a != axis % x.ndim)


def normalize(x, mean, var, gamma, beta, eps, axis):
    s = _bshape(x, axis)
    return (x - mean.reshape(s) if mean.ndim == 1 else x - mean) / np.sqrt(
        (var.reshape(s) if var.ndim == 1 else var) + eps
    ) * gamma.reshape(s) + beta.reshape(s)


def bn_train(x, state, eps, momentum, axis=-1):
    x = x.astype(np.float64)
    mean, var = x.mean(_axes(x, axis)), x.var(_axes(x, axis))
    y = normalize(x, mean, var, state["gamma"], state["beta"], eps, axis)
    state["moving_mean"] = momentum * state["moving_mean"] + (1 - momentum) * mean
    state["moving_variance"] = momentum * state["moving_variance"] + (1 - momentum) * var
    return y


def bn_infer(x, state, eps, axis=-1):
    return normalize(
        x.astype(np.float64),
        state["moving_mean"],
        state["moving_variance"],
        state["gamma"],
        state["beta"],
        eps,
        axis,
    )


def renorm_train(x, state, eps, momentum, renorm_momentum, rmax, dmax, axis=-1):
    """One step of Ioffe (2017), Algorithm 1, with Keras's moving-stddev update."""
    x = x.astype(np.float64)
    mean, var = x.mean(_axes(x, axis)), x.var(_axes(x, axis))
    std = np.sqrt(var + eps)
    sigma = np.maximum(state["renorm_stddev"], np.sqrt(eps))
    r = np.clip(std / sigma, 1 / rmax, rmax)
    d = np.clip((mean - state["renorm_mean"]) / sigma, -dmax, dmax)
    s = _bshape(x, axis)
    xhat = (x - mean.reshape(s)) / std.reshape(s)
    y = state["gamma"].reshape(s) * (xhat * r.reshape(s) + d.reshape(s)) + state["beta"].reshape(s)
    a = renorm_momentum
    state["renorm_mean"] = a * state["renorm_mean"] + (1 - a) * mean
    state["renorm_stddev"] = a * state["renorm_stddev"] + (1 - a) * std
    state["moving_mean"] = momentum * state["moving_mean"] + (1 - momentum) * mean
    # Keras's moving_stddev starts at sqrt(moving_variance) (no epsilon).
    moving_std = state.setdefault("moving_stddev", np.sqrt(state["moving_variance"]))
    new_std = momentum * moving_std + (1 - momentum) * std
    state["moving_stddev"] = new_std
    state["moving_variance"] = np.maximum(new_std**2 - eps, 0.0)
    return y


def ghost_train(x, state, eps, momentum, virtual_batch_size, axis=-1):
    """Contiguous ghost batches; the last one holds the remainder."""
    x = x.astype(np.float64)
    axes = _axes(x, axis)
    outputs, means, variances, sizes = [], [], [], []
    for start in range(0, x.shape[0], virtual_batch_size):
        group = x[start : start + virtual_batch_size]
        mean, var = group.mean(axes), group.var(axes)
        outputs.append(normalize(group, mean, var, state["gamma"], state["beta"], eps, axis))
        means.append(mean)
        variances.append(var)
        sizes.append(group.shape[0])
    w = np.asarray(sizes, np.float64)[:, None] / sum(sizes)
    mean = (np.stack(means) * w).sum(0)
    var = (np.stack(variances) * w).sum(0)
    state["moving_mean"] = momentum * state["moving_mean"] + (1 - momentum) * mean
    state["moving_variance"] = momentum * state["moving_variance"] + (1 - momentum) * var
    return np.concatenate(outputs)


def layer_state(layer):
    return {
        w.name: np.asarray(w, np.float64) for w in layer.weights if not w.dtype.startswith("int")
    }
