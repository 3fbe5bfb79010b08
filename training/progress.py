"""Progress inside an epoch when stdout is not a terminal (logs, CI, nohup).

On a terminal `model.fit` shows Keras's progress bar. Elsewhere that bar is either
silent (`verbose=0`) or one line per epoch (`verbose=2`), so a long epoch shows
nothing for minutes; `StepProgress` logs a line every few seconds instead.
"""

import logging
import sys
import time

import keras

logger = logging.getLogger(__name__)

PROGRESS_SECONDS = 10.0  # interval between two progress lines in an epoch


class StepProgress(keras.callbacks.Callback):
    """Logs `epoch E/N step S/T: X images/s, loss L, ETA m:ss` during training.

    A line is logged at most every `every_seconds` and always after an epoch's
    last step. Images/s and the ETA (of the epoch's training steps) are measured
    from the end of the epoch's first step (the first step of a run traces and
    compiles: a line after it gives its duration); the loss is Keras's running mean
    over the epoch.

    Args:
        batch_size: Images per step (the global batch size).
        every_seconds: Seconds between two lines (0: a line per step).
    """

    def __init__(self, batch_size, every_seconds=PROGRESS_SECONDS):
        super().__init__()
        self.batch_size = int(batch_size)
        self.every_seconds = float(every_seconds)
        self._epoch = 0
        self._start = self._last = self._first = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        done, steps = batch + 1, self.params.get("steps")
        if done == 1:
            self._first = now
        if done != steps and now - self._last < self.every_seconds:
            return
        self._last = now
        if done == 1:  # no rate yet: the first step of a run also traces and compiles
            parts = [f"first step {now - self._start:.1f} s"]
        else:
            rate = (done - 1) / max(now - self._first, 1e-9)  # steps per second
            parts = [f"{rate * self.batch_size:.0f} images/s"]
        if logs and "loss" in logs:
            parts.append(f"loss {float(logs['loss']):.4f}")
        if steps and done > 1:
            parts.append(f"ETA {_duration((steps - done) / rate)}")
        logger.info(
            f"epoch {self._epoch}/{self.params.get('epochs')} step {done}/{steps or '?'}: "
            + ", ".join(parts)
        )


def _duration(seconds):
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def fit_progress(progress, batch_size):
    """`(verbose, callbacks)` for `model.fit`.

    Args:
        progress: None chooses: Keras's progress bar (`verbose=1`) when stdout is a
            terminal, else `verbose=0` and a `StepProgress` callback. An int is
            passed to `fit` as `verbose`, without a callback (0: silent).
        batch_size: The global batch size, for images/s.
    """
    if progress is not None:
        return progress, []
    if sys.stdout.isatty():
        return 1, []
    return 0, [StepProgress(batch_size)]
