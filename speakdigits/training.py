"""The ``train`` stage: fit the VAE, log its curves, measure it on the test speakers."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from speakdigits.errors import PipelineError
from speakdigits.files import atomic_dir
from speakdigits.formats.model import save_vae
from speakdigits.formats.normalized import load_geometry, load_split, load_stats
from speakdigits.model import (
    VAE,
    TrainedVAE,
    build_encoder_decoder,
    fit_latent_gaussians,
    one_hot,
    pitch_mse,
    reconstruction_mse,
    saying,
    to_channels,
    voice_of,
)
from speakdigits.params import MelParams, TrainParams, VaeParams
from speakdigits.runtime import make_deterministic
from speakdigits.voice_detail import recording_details


def first_non_finite(history: keras.callbacks.History) -> str | None:
    """Where the losses first stopped being finite (``'loss = nan at epoch 3'``), or None.

    Keras' ``TerminateOnNaN`` stops training at the first non-finite batch loss, and that
    epoch's mean, NaN or infinite too, is the last one History records.
    """
    for epoch, logs in enumerate(zip(*history.history.values())):
        for key, value in zip(history.history, logs):
            if key.endswith("loss") and not math.isfinite(float(value)):
                return f"{key} = {float(value)} at epoch {epoch + 1}"
    return None


def _channels(mels: tf.Tensor, pitch: tf.Tensor, digits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`speakdigits.model.to_channels` of a batch, in TensorFlow."""
    columns = tf.broadcast_to(tf.transpose(pitch, (0, 2, 1))[:, None], (*tf.unstack(tf.shape(mels)), 2))
    return tf.concat([mels[..., None], columns], axis=-1), digits


def batches(split: dict, batch_size: int, *, shuffle_seed: int | None) -> tf.data.Dataset:
    """A split as batches of ``(images, one-hot digits)`` (images: :func:`speakdigits.model.to_channels`),
    reshuffled every epoch when ``shuffle_seed`` is given."""
    data = tf.data.Dataset.from_tensor_slices(
        (split["x"].astype(np.float32), split["pitch"].astype(np.float32), one_hot(split["digit"]))
    )
    if shuffle_seed is not None:
        data = data.shuffle(len(split["x"]), seed=shuffle_seed, reshuffle_each_iteration=True)
    # Batches are cut, and their pitch spread down the columns, in TensorFlow's own threads, the next
    # one while a step runs (no Python per batch; on 2 CPU cores the step itself is the bottleneck
    # either way). Spread per batch, not beforehand: the whole set at three channels would take
    # three times the memory.
    return data.batch(batch_size).map(_channels).prefetch(tf.data.AUTOTUNE)


