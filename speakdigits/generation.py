"""The ``generate`` stage: new voices from the trained decoder.

z drawn from where the training clips of the asked digit lie in latent space
(``generate.sampling: fitted``, the default) or from the prior N(0, I)
(``prior``), its spread scaled by the temperature → decoder → a log-mel image
and a pitch track → undo the normalisation → stretch the image's contrast over
time (``generate.contrast``) → the vocoder (harmonic, or
Griffin-Lim: :mod:`speakdigits.vocoder`) → 16-bit wav at the features' sample
rate. All randomness comes from the seed, so the same seed gives the same files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from speakdigits.errors import PipelineError
from speakdigits.files import add_files, atomic_dir, write_json
from speakdigits.formats.generated import GRID_PNG, MELS_NPY, SAMPLES_JSON, output_names, wav_names
from speakdigits.formats.model import load_vae, read_latents
from speakdigits.formats.normalized import denormalize, load_stats
from speakdigits.model import sample_latents
from speakdigits.params import GenerateParams, MelParams
from speakdigits.pitch import F0, VOICING, from_unit
from speakdigits.streams import Stream, stream
from speakdigits.vocoder import stretch_contrast, synthesize_many, with_levels, with_pace
from speakdigits.voice_detail import VoiceDetail, warped
from speakdigits.wav import wav_bytes

#: The mel grid shows at most this many clips of each digit (rows of up to 10 for an unconditional model),
#: so its size stays bounded whatever the count.
GRID_PER_DIGIT = 10
GRID_UNCONDITIONAL = 100


def requested_digits(*, conditional: bool, per_digit: int, n_samples: int) -> list[int | None]:
    """What each generated clip should say: ``per_digit`` of every digit, or ``n_samples`` unknowns."""
    if conditional:
        return [digit for digit in range(10) for _ in range(per_digit)]
    return [None] * n_samples


def grid_rows(digits: list[int | None]) -> list[list[int]]:
    """Indices of the clips in the mel grid: a row per digit (its first ``GRID_PER_DIGIT`` clips),
    or the first ``GRID_UNCONDITIONAL`` unlabelled clips in rows of 10."""
    if all(d is None for d in digits):
        shown = list(range(min(len(digits), GRID_UNCONDITIONAL)))
        return [shown[i : i + 10] for i in range(0, len(shown), 10)]
    rows: dict[int | None, list[int]] = {}
    for index, digit in enumerate(digits):
        row = rows.setdefault(digit, [])
        if len(row) < GRID_PER_DIGIT:
            row.append(index)
    return list(rows.values())


def save_mel_grid(images_db: np.ndarray, titles: list[str], path: Path, *, rows: list[list[int]]) -> None:
    """One PNG with the generated log-mel images ``rows`` picks (indices), each titled (e.g. by its digit)."""
    columns = max(len(row) for row in rows)
    # A Figure of its own, not pyplot's: no backend and no global figure list, so nothing to close.
    fig = Figure(figsize=(1.6 * columns, 1.5 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), columns, squeeze=False)
    low, high = float(np.min(images_db)), float(np.max(images_db))
    for ax in axes.ravel():
        ax.axis("off")
    shown = None
    for ax_row, row in zip(axes, rows):
        for ax, index in zip(ax_row, row):
            shown = ax.imshow(images_db[index], origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma")
            ax.set_title(titles[index], fontsize=8)
    fig.colorbar(shown, ax=axes, shrink=0.5, aspect=30, label="dB (one scale for every image)")
    fig.suptitle("Generated log-mel spectrograms: time →, mel band ↑ (low frequencies at the bottom)", fontsize=10)
    fig.savefig(path, dpi=80, metadata={"Software": None})


def vocode_decoded(
    images: np.ndarray,
    pitch: np.ndarray,
    *,
    mel: MelParams,
    mel_min: np.ndarray,
    mel_max: np.ndarray,
    generate: GenerateParams,
    seeds: list[int],
    detail: VoiceDetail | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The decoder's images and pitch tracks as sound, as every generated clip is made: each image clipped
    to [0, 1] and back to dB, its contrast stretched (:func:`stretch_contrast`), then vocoded with its
    pitch track and its own seed. ``detail``, per clip, what its voice's latent vector misses
    (:class:`speakdigits.voice_detail.VoiceDetail`), is added back times ``generate.voice_detail``: its pace
    (:func:`with_pace`), then its formants (:func:`speakdigits.voice_detail.warped`), its band levels
    (:func:`with_levels`) and its pitch. Returns the dB images and the clips' samples."""
    images_db = stretch_contrast(denormalize(np.clip(images, 0.0, 1.0), mel_min, mel_max), generate.contrast)
    tracks = from_unit(pitch)
    if detail is not None and generate.voice_detail:
        images_db, tracks = with_pace(images_db, tracks, generate.voice_detail * detail.log_pace)
        images_db = np.stack(
            [warped(image, generate.voice_detail * w, mel=mel) for image, w in zip(images_db, detail.log_warp)]
        )
        levels = detail.frame_levels(tracks[:, VOICING] > 0.5)
        images_db = with_levels(images_db, generate.voice_detail * levels, top_db=mel.top_db)
        tracks[:, F0] *= np.exp(generate.voice_detail * np.nan_to_num(detail.log_f0))[:, None]
    clips = synthesize_many(
        images_db,
        tracks,
        mel=mel,
        vocoder=generate.vocoder,
        n_iter=generate.vocoder_iters,
        momentum=generate.griffin_lim_momentum,
        aperiodicity=generate.aperiodicity,
        seeds=seeds,
        progress=progress,
    )
    return images_db, clips


