"""How TensorFlow runs and saves: reproducibly, on the devices present.

Shared by the VAE's training and the classifiers, and kept apart from both so
that editing one model's code does not make DVC retrain the other.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

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


# Keras stamps the save time into a .keras file (metadata.json's date_saved and
# the weights' zip entry); fixing both keeps identical models byte-identical,
# so DVC sees the same output for the same params and seed.
_FIXED_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_FIXED_DATE_SAVED = "1980-01-01@00:00:00"


def save_keras(model: keras.Model, path: str | Path) -> None:
    """Save ``model`` in the ``.keras`` format, byte-identical for identical models.

    Parameters
    ----------
    model : keras.Model
        The model to save.
    path : str or Path
        Target file, ending in ``.keras``.
    """
    path = Path(path)
    stamped = path.with_name(path.stem + ".stamped.keras")
    model.save(stamped)
    with zipfile.ZipFile(stamped) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata["date_saved"] = _FIXED_DATE_SAVED
                data = json.dumps(metadata).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_DATE)
            fixed.compress_type, fixed.external_attr = info.compress_type, info.external_attr
            target.writestr(fixed, data)
    stamped.unlink()
