"""The ``extract`` stage: every raw clip to a log-mel image and a pitch track, with its labels.

Clips are read one by one from the raw archive by worker processes (one per
core), and each worker writes its rows straight into ``mels.npy`` and
``pitch.npy`` at their place, so memory stays flat however many clips there
are. Unusable clips are skipped and listed, with the reason, in
``report.json``. ``mel.fmax`` null is resolved here, from the recordings
themselves, to the band they hold (:func:`resolve_geometry`), and the geometry
used is written beside the features.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from speakdigits import audio, pitch, wav
from speakdigits.cores import available_cores, init_worker, spawned_pool
from speakdigits.errors import PipelineError
from speakdigits.files import atomic_dir
from speakdigits.formats import raw, rerun
from speakdigits.formats.features import MELS_NPY, PITCH_NPY, finish_rows, row_offset, start_rows, write_features
from speakdigits.formats.raw import parse_clip_name
from speakdigits.params import MelParams, empty_mel_bands
from speakdigits.speakers import clean_speaker_metadata

# Worker state: each worker process opens the raw archive once.
_worker: dict = {}


def _init_worker(zip_path: str, mel: MelParams, out_dir: str) -> None:
    init_worker()
    _worker["zip"] = zipfile.ZipFile(zip_path)
    _worker["mel"] = mel
    _worker["mels"] = os.open(Path(out_dir) / MELS_NPY, os.O_WRONLY)
    _worker["pitch"] = os.open(Path(out_dir) / PITCH_NPY, os.O_WRONLY)


def _read_member(name: str) -> bytes:
    try:
        return _worker["zip"].read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise PipelineError(
            f"{_worker['zip'].filename}: member '{name}' is corrupt ({err}); {rerun(raw.STAGE)}"
        ) from None


def _write_rows(fd: int, rows: list[np.ndarray], first: int) -> None:
    """Write rows ``first``, ``first + 1``, ... of a :func:`start_rows` file."""
    block = np.stack(rows).astype("<f4", copy=False).tobytes()
    offset = row_offset(first, rows[0].shape)
    while block:  # pwrite may write less than asked
        written = os.pwrite(fd, block, offset)
        block, offset = block[written:], offset + written


def _extract_batch(batch: tuple[int, list[str]]) -> tuple[list[str], dict[str, str]]:
    """Write the mel images and pitch tracks of a batch of clips into ``mels.npy`` and ``pitch.npy``,
    from row ``first`` on.

    Returns the clips made (in order) and the reasons for the rest. The rows
    go straight to the files, not through the parent process, which would
    spend a core's worth of time receiving them.
    """
    first, names = batch
    mel = _worker["mel"]
    made, images, tracks, reasons = [], [], [], {}
    for name in names:
        data = _read_member(name)
        try:
            samples = audio.prepare(data, mel)
        except wav.BadClip as err:
            reasons[name] = str(err)
            continue
        images.append(audio.log_mel(samples, mel=mel))
        tracks.append(pitch.track(samples, mel=mel))
        made.append(name)
    if images:
        _write_rows(_worker["mels"], images, first)
        _write_rows(_worker["pitch"], tracks, first)
    return made, reasons


def native_rate(archive: zipfile.ZipFile, name: str) -> int | None:
    """The sample rate of a member, from its header (None: unreadable; extraction will say why)."""
    try:
        with archive.open(name) as member:
            rate = wav.header_sample_rate(member.read(wav.HEADER_BYTES))
        return rate if rate is not None else wav.decode_wav(archive.read(name))[1]
    except (wav.BadClip, zipfile.BadZipFile, zlib.error, EOFError, OSError):
        return None


def resolve_geometry(mel: MelParams, native_rates: list[int | None]) -> MelParams:
    """The geometry to extract with: ``mel`` with ``fmax`` null resolved to the recordings' band.

    The band is half the sample rate that most of the recordings have (their
    Nyquist frequency: FSDD, recorded at 8 kHz, holds nothing above 4 kHz), at
    most half of ``mel.sample_rate``. Mel bands above what the recordings hold
    would describe only the resampler's silence, and take resolution from the
    band where the voice is: with FSDD at 16 kHz, a quarter of 64 bands.

    Raises
    ------
    PipelineError
        When ``mel.fmin`` is not below that band, or a mel band holds no FFT bin in it.
    """
    if mel.fmax is not None:
        return mel
    counts = collections.Counter(rate for rate in native_rates if rate)
    nyquist = mel.sample_rate / 2
    if counts:
        # The most common rate; among equally common ones, the highest (keep the wider band).
        rate = max(counts.items(), key=lambda item: (item[1], item[0]))[0]
        nyquist = min(nyquist, rate / 2)
    if mel.fmin >= nyquist:
        raise PipelineError(
            f"params.yaml: mel.fmin = {mel.fmin:g} is not below the band the recordings hold (up to {nyquist:g} Hz, "
            "what mel.fmax null means); lower mel.fmin or set mel.fmax"
        )
    empty = empty_mel_bands(
        sample_rate=mel.sample_rate, n_fft=mel.n_fft, n_mels=mel.n_mels, fmin=mel.fmin, fmax=nyquist
    )
    if empty:
        raise PipelineError(
            f"params.yaml: mel.n_mels = {mel.n_mels} is too many for mel.n_fft = {mel.n_fft} in the band the "
            f"recordings hold ({mel.fmin:g} to {nyquist:g} Hz, what mel.fmax null means): {len(empty)} bands hold "
            "no FFT bin; expected fewer bands, a larger n_fft or mel.fmax set"
        )
    return dataclasses.replace(mel, fmax=float(nyquist))


# Clips per task: one message per batch instead of one per clip (the parent's share of
# the work, which it does on a core the workers need).
_BATCH = 64


def extract(raw_dir: Path, out_dir: Path, mel: MelParams, *, jobs: int | None = None) -> dict:
    """Turn the raw data set in ``raw_dir`` into features in ``out_dir``.

    Writes ``mels.npy`` (float32, clips x n_mels x frames, in dB), ``clips.csv``
    (file, digit, speaker, take, gender, age per row of ``mels.npy``) and
    ``report.json`` (skipped files with reasons, metadata notes, counts).

    Parameters
    ----------
    raw_dir : Path
        Output of the download stage.
    out_dir : Path
        Directory to write, replaced atomically.
    mel : MelParams
        The ``mel`` section of params.yaml (``fmax`` null: :func:`resolve_geometry`).
    jobs : int, optional
        Worker processes; by default every core the process may use
        (:func:`speakdigits.cores.available_cores`). The output is the same
        whatever the number.

    Returns
    -------
    dict
        The report.

    Raises
    ------
    PipelineError
        When no usable clip remains.
    """
    checksums = raw.clip_checksums(raw_dir)
    names = list(checksums)
    left_out = raw.skipped_at_download(raw_dir)  # files too large to read
    skipped: list[dict] = list(left_out)
    labels, notes = _label_clips(raw_dir, names, checksums, skipped)

    jobs = jobs or available_cores()
    zip_path = str(Path(raw_dir) / raw.AUDIO_ZIP)
    order = list(labels)
    if mel.fmax is None:
        with zipfile.ZipFile(zip_path) as archive:
            mel = resolve_geometry(mel, [native_rate(archive, name) for name in order])
    with atomic_dir(out_dir) as tmp:
        made = _extract_rows(tmp, zip_path, mel, order, jobs=jobs, skipped=skipped)
        rows = [(name, *labels[name]) for name in made]
        if not rows:
            raise PipelineError(
                f"{raw_dir}: none of the {len(names)} clips is usable (see the reasons: "
                f"{'; '.join(sorted({s['reason'] for s in skipped}))[:300]})"
            )
        report = {
            "clips_found": len(names) + len(left_out),
            "clips_used": len(rows),
            "speakers": len({row[2] for row in rows}),
            "skipped": sorted(skipped, key=lambda s: s["file"]),
            "metadata_notes": notes,
            "shape": list(_row_shapes(mel)[MELS_NPY]),
            "fmax": mel.fmax,
        }
        write_features(tmp, clips=rows, report=report, geometry=mel)
    return report


def _label_clips(
    raw_dir: Path, names: list[str], checksums: dict[str, tuple[int, int]], skipped: list[dict]
) -> tuple[dict[str, tuple], list[str]]:
    """The clips to extract, in the order of ``names``, each with the rest of its ``clips.csv`` row
    (digit, speaker, take, gender, age), and the notes on the speakers' metadata.

    The clips left out (:func:`_unambiguous`) are appended to ``skipped``.
    """
    kept = _unambiguous(names, checksums, skipped)
    labelled = [(name, *kept[name]) for name in names if name in kept]
    speakers = sorted({speaker for _, _, speaker, _ in labelled})
    metadata, notes = clean_speaker_metadata(raw.read_speakers(raw_dir), speakers)
    labels = {
        name: (digit, speaker, take, metadata[speaker]["gender"], metadata[speaker]["age"])
        for name, digit, speaker, take in labelled
    }
    return labels, notes


def _row_shapes(mel: MelParams) -> dict[str, tuple[int, int]]:
    """The shape of one clip's row in each of the feature files."""
    return {MELS_NPY: (mel.n_mels, mel.frames), PITCH_NPY: (2, mel.frames)}


