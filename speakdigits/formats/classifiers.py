"""The classify stage's output: the judges.

``<task>.keras`` per trained task (``digit``, ``gender``, ``age``; built-in
layers only, loaded in Keras safe mode) and ``classifiers.json``: the input
shape, the digit judge's ``holdout_takes`` and, per task, its file, classes and
``test_accuracy`` (what its verdicts are worth).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from speakdigits.errors import PipelineError
from speakdigits.files import write_json
from speakdigits.formats import read_stage_json

if TYPE_CHECKING:
    import keras

# Keras is imported where a model is saved or loaded (see speakdigits.formats.model).

DIR = Path("data/classifiers")
STAGE = "classify"
CLASSIFIERS_JSON = "classifiers.json"
#: The name of each classifier's penultimate layer: the judge's feature space (the Fréchet distance's).
EMBEDDING = "embedding"


def save_classifiers(
    out_dir: Path,
    models: dict[str, keras.Model],
    shape: tuple[int, int],
    *,
    classes: dict[str, tuple[str, ...]],
    test_accuracy: dict[str, float],
    holdout_takes: float,
) -> None:
    """Write ``<task>.keras`` for each trained task and ``classifiers.json``."""
    from speakdigits.runtime import save_keras

    info = {"shape": list(shape), "holdout_takes": holdout_takes, "tasks": {}}
    for task, model in models.items():
        save_keras(model, Path(out_dir) / f"{task}.keras")
        info["tasks"][task] = {
            "file": f"{task}.keras",
            "classes": list(classes[task]),
            "test_accuracy": test_accuracy[task],
        }
    write_json(Path(out_dir) / CLASSIFIERS_JSON, info)


def read_classifiers_info(classifier_dir: Path) -> dict:
    """``classifiers.json``."""
    return read_stage_json(Path(classifier_dir) / CLASSIFIERS_JSON, STAGE)


def load_classifier(classifier_dir: Path, task: str) -> tuple[keras.Model, list[str]]:
    """Load one saved classifier (``.keras``, safe mode) and its class names.

    Raises
    ------
    PipelineError
        When the classify stage has not run, or did not train ``task``
        (see ``metrics/classify.json`` for why).
    """
    import keras

    info = read_classifiers_info(classifier_dir)
    if task not in info["tasks"]:
        raise PipelineError(f"{classifier_dir}: no {task} classifier was trained (metrics/classify.json says why)")
    model = keras.saving.load_model(Path(classifier_dir) / info["tasks"][task]["file"], safe_mode=True, compile=False)
    return model, info["tasks"][task]["classes"]
