"""The mfcc_judge stage's output: the second digit judge.

``judge.keras`` (built-in layers only, loaded in Keras safe mode) and
``judge.json``: its classes, ``holdout_takes`` (how its test clips were held
out) and ``test_accuracy`` (what its verdicts are worth).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from speakdigits.formats import missing, read_stage_json

if TYPE_CHECKING:
    import keras

# Keras is imported where a model is saved or loaded (see speakdigits.formats.model).

DIR = Path("data/mfcc_judge")
STAGE = "mfcc_judge"
MODEL_KERAS = "judge.keras"
JUDGE_JSON = "judge.json"


def save_judge(
    out_dir: Path, model: keras.Model, *, classes: tuple[str, ...], test_accuracy: float | None, holdout_takes: float
) -> None:
    """Write ``judge.keras`` and ``judge.json``."""
    from speakdigits.runtime import save_keras

    save_keras(model, Path(out_dir) / MODEL_KERAS)
    info = {"classes": list(classes), "test_accuracy": test_accuracy, "holdout_takes": holdout_takes}
    (Path(out_dir) / JUDGE_JSON).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def read_judge_info(judge_dir: Path) -> dict:
    """``judge.json``."""
    return read_stage_json(Path(judge_dir) / JUDGE_JSON, STAGE)


def load_judge(judge_dir: Path) -> tuple[keras.Model, dict]:
    """The saved judge (``.keras``, safe mode) and ``judge.json``."""
    import keras

    info = read_judge_info(judge_dir)
    path = Path(judge_dir) / MODEL_KERAS
    if not path.exists():
        raise missing(path, STAGE)
    return keras.saving.load_model(path, safe_mode=True, compile=False), info
