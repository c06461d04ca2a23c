"""The train stage's output: the VAE's two halves and where its training clips lie in latent space.

``encoder.keras`` and ``decoder.keras`` (built-in layers only, so they load in
Keras safe mode), ``latents.json`` (the Gaussians of
:func:`speakdigits.model.fit_latent_gaussians`, one per digit),
``speakers.json`` (the same, one per training speaker: where each voice lies,
for ``generate --speaker``) and ``model.json`` (how the
model was built: ``arch``, ``conditional``, ``latent_dim``, ``shape``,
``epochs_run``, and ``mel``, the geometry of the features it learnt, which
generation and evaluation invert with: :func:`read_geometry`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from speakdigits.files import write_json
from speakdigits.formats import geometry_from, missing, read_stage_json
from speakdigits.params import MelParams

if TYPE_CHECKING:
    from speakdigits.model import TrainedVAE

# Keras is imported where a model is saved or loaded, not here: the stage modules read DIR at
# import time, and a stage's --help should not wait for TensorFlow (nor hear its start-up noise).

DIR = Path("data/model")
STAGE = "train"
MODEL_JSON = "model.json"
LATENTS_JSON = "latents.json"
SPEAKERS_JSON = "speakers.json"
HALVES = ("encoder", "decoder")


def save_vae(model_dir: Path, vae: TrainedVAE, latents: dict, speakers: dict, info: dict) -> None:
    """Write ``encoder.keras``, ``decoder.keras``, ``latents.json``, ``speakers.json`` and ``model.json`` (``info``)."""
    from speakdigits.runtime import save_keras

    model_dir = Path(model_dir)
    for name, half in zip(HALVES, (vae.encoder, vae.decoder)):
        save_keras(half, model_dir / f"{name}.keras")
    write_json(model_dir / LATENTS_JSON, latents)
    write_json(model_dir / SPEAKERS_JSON, speakers)
    write_json(model_dir / MODEL_JSON, info)


def read_latents(model_dir: Path) -> dict:
    """The per-digit latent Gaussians (:func:`speakdigits.model.fit_latent_gaussians`)."""
    return read_stage_json(Path(model_dir) / LATENTS_JSON, STAGE)


def read_speakers(model_dir: Path) -> dict:
    """The per-speaker latent Gaussians of the training speakers, by name."""
    return read_stage_json(Path(model_dir) / SPEAKERS_JSON, STAGE)


def read_model_info(model_dir: Path) -> dict:
    """How the saved model was built: ``arch``, ``conditional``, ``latent_dim``, ``shape``."""
    return read_stage_json(Path(model_dir) / MODEL_JSON, STAGE)


def read_geometry(model_dir: Path) -> MelParams:
    """The mel geometry of the features the model learnt (what its images mean in Hz and seconds)."""
    path = Path(model_dir) / MODEL_JSON
    return geometry_from(read_stage_json(path, STAGE).get("mel"), path)


def load_vae(model_dir: Path) -> TrainedVAE:
    """Load the saved encoder and decoder (``.keras``, safe mode) and whether they take the digit."""
    import keras

    from speakdigits.model import TrainedVAE

    model_dir = Path(model_dir)
    info = read_model_info(model_dir)
    halves = []
    for name in HALVES:
        path = model_dir / f"{name}.keras"
        if not path.exists():
            raise missing(path, STAGE)
        halves.append(keras.saving.load_model(path, safe_mode=True, compile=False))
    return TrainedVAE(halves[0], halves[1], conditional=info["conditional"])
