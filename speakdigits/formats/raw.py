"""The raw data set: every clip in one zip archive, plus speaker metadata.

DVC hashes each file of a directory output, which is slow for AudioMNIST's
30,000 small wavs; so the ``download`` stage packs the clips into a single
uncompressed zip (``audio.zip``) that later stages read member by member.
Beside it, ``speakers.json`` holds the source's per-speaker metadata as found
(AudioMNIST's format: ``{speaker: {"gender": ..., "age": ..., ...}}``), and
``source.json`` says where the data came from.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

from speakdigits.errors import PipelineError
from speakdigits.files import atomic_dir, write_json
from speakdigits.formats import missing, rerun

DIR = Path("data/raw")
STAGE = "download"
AUDIO_ZIP = "audio.zip"
SPEAKERS_JSON = "speakers.json"
SOURCE_JSON = "source.json"

#: Basename of one clip: ``{digit}_{speaker}_{take}.wav``.  The speaker is an
#: ASCII word because AudioMNIST numbers its speakers (``'01'``) while the
#: Free Spoken Digit Dataset names them (``'george'``).  Explicit ASCII
#: classes rather than ``\d``/``\w``, which would also accept e.g. Arabic-Indic
#: digits that ``int()`` silently converts.
CLIP_NAME = re.compile(r"\A(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9]+)_(?P<take>[0-9]+)\.wav\Z")

# A fixed timestamp keeps the archive byte-identical from run to run.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _zip_member(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.external_attr = 0o644 << 16
    archive.writestr(info, data, compress_type=zipfile.ZIP_STORED)


def write_raw(out_dir: Path, clips: Iterable[tuple[str, bytes]], speakers: dict, source: dict) -> int:
    """Write a raw data set atomically.

    Parameters
    ----------
    out_dir : Path
        Target directory, replaced only when everything was written.
    clips : iterable of (str, bytes)
        Member path and wav bytes of each clip, in a fixed order.
    speakers : dict
        Per-speaker metadata as found in the source.
    source : dict
        Where the data came from (written to ``source.json``).

    Returns
    -------
    int
        Number of clips written.

    Raises
    ------
    PipelineError
        When there is no clip at all.
    """
    count = 0
    with atomic_dir(out_dir) as tmp:
        with zipfile.ZipFile(tmp / AUDIO_ZIP, "w", allowZip64=True) as archive:
            for name, data in clips:
                _zip_member(archive, name, data)
                count += 1
        if count == 0:
            raise PipelineError(f"data source {source.get('source')!r}: no .wav files found")
        write_json(tmp / SPEAKERS_JSON, speakers)
        write_json(tmp / SOURCE_JSON, dict(source, clips=count))
    return count


def clip_names(raw_dir: Path) -> list[str]:
    """Member paths of every clip in a raw data set, in archive order."""
    return list(clip_checksums(raw_dir))


def skipped_at_download(raw_dir: Path) -> list[dict]:
    """The files of the source that the download stage left out, with reasons (``source.json``)."""
    path = Path(raw_dir) / SOURCE_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("skipped", [])
    except (FileNotFoundError, json.JSONDecodeError, RecursionError, AttributeError):
        return []


def clip_checksums(raw_dir: Path) -> dict[str, tuple[int, int]]:
    """``{member path: (CRC-32, size)}`` of every clip, in archive order, from the archive's index
    (nothing is decompressed)."""
    path = Path(raw_dir) / AUDIO_ZIP
    try:
        with zipfile.ZipFile(path) as archive:
            return {info.filename: (info.CRC, info.file_size) for info in archive.infolist()}
    except FileNotFoundError:
        raise missing(path, STAGE) from None
    except zipfile.BadZipFile as err:
        raise PipelineError(f"{path}: cannot read the raw clips ({err}); {rerun(STAGE)}") from None


def read_speakers(raw_dir: Path) -> dict:
    """The per-speaker metadata of a raw data set, as found in the source."""
    path = Path(raw_dir) / SPEAKERS_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise PipelineError(f"{path}: nested too deeply; expected {{speaker: {{field: value}}}}") from None


def parse_clip_name(path: str) -> tuple[int, str, int] | None:
    """Decode ``{digit}_{speaker}_{take}.wav`` from the basename of ``path``.

    Parameters
    ----------
    path : str
        A POSIX path or bare file name, e.g. ``'data/01/3_01_7.wav'``.

    Returns
    -------
    tuple of (int, str, int) or None
        ``(digit, speaker, take)``, e.g. ``(3, '01', 7)``; the speaker stays
        a string so ``'01'`` and ``'george'`` keep their spelling.  None when
        the basename is not a clip name.
    """
    match = CLIP_NAME.fullmatch(path.rpartition("/")[2])  # the basename (PurePosixPath's .name, without its cost)
    if match is None:
        return None
    return int(match["digit"]), match["speaker"], int(match["take"])
