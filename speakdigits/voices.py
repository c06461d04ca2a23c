"""Voices: a clip's latent vector as its voice, to choose for generation and to measure.

The conditional VAE is given the digit, so its latent vector z is left to hold
the rest of a clip: the voice, the pace, the recording. Encode a clip with its
own digit, decode with another digit, and the decoder says the other digit in
the first clip's voice: a voice conversion (``generate --like``).

z does not leave the digit out entirely, though: each digit's training clips
lie around a centre of their own (``latents.json``; on FSDD a test clip lies
nearest its own digit's centre one time in two), and decoded with digit 7, a z
from among the threes is a region the decoder never learnt to say 7 from. So a
*voice* here is a clip's offset from its digit's centre
(:func:`speakdigits.model.voice_of`); to say a digit in that voice, the offset
is added to the asked digit's centre (:func:`speakdigits.model.saying`). With
its own digit a clip gets its own z back. On FSDD this lifted the share of
conversions that the digit judge hears as the digit asked for from 68 % (z as
it is) to 87 %. A recording's offset is then scaled down
(``generate.latent_voice``), and what that loses of its voice comes back
through its detail (:func:`recording_voices`).

The train stage saves each training speaker's voice, the Gaussian of their
clips' offsets (``speakers.json``), so that a voice can also be asked for by
name (``generate --speaker``); and the straight line between two clips' voices
goes from one to the other (``generate --between``). The evaluate stage
measures how much of the voice survives with a speaker judge
(:mod:`speakdigits.voice_evaluation`).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from speakdigits.audio import log_mel, prepare
from speakdigits.errors import PipelineError
from speakdigits.formats.model import load_vae, read_latents, read_speakers
from speakdigits.formats.normalized import load_stats, scale
from speakdigits.formats.raw import parse_clip_name
from speakdigits.model import N_DIGITS, TrainedVAE, around, saying, voice_of
from speakdigits.params import MelParams
from speakdigits.pitch import to_unit, track
from speakdigits.streams import Stream, stream
from speakdigits.voice_detail import VoiceDetail, interpolate, recording_details
from speakdigits.wav import BadClip


def features(
    samples: np.ndarray, *, mel: MelParams, mel_min: np.ndarray, mel_max: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A prepared clip (:func:`speakdigits.audio.prepare`) as the encoder takes it: its log-mel image and
    its pitch track, each scaled to [0, 1] as the normalize stage scales the training clips."""
    return scale(log_mel(samples, mel=mel)[None], mel_min, mel_max)[0], to_unit(track(samples, mel=mel))


