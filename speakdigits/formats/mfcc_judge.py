"""The mfcc_judge stage's output: the second digit judge, the speaker judge and the gender judge.

Per judge, ``<name>.keras`` (built-in layers only, loaded in Keras safe mode)
and ``<name>.json``: its classes, ``holdout_takes`` (how its test clips were
held out), ``test_accuracy`` (what its verdicts are worth) and
``per_clip_normalised`` (whether it hears each clip's MFCCs with their means
and spreads removed). The digit judge is ``judge``, the speaker judge
``speaker`` (absent when the data hold one speaker only), the gender judge
``gender`` (absent unless the training speakers, and the test speakers, have two
known genders); it is held
out by speaker, not by take, and its ``test_speakers`` are the speakers it never
heard.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from speakdigits.files import write_json
from speakdigits.formats import missing, read_stage_json

if TYPE_CHECKING:
    import keras

# Keras is imported where a model is saved or loaded (see speakdigits.formats.model).

DIR = Path("data/mfcc_judge")
STAGE = "mfcc_judge"
DIGIT, SPEAKER, GENDER = "judge", "speaker", "gender"


def save_judge(
    out_dir: Path,
    model: keras.Model,
    *,
    name: str = DIGIT,
    classes: tuple[str, ...],
    test_accuracy: float | None,
    holdout_takes: float,
    per_clip_normalised: bool,
    test_speakers: list[str] | None = None,
) -> None:
    """Write ``<name>.keras`` and ``<name>.json`` (with ``test_speakers`` where its test clips were held out
    by speaker)."""
    from speakdigits.runtime import save_keras

    save_keras(model, Path(out_dir) / f"{name}.keras")
    info = {
        "classes": list(classes),
        "test_accuracy": test_accuracy,
        "holdout_takes": holdout_takes,
        "per_clip_normalised": per_clip_normalised,
    } | ({"test_speakers": list(test_speakers)} if test_speakers is not None else {})
    write_json(Path(out_dir) / f"{name}.json", info)


def has_judge(judge_dir: Path, name: str) -> bool:
    """Whether the stage trained the judge ``name``."""
    return (Path(judge_dir) / f"{name}.json").is_file()


def read_judge_info(judge_dir: Path, name: str = DIGIT) -> dict:
    """``<name>.json``."""
    return read_stage_json(Path(judge_dir) / f"{name}.json", STAGE)


def load_judge(judge_dir: Path, name: str = DIGIT) -> tuple[keras.Model, dict]:
    """A saved judge (``.keras``, safe mode) and its ``.json``."""
    import keras

    info = read_judge_info(judge_dir, name)
    path = Path(judge_dir) / f"{name}.keras"
    if not path.exists():
        raise missing(path, STAGE)
    return keras.saving.load_model(path, safe_mode=True, compile=False), info
