"""A plain SGD training loop for the experiments, with evaluations and probes on the way.

The experiments need what `keras.Model.fit` hides: the exact batches (e.g.
non-i.i.d. ones), measurements between steps, and runs that diverge to NaN
recorded rather than stopped with an error.
"""

import logging
import math

import keras
import numpy as np
import tensorflow as tf

from bnkeras.experiments.data import Data

logger = logging.getLogger(__name__)


def shuffled_batches(num_examples, batch_size, rng):
    """Endless batches of indices, a new permutation each epoch (last partial batch dropped)."""
    while True:
        order = rng.permutation(num_examples)
        for start in range(0, num_examples - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def class_group_batches(labels, classes_per_batch, per_class, rng):
    """Endless non-i.i.d. batches of `classes_per_batch` random classes x `per_class` images.

    Ioffe (2017, section 4.2) trains on batches of 32 = 16 classes x 2 images: every
    image shares its batch with another of its class. Classes and images are drawn
    without replacement within a batch.
    """
    classes = np.unique(labels)
    if classes_per_batch > len(classes):
        raise ValueError(
            f"classes_per_batch ({classes_per_batch}) exceeds the data's {len(classes)} classes"
        )
    members = {c: np.flatnonzero(labels == c) for c in classes}
    while True:
        chosen = rng.choice(classes, classes_per_batch, replace=False)
        yield np.concatenate([rng.choice(members[c], per_class, replace=False) for c in chosen])


def holdout(data, count):
    """(the data with its last `count` training examples removed, those as a validation set).

    The validation `Data` has the held-out training examples as its test arrays, so
    `train` evaluates on them; nothing of the test set is used.
    """
    if not 0 < count < len(data.x_train):
        raise ValueError(f"count must be in (0, {len(data.x_train)}); got {count}")
    cut = len(data.x_train) - count
    kept = Data(data.x_train[:cut], data.y_train[:cut], data.x_test, data.y_test)
    validation = Data(
        data.x_train[:cut], data.y_train[:cut], data.x_train[cut:], data.y_train[cut:]
    )
    return kept, validation


def cross_entropy(labels, logits):
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )


def loss_and_gradients(model, x, y):
    """Mean cross-entropy of `model` in training mode on (x, y) and its gradients."""
    with tf.GradientTape() as tape:
        loss = cross_entropy(y, model(x, training=True))
    return loss, tape.gradient(loss, model.trainable_variables)


def make_train_step(model, optimizer):
    # Built here, not in the first trace (which would then be traced a second time).
    optimizer.build(model.trainable_variables)

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        loss, gradients = loss_and_gradients(model, x, y)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    return train_step


def evaluate(model, x, y, batch_size=1000):
    """(accuracy, mean loss) of `model` in inference mode; a NaN loss for NaN outputs."""
    correct, total_loss = 0, 0.0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size], training=False)
        labels = y[start : start + batch_size]
        correct += int(np.sum(np.argmax(logits, axis=-1) == labels))
        total_loss += float(cross_entropy(labels, logits)) * len(labels)
    return correct / len(x), total_loss / len(x)


def train(
    model,
    data,
    *,
    steps,
    batch_size,
    lr,
    seed,
    eval_every,
    momentum=0.0,
    batches=None,
    on_eval=None,
    on_step=None,
    name="run",
):
    """Trains `model` with SGD on `data` for `steps` steps and records a test curve.

    Args:
        model: A Keras model giving logits.
        data: A `bnkeras.experiments.data.Data`.
        steps, batch_size, lr, momentum: The SGD run (constant learning rate).
        seed: Seed of the batch order.
        eval_every: Test accuracy every this many steps (and after the last step).
        batches: Optional iterator of index arrays (default: shuffled epochs).
        on_eval: Optional `f(step) -> dict` of extra numbers recorded at each evaluation.
        on_step: Optional `f(step, x, y)` called before each step with its batch.
        name: Name of the run in progress messages.

    Returns:
        A dict: `steps`, `test_accuracy`, `train_loss` (mean over the steps since the
        previous evaluation), the `on_eval` numbers as lists, `diverged` (a
        non-finite training loss; training stops there) and `diverged_at`.
    """
    rng = np.random.default_rng(seed)
    batches = batches or shuffled_batches(len(data.x_train), batch_size, rng)
    train_step = make_train_step(model, keras.optimizers.SGD(lr, momentum=momentum))
    curve = {"steps": [], "test_accuracy": [], "train_loss": []}
    losses, diverged_at = [], None
    for step in range(1, steps + 1):
        index = next(batches)
        x, y = tf.constant(data.x_train[index]), tf.constant(data.y_train[index])
        if on_step is not None:
            on_step(step, x, y)
        loss = float(train_step(x, y))
        losses.append(loss)
        if not math.isfinite(loss):
            diverged_at = step
            logger.info("%s: loss is %s at step %d: diverged", name, loss, step)
        if step % eval_every == 0 or step == steps or diverged_at:
            accuracy, _ = evaluate(model, data.x_test, data.y_test)
            curve["steps"].append(step)
            curve["test_accuracy"].append(accuracy)
            curve["train_loss"].append(float(np.mean(losses)))
            losses = []
            for key, value in (on_eval(step) if on_eval else {}).items():
                curve.setdefault(key, []).append(value)
            logger.info(
                "%s: step %d/%d, train loss %.4g, test accuracy %.4f",
                name,
                step,
                steps,
                curve["train_loss"][-1],
                accuracy,
            )
        if diverged_at:
            break
    curve["diverged"] = diverged_at is not None
    curve["diverged_at"] = diverged_at
    return curve


def train_with_settings(model, data, s, seed, name, evaluations=5, **overrides):
    """`train` with `steps`, `batch_size`, `lr` and `momentum` (default 0) from settings
    `s`, evaluating `evaluations` times; keyword arguments override any of them."""
    arguments = {
        "steps": s["steps"],
        "batch_size": s["batch_size"],
        "lr": s.get("lr"),
        "momentum": s.get("momentum", 0.0),
        "eval_every": max(1, s["steps"] // evaluations),
        "seed": seed,
        "name": name,
    }
    return train(model, data, **{**arguments, **overrides})
