"""The files that pass between stages: one module per stage output.

Each module says where its output lives (``DIR``, the path dvc.yaml declares),
which stage writes it (``STAGE``), its file names, and how it is written and
read. A stage's code imports only the formats it writes or reads, so its code
dependencies in dvc.yaml (written from the import closure, see
:mod:`stages.dvc_yaml`) are exactly those: an edit to audio decoding no
longer retrains the VAE.

=============================  ===========  =====================================
module                         stage        what
=============================  ===========  =====================================
:mod:`.raw`                    download     data/raw: audio.zip and speaker metadata
:mod:`.features`               extract      data/features: mels, pitch tracks, clips.csv, geometry
:mod:`.normalized`             normalize    data/normalized: the splits, scaled
:mod:`.model`                  train        data/model: the VAE and its latents
:mod:`.generated`              generate     data/generated: new clips and their mels
:mod:`.classifiers`            classify     data/classifiers: the judges
:mod:`.mfcc_judge`             mfcc_judge   data/mfcc_judge: the second digit judge
=============================  ===========  =====================================
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from speakdigits.errors import PipelineError
from speakdigits.files import write_json
from speakdigits.params import MelParams


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


def write_geometry(path: str | Path, geometry: MelParams) -> None:
    """The mel geometry as JSON: every ``mel`` key, ``fmax`` resolved."""
    write_json(path, dataclasses.asdict(geometry))


def geometry_from(values: Any, where: str | Path) -> MelParams:
    """A recorded geometry (:func:`write_geometry`, or the ``mel`` entry a later stage carries on) as MelParams."""
    fields = {f.name for f in dataclasses.fields(MelParams)}
    if not isinstance(values, dict) or set(values) != fields:
        raise PipelineError(f"{where}: not a mel geometry (expected the keys {', '.join(sorted(fields))})")
    return MelParams(**values)


def check_geometry(recorded: MelParams, mel: MelParams, where: str | Path) -> None:
    """Refuse params.yaml's ``mel`` section when it is not the geometry ``where`` was made with.

    The features, and everything trained on them, hold one geometry; a stage
    run by hand after ``mel.*`` was edited would otherwise invert clips with
    the wrong hop or band, silently. ``mel.fmax`` null matches the band that
    extraction chose.
    """
    for name in (f.name for f in dataclasses.fields(MelParams)):
        wanted, have = getattr(mel, name), getattr(recorded, name)
        if name == "fmax" and wanted is None:
            continue
        if wanted != have:
            raise PipelineError(
                f"params.yaml: mel.{name} = {wanted!r}, but {where} was made with mel.{name} = {have!r}; "
                "run dvc repro to remake it with the params"
            )
