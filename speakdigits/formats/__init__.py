"""The files that pass between stages: one module per stage output.

Each module says where its output lives (``DIR``, the path dvc.yaml declares),
which stage writes it (``STAGE``), its file names, and how it is written and
read. A stage's code imports only the formats it writes or reads, so its code
dependencies in dvc.yaml (written from the import closure, see
:mod:`speakdigits.pipeline`) are exactly those: an edit to audio decoding no
longer retrains the VAE.

=============================  ===========  =====================================
module                         stage        what
=============================  ===========  =====================================
:mod:`.raw`                    download     data/raw: audio.zip and speaker metadata
:mod:`.features`               extract      data/features: mels.npy and clips.csv
:mod:`.normalized`             normalize    data/normalized: the splits, scaled
:mod:`.model`                  train        data/model: the VAE and its latents
:mod:`.generated`              generate     data/generated: new clips and their mels
:mod:`.classifiers`            classify     data/classifiers: the judges
=============================  ===========  =====================================
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from speakdigits.errors import PipelineError


def missing(path: str | Path, stage: str) -> PipelineError:
    """The one error for a stage's output that is not there: name it and the stage that writes it."""
    return PipelineError(f"{path}: not found; run the {stage} stage first (dvc repro {stage})")


def rerun(stage: str) -> str:
    """What to do about a stage's output that is there but unusable (the end of an error's one line)."""
    return f"rerun the {stage} stage (dvc repro -f {stage})"


def read_stage_json(path: str | Path, stage: str) -> Any:
    """Read a JSON file that the DVC stage ``stage`` writes.

    Raises
    ------
    PipelineError
        When it is missing (naming the stage to run) or not valid JSON.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise missing(path, stage) from None
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not valid JSON ({err}); {rerun(stage)}") from None