def read_clip(path: Path, mel: MelParams) -> np.ndarray:
    """A wav file, prepared as the extract stage prepares a recording; one line naming it when it cannot be.

    Raises
    ------
    PipelineError
        When the file cannot be read, is not a wav, or is too short, too long or silent.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise PipelineError(f"{path}: cannot read it ({err.strerror or err})") from None
    try:
        return prepare(data, mel)
    except BadClip as err:
        raise PipelineError(f"{path}: {err}; expected a wav file of one spoken digit") from None


def clip_digit(path: Path, given: int | None) -> int:
    """The digit a source clip says: ``given``, else read from its name (``7_george_3.wav``)."""
    if given is not None:
        return given
    parsed = parse_clip_name(Path(path).name)
    if parsed is None:
        raise PipelineError(
            f"{path}: cannot tell from its name which digit it says (a name like 7_george_3.wav does); "
            "give it with --like-digit"
        )
    return parsed[0]


def posterior(mu: np.ndarray, log_var: np.ndarray) -> dict:
    """A Gaussian N(μ, σ²) (diagonal) in the form of :func:`speakdigits.model.fit_latent_gaussians`."""
    return {"mean": np.asarray(mu, dtype=np.float64), "cov": np.diag(np.exp(np.asarray(log_var, dtype=np.float64)))}


def draw(gaussian: dict, count: int, *, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """``count`` latent vectors of one voice: its mean itself for one clip; for more, draws around it
    (:func:`speakdigits.model.around`) with the generation temperature, so that they vary as takes do."""
    mean = np.asarray(gaussian["mean"], dtype=np.float64)
    if count == 1:
        return mean[None]
    return around(gaussian, rng.standard_normal((count, len(mean))), temperature=temperature)


def recording_voices(
    vae: TrainedVAE,
    latents: dict,
    images: np.ndarray,
    pitches: np.ndarray,
    digits: np.ndarray,
    mu: np.ndarray,
    *,
    latent_voice: float,
    mel: MelParams,
    mel_min: np.ndarray,
    mel_max: np.ndarray,
) -> tuple[np.ndarray, VoiceDetail]:
    """Recordings' voices, to say digits in (``generate --like``, ``--between``, the evaluate stage's
    conversions): each recording's offset from its digit's centre (:func:`speakdigits.model.voice_of`)
    times ``latent_voice`` (``generate.latent_voice``), and what the decoder's clip of that voice saying
    the recording's digit misses of the recording (:func:`recording_details`), one row each.

    The decoder says a digit clearly near its centre, where the training clips lie thickest, and from
    a voice it never heard it makes the training voices' average anyway: so a recording's voice is
    pulled toward the centre, and what that loses comes back through its detail. On FSDD, with the
    whole offset (1), the digit judge heard 78 % of the conversions as the digit asked for; with a
    quarter, 94 %, and the speaker judge heard the source speaker in 68 % rather than 62 %
    (docs/results.md). The offset also holds the take's pace, which a smaller share gives up.

    Parameters
    ----------
    images, pitches, digits, mu : numpy.ndarray
        The recordings as the encoder takes them, the digits they say and the encoder's means for them.
    """
    voices = latent_voice * voice_of(mu, digits, latents)
    details = recording_details(
        vae, images, pitches, digits, saying(voices, digits, latents), mel=mel, mel_min=mel_min, mel_max=mel_max
    )
    return voices, details


def chosen_voice(
    model_dir: Path,
    normalized_dir: Path,
    takes: int,
    *,
    digits: list[int],
    like: list[Path] | None = None,
    speaker: str | None = None,
    between: tuple[Path, Path] | None = None,
    like_digit: int | None = None,
    mel: MelParams,
    temperature: float,
    latent_voice: float,
    seed: int,
) -> tuple[np.ndarray, list[dict], VoiceDetail | None]:
    """The voices asked for (``generate --like``, ``--speaker`` or ``--between``) saying ``digits``, one per
    clip: offsets from a digit's centre (:func:`speakdigits.model.voice_of`), to say them with
    (:func:`speakdigits.model.saying`).

    Parameters
    ----------
    model_dir, normalized_dir : Path
        Outputs of the train and normalize stages.
    takes : int
        How many latent vectors: takes of the voice (:func:`draw`), or steps from one voice to the other.
    digits : list of int
        The digit each clip says; clip ``k`` is take ``k % takes``.
    like, speaker, between : optional
        One of: recordings of one speaker, whose posterior means (each encoded with its own digit) give
        the voice, their mean when there are several (a take's voice is mostly that take, its pace and
        level: several takes say more of the speaker), a digit that some of them say said as they say it
        (:func:`by_digit`); a training speaker's name, whose clips' voices'
        Gaussian is the voice (``speakers.json``), moved to where their takes of each digit lie
        (:func:`by_digit`); two recordings, the line between whose voices the
        voices follow (:func:`interpolate`).
    like_digit : int, optional
        The digit the recordings say (default: from their names, :func:`clip_digit`).
    mel : MelParams
        The geometry the model learnt.
    temperature : float
        ``generate.temperature``: the spread of several takes around the voice.
    latent_voice : float
        ``generate.latent_voice``: the share of a recording's voice said from its latent vector
        (:func:`recording_voices`).
    seed : int
        Seed of the draws.

    Returns
    -------
    (numpy.ndarray, list of dict, VoiceDetail or None)
        ``clips x latent_dim`` voices, per clip where it came from (for ``samples.json``), and per clip what
        the latent vector misses of the recordings' voice (:func:`recording_details`; for ``like``, of those
        that say the clip's digit, else of all, :func:`by_digit`; for ``between`` the line from one to the
        other); for a training speaker, theirs saying the clip's digit (:func:`speaker_voice`), None for a
        model saved without it.
    """
    rng = stream(seed, Stream.CHOSEN_VOICE)
    take = np.arange(len(digits)) % takes
    if speaker is not None:
        speakers = read_speakers(model_dir)
        if speaker not in speakers:
            names = sorted(speakers)
            listed = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
            raise PipelineError(f"--speaker {speaker!r}: not a training speaker; expected one of {listed}")
        draws = draw(speakers[speaker], takes, temperature=temperature, rng=rng)
        voices, details = by_digit(draws[take], digits, speaker_voice(speakers[speaker]))
        return voices, [{"speaker": speaker}] * len(digits), details
    paths = [Path(p) for p in (like if like is not None else between)]
    own = [clip_digit(path, like_digit) for path in paths]
    mel_min, mel_max = load_stats(normalized_dir)
    # Each recording read and turned into features in turn, before the model loads: a bad one is refused
    # at once, and only the small images stay in memory, however many recordings --like is given.
    images, pitches = zip(
        *(features(read_clip(path, mel), mel=mel, mel_min=mel_min, mel_max=mel_max) for path in paths)
    )
    vae = load_vae(model_dir)
    images, pitches, own = np.stack(images), np.stack(pitches), np.array(own)
    mu, log_var = vae.encode(images, pitches, own)
    voices, details = recording_voices(
        vae,
        read_latents(model_dir),
        images,
        pitches,
        own,
        mu,
        latent_voice=latent_voice,
        mel=mel,
        mel_min=mel_min,
        mel_max=mel_max,
    )
    ends = [str(path) for path in paths]
    if like is not None:
        # The mean of n independent posteriors N(μᵢ, σᵢ²) has the variance Σ σᵢ² / n².
        spread = np.logaddexp.reduce(np.asarray(log_var, dtype=np.float64), axis=0) - 2 * np.log(len(paths))
        chosen = draw(posterior(voices.mean(axis=0), spread), takes, temperature=temperature, rng=rng)
        voices, details = by_digit(chosen[take], digits, recordings_voice(voices, details, own))
        return voices, [{"like": ends[0] if len(ends) == 1 else ends}] * len(digits), details
    steps = [{"between": ends, "step": int(step)} for step in take]
    return interpolate(voices[0], voices[1], takes)[take], steps, details.between(takes).rows(take)


class DigitVoices(NamedTuple):
    """One voice, digit by digit, as its recordings (or a training speaker's takes) say the digits."""

    #: The mean voice: an offset from a digit's centre (:func:`speakdigits.model.voice_of`).
    mean: np.ndarray
    #: Per digit the recordings say: their voice saying it.
    voices: dict[int, np.ndarray]
    #: Per digit the recordings say: what that voice misses of them (:func:`recording_details`).
    details: dict[int, VoiceDetail]
    #: The detail of a digit none of them says (None: no detail at all, a model saved without one).
    mean_detail: VoiceDetail | None


def by_digit(draws: np.ndarray, digits: list[int], voice: DigitVoices) -> tuple[np.ndarray, VoiceDetail | None]:
    """``voice`` saying ``digits`` (one clip each) as its recordings say them: each of ``draws`` (takes around
    its mean voice) moved by as much as its recordings of the clip's digit lie from that mean, with what that
    misses of them; a digit none of them says, from the mean voice with the mean detail.

    A speaker says each digit their own way, and what a voice misses over one digit does not carry over to
    another: on the synthetic default the training speakers' voices were heard as them in 87 % of their
    clips of every digit said this way, in 74 % from one voice and detail for every digit (docs/results.md).
    """
    mean = np.asarray(voice.mean, dtype=np.float64)
    moved = [voice.voices[d] - mean if d in voice.voices else np.zeros_like(mean) for d in digits]
    chosen = np.asarray(draws, dtype=np.float64) + np.array(moved)
    if voice.mean_detail is None:
        return chosen, None
    return chosen, VoiceDetail.joined([voice.details.get(d, voice.mean_detail) for d in digits])


def saying_every_digit(voice: DigitVoices) -> tuple[np.ndarray, VoiceDetail | None]:
    """``voice`` saying each digit once, from its mean (:func:`by_digit`)."""
    return by_digit(np.tile(voice.mean, (N_DIGITS, 1)), list(range(N_DIGITS)), voice)


def speaker_voice(speaker: dict) -> DigitVoices:
    """A training speaker's voice, digit by digit, from their ``speakers.json`` entry: their mean voice, and
    per digit they said their voice saying it and what that misses of their takes of it
    (:func:`speakdigits.training.speaker_digits`); the mean of those details for the others. A model saved
    before the details were measured per digit has one for every digit (``detail``), or none."""
    entries = speaker.get("digits", {})
    details = {int(d): VoiceDetail.from_json(e["detail"]) for d, e in entries.items()}
    if details:
        mean_detail = VoiceDetail.joined(list(details.values())).mean()
    else:
        mean_detail = VoiceDetail.from_json(speaker["detail"]) if "detail" in speaker else None
    return DigitVoices(
        np.asarray(speaker["mean"], dtype=np.float64),
        {int(d): np.asarray(e["voice"], dtype=np.float64) for d, e in entries.items()},
        details,
        mean_detail,
    )


def recordings_voice(voices: np.ndarray, details: VoiceDetail, own: np.ndarray) -> DigitVoices:
    """Several recordings of one voice (their voices and details, :func:`recording_voices`, and the digits
    they say), digit by digit: the mean of their voices; per digit, the mean voice and detail of those that
    say it; for the others, the mean of all their details."""
    own = np.asarray(own)
    said = sorted(set(own.tolist()))
    return DigitVoices(
        voices.mean(axis=0),
        {d: voices[own == d].mean(axis=0) for d in said},
        {d: details.rows(own == d).mean() for d in said},
        details.mean(),
    )


def latent_map(mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D projection of latent vectors (clips x latent_dim) onto their two principal components.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The clips' coordinates (clips x 2) and the share of the variance each component holds.
    """
    mu = np.asarray(mu, dtype=np.float64)
    centred = mu - mu.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    # The sign of a principal axis is arbitrary: fix it so that the map does not flip between runs.
    axes = axes[:2].copy()
    for axis in axes:
        axis *= 1.0 if axis[np.abs(axis).argmax()] >= 0 else -1.0
    total = float(np.sum(singular**2)) or 1.0
    coords, explained = centred @ axes.T, singular[:2] ** 2 / total
    if coords.shape[1] < 2:  # a one-dimensional latent (or a single clip): the map's second axis is flat
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        explained = np.pad(explained, (0, 2 - len(explained)))
    return coords, explained


def nearest_mean_accuracy(points: np.ndarray, labels: np.ndarray) -> float:
    """Share of points nearest to their own label's mean among every label's mean, each point left out
    of its own label's mean: how clearly the labels separate in the space (chance: about one in the
    number of labels). Labels with one point only are skipped; NaN for fewer than two labels."""
    points, labels = np.asarray(points, dtype=np.float64), np.asarray(labels)
    names = sorted(set(labels.tolist()))
    if len(names) < 2:
        return float("nan")
    sums = {name: points[labels == name].sum(axis=0) for name in names}
    counts = {name: int(np.sum(labels == name)) for name in names}
    right = total = 0
    for point, label in zip(points, labels.tolist()):
        if counts[label] < 2:
            continue
        means = {
            name: (sums[name] - point) / (counts[name] - 1) if name == label else sums[name] / counts[name]
            for name in names
        }
        nearest = min(names, key=lambda name: float(np.sum((point - means[name]) ** 2)))
        right += nearest == label
        total += 1
    return right / total if total else float("nan")


def save_latent_map(path: Path, coords: np.ndarray, digits: np.ndarray, speakers: np.ndarray, explained) -> None:
    """A PNG of :func:`latent_map`'s coordinates twice: coloured by digit, and by speaker."""
    from matplotlib.figure import Figure

    # A Figure of its own, not pyplot's: no backend and no global figure list, so nothing to close.
    fig = Figure(figsize=(11, 5), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, labels, title in ((axes[0], digits, "by digit"), (axes[1], speakers, "by speaker")):
        names = sorted(set(np.asarray(labels).tolist()))
        cmap = "tab10" if len(names) <= 10 else "tab20"
        for index, name in enumerate(names):
            rows = np.asarray(labels) == name
            ax.scatter(coords[rows, 0], coords[rows, 1], s=12, alpha=0.8, label=str(name), color=_colour(cmap, index))
        ax.set_title(f"test clips' latent vectors (μ), {title}", fontsize=10)
        ax.set_xlabel(f"principal component 1 ({100 * explained[0]:.0f} % of the variance)")
        ax.set_ylabel(f"principal component 2 ({100 * explained[1]:.0f} %)" if len(explained) > 1 else "")
        ax.legend(fontsize=7, markerscale=1.5, ncol=1 if len(names) <= 12 else 2, loc="best")
    fig.savefig(path, dpi=80, metadata={"Software": None})


def _colour(cmap: str, index: int):
    from matplotlib import colormaps

    colours = colormaps[cmap].colors
    return colours[index % len(colours)]
