"""How TensorFlow runs: reproducibly, on the devices present.

Shared by the VAE's training and the classifiers, and kept apart from both so
that editing one model's code does not make DVC retrain the other.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and ask TensorFlow for deterministic ops.

    With this, the same params and seed give the same weights and metrics on CPU.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def choose_strategy() -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy for the devices present.

    Several GPUs: mirrored over all of them; one GPU: that GPU; otherwise the CPU.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