def _extract_rows(
    folder: Path, zip_path: str, mel: MelParams, order: list[str], *, jobs: int, skipped: list[dict]
) -> list[str]:
    """Write the rows of the clips in ``order`` into ``mels.npy`` and ``pitch.npy`` in ``folder``, in ``jobs``
    worker processes.

    Returns the clips made, in row order; the others are appended to
    ``skipped``, with the reason.
    """
    tasks = [(first, order[first : first + _BATCH]) for first in range(0, len(order), _BATCH)]
    # Rows go straight to disk, so memory stays flat.
    clips_made, blocks = [], []
    shapes = _row_shapes(mel)
    for name, shape in shapes.items():
        start_rows(folder / name, row_shape=shape, most_clips=len(order))
    # Spawned (a forked extraction worker aborted under pytest-xdist): each imports what it needs once.
    with spawned_pool(jobs, initializer=_init_worker, initargs=(zip_path, mel, str(folder))) as pool:
        with tqdm(total=len(order), desc="extracting", unit="clip") as progress:
            for (first, _), (made, reasons) in zip(tasks, pool.imap(_extract_batch, tasks)):
                skipped.extend({"file": name, "reason": reason} for name, reason in reasons.items())
                blocks.append((first, len(made)))
                clips_made.extend(made)
                progress.update(len(made) + len(reasons))
    for name, shape in shapes.items():
        finish_rows(folder / name, blocks=blocks, row_shape=shape)
    return clips_made