class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate that rises linearly to ``rate`` over ``steps`` steps, then stays there.

    Adam's first step moves every weight by about the full learning rate, whatever its gradient's size
    (the moment estimates are their first values, so the update is the gradient's sign). Through the
    encoder's wide layers those moves add up: on FSDD, with the pitch tracker's lenient prior, log σ²
    reached 34 after the first step, the first epoch's KL 2.8e11, and the encoder never recovered (every
    generated clip was heard as a nine). Ramping the rate over the first epoch kept that epoch's KL at 37.
    """

    def __init__(self, rate: float, steps: int):
        self.rate, self.steps = float(rate), max(1, int(steps))

    def __call__(self, step):
        done = keras.ops.cast(step + 1, "float32") / self.steps
        return self.rate * keras.ops.minimum(1.0, done)

    def get_config(self) -> dict:
        return {"rate": self.rate, "steps": self.steps}


def compiled_vae(
    shape: tuple[int, int], *, latent_dim: int, vae: VaeParams, train: TrainParams, seed: int, steps_per_epoch: int
) -> VAE:
    """The VAE of the ``vae`` params, with the loss and optimiser of the ``train`` params, ready to fit
    (``steps_per_epoch`` sets the length of the learning rate's warm-up, ``train.warmup_epochs``)."""
    # No tf.distribute strategy: Keras runs on the one GPU it finds, or on the CPU,
    # where a OneDeviceStrategy made every step three times slower (measured on 2 cores).
    encoder, decoder = build_encoder_decoder(
        shape,
        latent_dim=latent_dim,
        arch=vae.arch,
        conditional=vae.conditional,
        filters=vae.filters,
        dense=vae.dense,
    )
    model = VAE(
        encoder,
        decoder,
        conditional=vae.conditional,
        reconstruction_weight=train.reconstruction_weight,
        pitch_weight=train.pitch_weight,
        # An unconditional model needs the digit in z: its decoder is told nothing else.
        adversary_weight=train.digit_adversary if vae.conditional else 0.0,
        seed=seed,
    )
    # Not compiled by XLA: Keras turns XLA off whenever TensorFlow's op determinism is on, which
    # the same weights from the same seed need (see speakdigits.runtime.make_deterministic).
    warmup = round(train.warmup_epochs * steps_per_epoch)
    rate = LinearWarmup(train.learning_rate, warmup) if warmup > 0 else train.learning_rate
    model.compile(optimizer=keras.optimizers.Adam(rate))
    return model


def test_metrics(vae: VAE, test: dict, *, batch_size: int) -> dict:
    """Reconstruction MSE of the log-mel and of the pitch track (z = μ), KL and ELBO of the model on the test split.

    ``elbo`` is the negative of the training objective on the test clips,
    ``-(reconstruction_weight * (MSE + pitch_weight * pitch MSE) + KL)``, with z sampled (fixed seed).
    """
    if len(test["x"]) == 0:
        return {}
    trained = vae.trained()
    mu, _ = trained.encode(test["x"], test["pitch"], test["digit"], batch_size=batch_size)
    x = to_channels(test["x"], test["pitch"])
    x_hat = to_channels(*trained.decode(mu, test["digit"], batch_size=batch_size))  # unclipped: the loss's own MSE
    mse, pitch = (float(np.mean(keras.ops.convert_to_numpy(f(x, x_hat)))) for f in (reconstruction_mse, pitch_mse))
    scores = vae.evaluate(batches(test, batch_size, shuffle_seed=None), return_dict=True, verbose=0)
    return {"mse": mse, "pitch_mse": pitch, "kl": float(scores["kl"]), "elbo": -float(scores["loss"])}


def train_vae(
    normalized_dir: Path,
    model_dir: Path,
    live_dir: Path,
    *,
    latent_dim: int,
    vae: VaeParams,
    train: TrainParams,
    seed: int,
) -> dict:
    """Train the VAE and write the model, its curves and its test metrics.

    Parameters
    ----------
    normalized_dir : Path
        Output of the normalize stage.
    model_dir : Path
        Written atomically: ``encoder.keras``, ``decoder.keras``, ``model.json``,
        ``latents.json`` (where the training clips lie in latent space, per
        digit: see :func:`speakdigits.model.fit_latent_gaussians`) and
        ``speakers.json`` (per training speaker, their voice: the Gaussian of
        their clips' offsets from their digits' centres, :mod:`speakdigits.voices`, and
        for a conditional model, per digit, their voice saying it and what that misses
        of their recordings, :func:`speaker_digits`).
    live_dir : Path
        DVCLive's folder (per-epoch losses, final and test metrics), written
        as training goes, so that ``dvc plots show`` and the DVC tools for VS
        Code and Studio show the curves live; after a failure it holds the
        curves up to the failure (the model is never half-written).
    latent_dim : int
        Size of z.
    vae, train : VaeParams, TrainParams
        The ``vae`` and ``train`` sections of params.yaml.
    seed : int
        Seed of initialisation, shuffling and sampling.

    Returns
    -------
    dict
        Test metrics (``mse``, ``kl``, ``elbo``).

    Raises
    ------
    PipelineError
        When the loss becomes NaN or infinite (no model is written), or the
        training split is empty.
    """
    make_deterministic(seed)
    splits = _load_splits(normalized_dir)
    shape = tuple(splits["train"]["x"].shape[1:])
    steps = -(-len(splits["train"]["x"]) // train.batch_size)
    model = compiled_vae(shape, latent_dim=latent_dim, vae=vae, train=train, seed=seed, steps_per_epoch=steps)

    with atomic_dir(model_dir) as model_tmp:
        live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)  # clears the previous run
        _fit(model, splits, train=train, seed=seed, live=live)
        metrics = test_metrics(model, splits["test"], batch_size=train.batch_size)
        for key, value in metrics.items():
            live.log_metric(f"test/{key}", value, plot=False)
        live.end()
        _save_model(
            model_tmp,
            model,
            splits["train"],
            shape=shape,
            latent_dim=latent_dim,
            vae=vae,
            batch_size=train.batch_size,
            normalized_dir=normalized_dir,
        )
    return metrics


def _load_splits(normalized_dir: Path) -> dict[str, dict]:
    """The ``train``, ``val`` and ``test`` splits of the normalize stage; PipelineError if ``train`` is empty."""
    splits = {name: load_split(normalized_dir, name) for name in ("train", "val", "test")}
    if len(splits["train"]["x"]) == 0:
        raise PipelineError(f"{normalized_dir}/train: no training clips")
    return splits


def _callbacks(live: Live, *, patience: int, has_val: bool) -> list[keras.callbacks.Callback]:
    """Stop at the first non-finite loss; stop early on the validation loss (the training loss when there
    is no validation split) and keep the best epoch's weights; send the curves to ``live``."""
    return [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.EarlyStopping(
            monitor="val_loss" if has_val else "loss", patience=patience, restore_best_weights=True
        ),
        DVCLiveCallback(live=live),
    ]


def _fit(model: VAE, splits: dict[str, dict], *, train: TrainParams, seed: int, live: Live) -> None:
    """Fit ``model`` on the training split (shuffled with ``seed``), validated on ``val`` if it has clips.

    Raises PipelineError when the loss became NaN or infinite.
    """
    has_val = len(splits["val"]["x"]) > 0
    callbacks = _callbacks(live, patience=train.patience, has_val=has_val)
    model.fit(
        batches(splits["train"], train.batch_size, shuffle_seed=seed),
        validation_data=batches(splits["val"], train.batch_size, shuffle_seed=None) if has_val else None,
        epochs=train.epochs,
        callbacks=callbacks,
        shuffle=False,
        verbose=2,
    )
    failure = first_non_finite(model.history)
    if failure is not None:
        raise PipelineError(
            f"training diverged: {failure}; no model written. Try a lower train.learning_rate "
            f"(now {train.learning_rate}) or train.reconstruction_weight (now {train.reconstruction_weight})"
        )


def speaker_digits(
    vae: TrainedVAE,
    split: dict,
    offsets: np.ndarray,
    latents: dict,
    *,
    mel: MelParams,
    mel_min: np.ndarray,
    mel_max: np.ndarray,
) -> dict[str, dict[str, dict]]:
    """Per training speaker, per digit they say in ``split``: their voice saying it (``voice``, the mean of
    their takes' ``offsets`` from its centre) and what that voice misses of those takes (``detail``:
    :func:`recording_details`, their mean), as ``generate --speaker`` says the digit.

    A speaker says each digit their own way, and what one digit's takes show of their voice does not carry
    over to another's (on the synthetic default, the band levels a voice misses over one digit's voiced
    speech lie 6.8 dB RMS from those over another's). With their mean voice and the mean of what it misses
    over all their digits, the speaker judge heard the speaker in 74 % of the training speakers' voices
    saying every digit; with each digit's own, in 87 % (docs/results.md). One speaker's clips are decoded at
    a time: memory stays bounded by the largest speaker's, not the split's.
    """
    out = {}
    for name in sorted(set(split["speaker"].tolist())):
        rows = np.flatnonzero(split["speaker"] == name)
        digits = split["digit"][rows]
        said = sorted(set(digits.tolist()))
        voice_at = {d: offsets[rows][digits == d].mean(axis=0) for d in said}
        voices = np.array([voice_at[d] for d in digits])
        details = recording_details(
            vae,
            split["x"][rows],
            split["pitch"][rows],
            digits,
            saying(voices, digits, latents),
            mel=mel,
            mel_min=mel_min,
            mel_max=mel_max,
        )
        out[name] = {
            str(d): {"voice": voice_at[d].tolist(), "detail": details.rows(digits == d).mean().to_json()} for d in said
        }
    return out


def _save_model(
    folder: Path,
    model: VAE,
    train_split: dict,
    *,
    shape: tuple[int, ...],
    latent_dim: int,
    vae: VaeParams,
    batch_size: int,
    normalized_dir: Path,
) -> None:
    """Write the trained networks, where the training clips lie in latent space (per digit, and per
    speaker their voice) and the model's description, with the mel geometry of ``normalized_dir``, to
    ``folder``."""
    trained = model.trained()
    mu, log_var = trained.encode(train_split["x"], train_split["pitch"], train_split["digit"], batch_size=batch_size)
    latents = fit_latent_gaussians(mu, log_var, train_split["digit"] if vae.conditional else None)
    # Each speaker's voice: their clips' offsets from their digits' centres (speakdigits.voices), and what
    # that voice misses of their recordings, to add back when it speaks.
    offsets = voice_of(mu, train_split["digit"], latents) if vae.conditional else mu
    speakers = fit_latent_gaussians(offsets, log_var, train_split["speaker"])
    if vae.conditional:
        mel_min, mel_max = load_stats(normalized_dir)
        digits = speaker_digits(
            trained, train_split, offsets, latents, mel=load_geometry(normalized_dir), mel_min=mel_min, mel_max=mel_max
        )
        for name, said in digits.items():
            speakers[name]["digits"] = said
    save_vae(
        folder,
        trained,
        latents,
        speakers,
        {
            "arch": vae.arch,
            "conditional": vae.conditional,
            "latent_dim": latent_dim,
            "shape": list(shape),
            "epochs_run": len(model.history.epoch) if model.history else 0,
            "mel": dataclasses.asdict(load_geometry(normalized_dir)),
        },
    )
