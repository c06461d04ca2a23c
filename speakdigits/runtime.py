"""How TensorFlow runs and saves: reproducibly.

Shared by the VAE's training and the classifiers, and kept apart from both so
that editing one model's code does not make DVC retrain the other.
"""

from __future__ import annotations

import json
import re
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


# Keras stamps the save time into a .keras file (metadata.json's date_saved and
# the weights' zip entry), and numbers the objects that layers share (such as
# their dtype policy) in config.json by their Python id(), which differs from
# process to process. Fixing the stamps and renumbering the ids in order of
# appearance keeps identical models byte-identical, so DVC sees the same output
# for the same params and seed, on any machine.
_FIXED_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_FIXED_DATE_SAVED = "1980-01-01@00:00:00"
_SHARED_OBJECT_ID = re.compile(rb'"shared_object_id": (\d+)')


def _renumber_shared_objects(config: bytes) -> bytes:
    numbers: dict[bytes, bytes] = {}

    def renumber(match: re.Match) -> bytes:
        number = numbers.setdefault(match.group(1), str(len(numbers)).encode())
        return b'"shared_object_id": ' + number

    return _SHARED_OBJECT_ID.sub(renumber, config)


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
            elif info.filename == "config.json":
                data = _renumber_shared_objects(data)
            fixed = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_DATE)
            fixed.compress_type, fixed.external_attr = info.compress_type, info.external_attr
            target.writestr(fixed, data)
    stamped.unlink()
