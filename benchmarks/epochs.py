"""Timing training epochs, the same way for the original network and this project's."""

from __future__ import annotations

import time


def epoch_timer():
    """A Keras callback that records every epoch's wall time, and the list it appends them to."""
    import keras

    seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    return EpochTimer(), seconds