def _unambiguous(
    names: list[str], checksums: dict[str, tuple[int, int]], skipped: list[dict]
) -> dict[str, tuple[int, str, int]]:
    """The clips to use, with their ``(digit, speaker, take)``: named ``{digit}_{speaker}_{take}.wav``,
    each identity once.

    Files in different sub-folders may share a name. Identical copies (same
    CRC-32 and size) count once, the first path in sorted order; when the
    files differ, none is used, since which recording is meant is unclear.
    Every file left out is appended to ``skipped`` with the reason.
    """
    groups: dict[tuple, list[str]] = {}
    for name in names:
        parsed = parse_clip_name(name)
        if parsed is None:
            skipped.append({"file": name, "reason": "name is not {digit}_{speaker}_{take}.wav"})
        else:
            groups.setdefault(parsed, []).append(name)
    kept = {}
    for identity, group in groups.items():
        first, *others = sorted(group)
        if all(checksums[name] == checksums[first] for name in others):
            kept[first] = identity
            skipped.extend({"file": name, "reason": f"a copy of {first}"} for name in others)
        else:
            skipped.extend(
                {
                    "file": name,
                    "reason": f"{len(group)} different files share this digit, speaker and "
                    f"take ({', '.join(sorted(group))}); none is used",
                }
                for name in group
            )
    return kept