def generate_clips(
    model_dir: Path,
    normalized_dir: Path,
    out_dir: Path,
    *,
    mel: MelParams,
    generate: GenerateParams,
    digits: list[int | None],
    seed: int,
    z: np.ndarray | None = None,
    voices: list[dict] | None = None,
    detail: VoiceDetail | None = None,
    replace: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Decode random latents (or the given ones) into wav files, a mel grid, ``mels.npy`` and
    ``samples.json`` in ``out_dir``.

    Parameters
    ----------
    model_dir, normalized_dir : Path
        Outputs of the train and normalize stages (decoder, normalisation statistics).
    out_dir : Path
        The stage's own output (``replace=True``): built beside it and moved
        onto it. A user's folder (``replace=False``): the files are added to
        it, and it is refused if it already holds any of them
        (:func:`speakdigits.files.add_files`). The files: :mod:`speakdigits.formats.generated`.
    mel : MelParams
        The geometry of the features the model learnt
        (:func:`speakdigits.formats.model.read_geometry`), for inversion.
    generate : GenerateParams
        ``sampling`` (where z comes from: the Gaussian fitted to the training
        clips' latents of the digit, ``latents.json``, or N(0, I)),
        ``temperature`` (scale of z's spread around its mean), ``contrast``
        (:func:`stretch_contrast`) and the vocoder's settings.
    digits : list of int or None
        One entry per clip: the digit to say (conditional model) or None.
    seed : int
        Seed of the latents and of the vocoder's noise (or initial phases).
    z : numpy.ndarray, optional
        The latent vector of each clip, chosen by the caller (a voice: :mod:`speakdigits.voices`);
        by default drawn as ``generate.sampling`` says.
    voices : list of dict, optional
        Per clip, where its voice came from, recorded in ``samples.json`` as ``voice``.
    detail : VoiceDetail, optional
        Per clip, what its voice's latent vector misses (:func:`speakdigits.voice_detail.recording_details`),
        added back as :func:`vocode_decoded` says.
    replace : bool
        Whether ``out_dir`` is the stage's own output, replaced (or a user's folder, added to).
    progress : callable, optional
        ``progress(done, total)`` after each clip is vocoded.

    Returns
    -------
    list of dict
        One record per clip: ``file``, ``digit`` (or None), ``seconds``, ``peak``.
    """
    vae = load_vae(model_dir)
    mel_min, mel_max = load_stats(normalized_dir)
    if any(d is not None for d in digits) and not vae.conditional:
        raise PipelineError(f"{model_dir}: the model is unconditional; it cannot be asked for a digit")
    if z is None:
        z = sample_latents(
            read_latents(model_dir) if generate.sampling == "fitted" else None,
            digits if vae.conditional else [None] * len(digits),
            latent_dim=vae.latent_dim,
            temperature=generate.temperature,
            rng=stream(seed, Stream.GENERATED_LATENTS),
        )
    labels = np.array([0 if d is None else d for d in digits])
    images, pitch = vae.decode(z, labels if vae.conditional else None)
    records = []
    with atomic_dir(out_dir) if replace else add_files(out_dir, output_names(digits)) as tmp:
        images_db, clips = vocode_decoded(
            images,
            pitch,
            mel=mel,
            mel_min=mel_min,
            mel_max=mel_max,
            generate=generate,
            seeds=[seed + index for index in range(len(digits))],
            detail=detail,
            progress=progress,
        )
        for index, (name, digit, samples) in enumerate(zip(wav_names(digits), digits, clips)):
            (tmp / name).write_bytes(wav_bytes(samples, mel.sample_rate))
            records.append(
                {
                    "file": name,
                    "digit": digit,
                    "seconds": len(samples) / mel.sample_rate,
                    "peak": float(np.abs(samples).max()),
                }
                | ({"voice": voices[index]} if voices is not None else {})
            )
        titles = [r["file"][:-4] if r["digit"] is None else f"digit {r['digit']}" for r in records]
        save_mel_grid(images_db, titles, tmp / GRID_PNG, rows=grid_rows(digits))
        np.save(tmp / MELS_NPY, np.clip(images, 0.0, 1.0).astype(np.float32), allow_pickle=False)
        write_json(tmp / SAMPLES_JSON, records)
    return records
