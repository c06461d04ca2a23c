"""The ``download`` stage: make the raw data set from the chosen source.

Three kinds of source: eSpeak NG voices (``synthetic``, offline), a known
remote archive (``audiomnist``, ``fsdd``; downloaded once into a cache and
resumed if interrupted), or a local folder or archive read where it is.
Whatever the source, the result is the format of :mod:`speakdigits.formats.raw`.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from speakdigits import espeak, synthetic, wav
from speakdigits.cores import available_cores, spawned_pool
from speakdigits.errors import PipelineError
from speakdigits.formats.raw import write_raw
from speakdigits.params import DataParams
from speakdigits.sources import check_archive, download, read_archive

# Metadata files recognised inside a source, by base name.
METADATA_NAMES = ("audioMNIST_meta.txt", "speakers.json", "meta.json", "metadata.py")


@dataclass(frozen=True)
class RemoteSource:
    """A data set downloaded as one archive."""

    url: str
    filename: str
    sha256: str | None


# GitHub builds these archives on request: pinned to a commit or tag, but not
# guaranteed byte-stable, so no digest is pinned here. The digest of what was
# fetched is recorded in source.json; put it in data.sha256 to pin it.
REMOTE_SOURCES = {
    "audiomnist": RemoteSource(
        url="https://github.com/soerenab/AudioMNIST/archive/6c5eb77d8e9242d6ce31af807f0409d36a246f51.zip",
        filename="AudioMNIST-6c5eb77d8e9242d6ce31af807f0409d36a246f51.zip",
        sha256=None,
    ),
    "fsdd": RemoteSource(
        url="https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz",
        filename="free-spoken-digit-dataset-1.0.10.tar.gz",
        sha256=None,
    ),
}


def _speak_speaker(task: tuple) -> list[tuple[str, bytes]]:
    speaker, takes, seed, noise_db = task
    pairs = [(digit, take) for digit in range(10) for take in range(takes)]
    clips = synthetic.speak_takes(speaker, pairs, seed=seed, noise_db=noise_db)
    return [
        (
            f"{speaker.speaker_id}/{digit}_{speaker.speaker_id}_{take}.wav",
            wav.wav_bytes(samples, espeak.sample_rate()),
        )
        for (digit, take), samples in zip(pairs, clips)
    ]


def synthesize(out_dir: Path, *, speakers: int, takes: int, noise_db: float, seed: int, jobs: int | None = None) -> int:
    """Speak a synthetic AudioMNIST into ``out_dir`` (see :mod:`speakdigits.synthetic`).

    Clips are spoken in parallel on ``jobs`` processes (by default every core
    the process may use: :func:`speakdigits.cores.available_cores`) and
    written in a fixed order, so the archive is byte-identical for the same
    parameters, whatever the number of processes.

    Returns
    -------
    int
        Number of clips.
    """
    voices = synthetic.make_speakers(speakers, seed)
    jobs = jobs or available_cores()
    # Spawned workers, as extraction's (speakdigits.extraction): each loads eSpeak NG once and forks a fresh
    # child per speaker from that single-threaded state (speakdigits.espeak).
    with spawned_pool(jobs) as pool:
        # One task per speaker: all its takes are spoken as one eSpeak sequence, always the same one.
        spoken = pool.imap(_speak_speaker, [(spk, takes, seed, noise_db) for spk in voices])
        clips = (
            clip
            for speaker_clips in tqdm(spoken, total=len(voices), desc="speaking", unit="speaker")
            for clip in speaker_clips
        )
        count = write_raw(
            out_dir,
            clips,
            speakers={spk.speaker_id: synthetic.speaker_metadata(spk) for spk in voices},
            source={
                "source": "synthetic",
                "speakers": speakers,
                "takes": takes,
                "seed": seed,
                "sample_rate": espeak.sample_rate(),
            },
        )
    return count


# ------------------------------------------------------- archives and folders


def _parse_metadata(name: str, data: bytes) -> dict:
    """Speaker metadata from AudioMNIST's JSON or the FSDD's ``metadata.py``.

    Expected: ``{speaker: {field: value}}`` with plain values; the extract
    stage reads the fields it knows tolerantly and notes the rest.

    Raises
    ------
    PipelineError
        Naming the file, when it is not that shape (unparsable, or nested deeper).
    """
    text = data.decode("utf-8", errors="replace")
    expected = "expected {speaker: {field: value}}"
    try:
        if name.endswith(".py"):
            # The FSDD ships a Python literal ``metadata = {...}``: read it as data, never run it.
            value = ast.literal_eval(text[text.find("{") :]) if "{" in text else None
        else:
            value = json.loads(text)
    except RecursionError:
        raise PipelineError(f"{name}: speaker metadata nested too deeply; {expected}") from None
    except (ValueError, SyntaxError, MemoryError) as err:  # JSONDecodeError is a ValueError
        raise PipelineError(f"{name}: cannot read the speaker metadata ({type(err).__name__}); {expected}") from None
    scalar = (str, int, float, bool, type(None))
    if not isinstance(value, dict) or not all(
        isinstance(fields, dict) and all(isinstance(v, scalar) for v in fields.values()) for fields in value.values()
    ):
        raise PipelineError(f"{name}: speaker metadata is not {{speaker: {{field: value}}}} with plain values")
    return value


def _keep(path: str) -> bool:
    base = path.rsplit("/", 1)[-1]
    return base.lower().endswith(".wav") or base in METADATA_NAMES


def collect(out_dir: Path, source: Path, *, origin: dict) -> int:
    """Pack the wav files of a folder or archive into a raw data set.

    Every ``.wav`` in any sub-folder is kept under its relative path (the
    ``extract`` stage reports names it cannot parse); the first recognised
    metadata file (see ``METADATA_NAMES``) becomes ``speakers.json``. Files
    too large to be a clip (``wav.MAX_CLIP_BYTES``) are not read; they are
    listed with the reason in ``source.json``'s ``skipped``, which the extract
    stage's report includes.

    Returns
    -------
    int
        Number of clips.
    """
    # Filled while the clips stream past; write_raw writes them after the last clip.
    speakers: dict = {}
    info = dict(origin, metadata_file=None, skipped=[])

    def clips() -> Iterator[tuple[str, bytes]]:
        for name, data in tqdm(read_archive(source, _keep, max_bytes=wav.MAX_CLIP_BYTES), desc="packing", unit="file"):
            if data is None:
                info["skipped"].append(
                    {"file": name, "reason": f"larger than {wav.MAX_CLIP_BYTES / 2**20:.0f} MB unpacked; not read"}
                )
            elif name.lower().endswith(".wav"):
                yield name, data
            elif info["metadata_file"] is None:
                speakers.update(_parse_metadata(name, data))
                info["metadata_file"] = name

    return write_raw(out_dir, clips(), speakers, info)


def build_raw(
    out_dir: Path, *, data: DataParams, cache_dir: Path, remotes: dict[str, RemoteSource] = REMOTE_SOURCES
) -> int:
    """The ``download`` stage: make ``out_dir`` from the ``data`` params.

    Parameters
    ----------
    out_dir : Path
        The raw data set to write.
    data : DataParams
        The ``data`` section of params.yaml.
    cache_dir : Path
        Where downloaded archives are kept (and partial downloads resumed),
        shared by every experiment on the machine: see :func:`download_cache`.
    remotes : dict
        The known remote data sets by name.

    Returns
    -------
    int
        Number of clips.
    """
    source = data.source
    if source == "synthetic":
        cfg = data.synthetic
        return synthesize(out_dir, speakers=cfg.speakers, takes=cfg.takes, noise_db=cfg.noise_db, seed=cfg.seed)
    remote = remote_source(source, remotes)
    if remote is not None:
        archive = Path(cache_dir) / remote.filename
        with _locked(archive):  # queued experiments running side by side fetch it once
            digest = download(remote.url, archive, sha256=data.sha256 or remote.sha256, check=check_archive)
        return collect(out_dir, archive, origin={"source": source, "url": remote.url, "sha256": digest})
    path = existing_local_source(source, Path.cwd())
    return collect(out_dir, path, origin={"source": str(path.resolve())})


def remote_source(source: str, remotes: dict[str, RemoteSource] = REMOTE_SOURCES) -> RemoteSource | None:
    """What ``data.source`` downloads: a known data set by name, or an http(s) address; None otherwise."""
    return remotes.get(source) or url_source(source)


def check_source(source: str, cwd: Path) -> None:
    """Refuse, in one line, a ``data.source`` that names a local folder or archive that is not there.

    Cheap: no download and no reading; the check_params stage runs it.
    """
    if source != "synthetic" and remote_source(source) is None:
        existing_local_source(source, cwd)


def url_source(source: str) -> RemoteSource | None:
    """An ``http(s)://`` address as a :class:`RemoteSource`, else None.

    The cached file's name keeps the address's last part (so its kind,
    ``.zip`` or ``.tar.gz``, shows) after a digest of the whole address, so
    that two addresses never share a cached file.
    """
    if not source.startswith(("http://", "https://")):
        return None
    name = source.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "download"
    return RemoteSource(url=source, filename=f"{hashlib.sha256(source.encode()).hexdigest()[:12]}-{name}", sha256=None)


def download_cache() -> Path:
    """Where downloaded archives are kept: one place per machine and user, outside any workspace.

    ``$SPEAKDIGITS_CACHE`` if set, else ``$XDG_CACHE_HOME/speakdigits``, else
    ``~/.cache/speakdigits``; archives go in its ``downloads/``. Every clone,
    experiment and queued run (each in its own copy of the repository) reads
    the same archives, so each is fetched once.
    """
    root = (
        os.environ.get("SPEAKDIGITS_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "speakdigits"
    )
    return Path(root).expanduser() / "downloads"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` + ``.lock`` (released when the process dies, too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def existing_local_source(source: str, cwd: Path) -> Path:
    """:func:`local_source`, refused in one line when nothing is there.

    Raises
    ------
    PipelineError
        Naming the value, where it was looked for and what is expected.
    """
    path = local_source(source, cwd)
    if not path.exists():
        raise PipelineError(
            f"data.source = {source!r}: no such file or folder (a relative path is read from the repository root, "
            f"{cwd}); expected 'synthetic', 'audiomnist', 'fsdd' or a local folder, .zip or .tar.gz of "
            "{digit}_{speaker}_{take}.wav files"
        )
    return path


def local_source(source: str, cwd: Path) -> Path:
    """Where a local ``data.source`` is: absolute, or relative to the repository root ``cwd``.

    ``dvc exp run --queue`` (and ``--temp``) runs each experiment in a copy of
    the repository inside its ``.dvc/tmp/exps/``; a relative path such as
    ``../shared/data/fsdd`` means the same there as in the repository the queue
    belongs to, so it is read from that repository's root when the copy has no
    such path.
    """
    path = Path(source).expanduser()
    if path.is_absolute() or (cwd / path).exists():
        return cwd / path
    parts = Path(cwd).resolve().parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i]) / path
    return cwd / path
