"""The download stage's sources end to end: remote archives in AudioMNIST and
FSDD layouts served from 127.0.0.1, local folders and archives, metadata."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from speakdigits.acquire import RemoteSource, build_raw, local_source
from speakdigits.errors import PipelineError
from speakdigits.extraction import extract
from speakdigits.formats import raw
from speakdigits.params import DataParams, MelParams, SyntheticParams

from conftest import REPO

MEL = MelParams(**yaml.safe_load((REPO / "params.yaml").read_text())["mel"] | {"n_mels": 16, "frames": 16})

# AudioMNIST's real metadata is messy: an age as a string, an impossible age, a missing speaker.
AUDIOMNIST_META = {
    "01": {"accent": "german", "age": "30", "gender": "male", "native speaker": "yes"},
    "02": {"accent": "german", "age": 250, "gender": "female", "native speaker": "no"},
}
FSDD_METADATA_PY = """metadata = {
    'george': {'gender': 'male', 'accent': 'Greek', 'language': 'english'},
    'lucas': {'gender': 'male', 'accent': 'German/Mexican', 'language': 'english'},
}
"""


def tone_wav(freq: float, sr: int) -> bytes:
    t = np.arange(int(0.5 * sr)) / sr
    buffer = io.BytesIO()
    sf.write(buffer, 0.5 * np.sin(2 * np.pi * freq * t) * np.hanning(len(t)), sr, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def audiomnist_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for speaker in ("01", "02", "03"):
            for digit in range(2):
                archive.writestr(
                    f"AudioMNIST-x/data/{speaker}/{digit}_{speaker}_0.wav", tone_wav(200 + 50 * digit, 48000)
                )
        archive.writestr("AudioMNIST-x/data/audioMNIST_meta.txt", json.dumps(AUDIOMNIST_META))
        archive.writestr("AudioMNIST-x/README.md", "not a clip")
    return path


def fsdd_tar(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        files = {
            f"fsdd-1.0.10/recordings/{d}_{s}_{t}.wav": tone_wav(300 + 40 * d, 8000)
            for d in range(2)
            for s in ("george", "lucas")
            for t in range(2)
        }
        files["fsdd-1.0.10/metadata.py"] = FSDD_METADATA_PY.encode()
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def data_params(source: str, sha256: str | None = None) -> DataParams:
    return DataParams(
        source=source, sha256=sha256, synthetic=SyntheticParams(speakers=3, takes=1, noise_db=-60.0, seed=0)
    )


def test_audiomnist_layout_downloaded_and_packed(server, tmp_path):
    audiomnist_zip(server.root / "am.zip")
    remotes = {"audiomnist": RemoteSource(url=server.url("am.zip"), filename="am.zip", sha256=None)}
    count = build_raw(tmp_path / "raw", data=data_params("audiomnist"), cache_dir=tmp_path / "cache", remotes=remotes)
    assert count == 6
    assert sorted(raw.clip_names(tmp_path / "raw")) == sorted(
        f"AudioMNIST-x/data/{s}/{d}_{s}_0.wav" for s in ("01", "02", "03") for d in range(2)
    )
    assert raw.read_speakers(tmp_path / "raw") == AUDIOMNIST_META
    source = json.loads((tmp_path / "raw" / raw.SOURCE_JSON).read_text())
    assert source["sha256"] == __import__("hashlib").sha256((server.root / "am.zip").read_bytes()).hexdigest()
    assert source["metadata_file"] == "AudioMNIST-x/data/audioMNIST_meta.txt"
    assert (tmp_path / "cache" / "am.zip").is_file()  # kept for the next run

    # The messy metadata is read tolerantly, and what was ignored is said.
    report = extract(tmp_path / "raw", tmp_path / "features", MEL, jobs=1)
    assert report["clips_used"] == 6
    notes = " | ".join(report["metadata_notes"])
    assert "impossible age 250" in notes and "03" in notes
    rows = (tmp_path / "features" / "clips.csv").read_text().splitlines()
    assert "AudioMNIST-x/data/01/0_01_0.wav,0,01,0,male,30" in rows
    assert "AudioMNIST-x/data/02/1_02_0.wav,1,02,0,female," in rows


def test_fsdd_layout_reads_metadata_py_as_data(server, tmp_path):
    fsdd_tar(server.root / "fsdd.tar.gz")
    remotes = {"fsdd": RemoteSource(url=server.url("fsdd.tar.gz"), filename="fsdd.tar.gz", sha256=None)}
    assert build_raw(tmp_path / "raw", data=data_params("fsdd"), cache_dir=tmp_path / "cache", remotes=remotes) == 8
    speakers = raw.read_speakers(tmp_path / "raw")
    assert {s: v["gender"] for s, v in speakers.items()} == {"george": "male", "lucas": "male"}


def test_wrong_pinned_digest_keeps_nothing(server, tmp_path):
    audiomnist_zip(server.root / "am.zip")
    remotes = {"audiomnist": RemoteSource(url=server.url("am.zip"), filename="am.zip", sha256=None)}
    with pytest.raises(PipelineError, match="sha256"):
        build_raw(
            tmp_path / "raw",
            data=data_params("audiomnist", sha256="0" * 64),
            cache_dir=tmp_path / "cache",
            remotes=remotes,
        )
    assert not (tmp_path / "raw").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["am.zip.lock"]  # the lock that queued runs share


def test_a_truncated_archive_is_never_cached_and_the_next_run_fetches_it(server, tmp_path):
    # A server whose Content-Length (and body) is 1,000 bytes short: complete by HTTP, cached once as
    # complete, and every later run failed with "File is not a zip file".
    audiomnist_zip(server.root / "am.zip")
    whole = (server.root / "am.zip").read_bytes()
    (server.root / "am.zip").write_bytes(whole[:-1000])
    remotes = {"audiomnist": RemoteSource(url=server.url("am.zip"), filename="am.zip", sha256=None)}
    cache = tmp_path / "cache"
    with pytest.raises(
        PipelineError, match=r"am.zip: the file is damaged \(not a readable archive: .*\); it was deleted$"
    ):
        build_raw(tmp_path / "raw", data=data_params("audiomnist"), cache_dir=cache, remotes=remotes)
    assert [p.name for p in cache.iterdir()] == ["am.zip.lock"] and not (tmp_path / "raw").exists()

    (server.root / "am.zip").write_bytes(whole)  # the server mended
    assert build_raw(tmp_path / "raw", data=data_params("audiomnist"), cache_dir=cache, remotes=remotes) == 6


@pytest.mark.parametrize("kind", ["folder", "zip", "tar.gz"])
def test_local_source_is_read_where_it_is(tmp_path, kind):
    archive = audiomnist_zip(tmp_path / "am.zip")
    if kind == "zip":
        source = archive
    else:
        folder = tmp_path / "copy"
        zipfile.ZipFile(archive).extractall(folder)
        source = folder
        if kind == "tar.gz":
            source = tmp_path / "am.tar.gz"
            with tarfile.open(source, "w:gz") as tar:
                tar.add(folder, arcname=".")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert build_raw(tmp_path / "raw", data=data_params(str(source)), cache_dir=tmp_path / "cache") == 6
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if not p.is_relative_to(tmp_path / "raw"))
    assert after == before  # nothing copied or unpacked beside the source
    assert raw.read_speakers(tmp_path / "raw") == AUDIOMNIST_META


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("speakers.json", "[" * 100_000 + "]" * 100_000, "speakers.json: speaker metadata nested too deeply"),
        ("speakers.json", '{"01": {"gender": {"a": {"b": 1}}}}', "speakers.json: speaker metadata is not"),
        ("meta.json", '{"01": ', "meta.json: cannot read the speaker metadata (JSONDecodeError)"),
        ("metadata.py", "metadata = {'x': " + "(" * 100_000, "metadata.py: "),
    ],
)
def test_bad_speaker_metadata_is_refused_in_one_line(tmp_path, name, text, expected):
    source = tmp_path / "source"
    source.mkdir()
    (source / "1_a_0.wav").write_bytes(tone_wav(440, 8000))
    (source / name).write_text(text)
    with pytest.raises(PipelineError) as err:
        build_raw(tmp_path / "raw", data=data_params(str(source)), cache_dir=tmp_path / "cache")
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    assert not (tmp_path / "raw").exists()


# Packs the source into raw/ and extracts it, in a fresh process, then prints its peak memory.
PACK_AND_EXTRACT = """
import dataclasses, json, sys
from pathlib import Path
from speakdigits.acquire import build_raw
from speakdigits.extraction import extract
from speakdigits.params import MelParams, load_params
out = Path(sys.argv[2])
build_raw(out / "raw", data=dataclasses.replace(load_params().data, source=sys.argv[1]), cache_dir=out / "cache")
report = extract(out / "raw", out / "features", MelParams(**json.loads(sys.argv[3])), jobs=1)
# VmHWM, not getrusage's ru_maxrss: that keeps the peak of the process before exec (pytest's, here).
peak_kb = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
print(json.dumps({"report": report, "peak_mb": peak_kb / 1024}))
"""


def test_an_oversized_member_is_reported_and_never_read(tmp_path):
    """300 MB of zeros (300 KB zipped) named like a clip: listed as skipped, and memory stays far below 300 MB."""
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("01/0_01_0.wav", tone_wav(440, 8000))
        with zf.open("01/1_01_0.wav", "w", force_zip64=True) as member:
            for _ in range(300):
                member.write(bytes(2**20))
    assert archive.stat().st_size < 2 * 2**20
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PACK_AND_EXTRACT,
            str(archive),
            str(tmp_path / "out"),
            json.dumps(dataclasses.asdict(MEL)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert shown["report"]["clips_found"] == 2 and shown["report"]["clips_used"] == 1
    assert shown["report"]["skipped"] == [{"file": "01/1_01_0.wav", "reason": "larger than 45 MB unpacked; not read"}]
    assert shown["peak_mb"] < 400, shown["peak_mb"]  # about 260; 640 when the member is read


def test_missing_local_source_names_it_and_the_alternatives(tmp_path):
    with pytest.raises(PipelineError) as err:
        build_raw(tmp_path / "raw", data=data_params(str(tmp_path / "nowhere")), cache_dir=tmp_path)
    message = str(err.value)
    assert "nowhere" in message and "synthetic" in message and "\n" not in message
    assert not (tmp_path / "raw").exists()


def test_source_without_any_wav_is_an_error(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("no clips here")
    with pytest.raises(PipelineError, match="no .wav files"):
        build_raw(tmp_path / "raw", data=data_params(str(folder)), cache_dir=tmp_path)
    assert not (tmp_path / "raw").exists()


def test_a_relative_local_source_is_read_from_the_repository_root(tmp_path):
    repo, shared = tmp_path / "repo", tmp_path / "shared" / "fsdd"
    shared.mkdir(parents=True)
    (repo / ".dvc" / "tmp" / "exps" / "tmpq1w2").mkdir(parents=True)
    assert local_source("../shared/fsdd", repo) == repo / "../shared/fsdd"
    assert local_source(str(shared), repo) == shared  # absolute paths are taken as they are
    # A queued experiment runs in a copy inside .dvc/tmp/exps: the path means what it means in the repository.
    copy = repo / ".dvc" / "tmp" / "exps" / "tmpq1w2"
    assert local_source("../shared/fsdd", copy).resolve() == shared.resolve()
    # Elsewhere a missing relative path stays where it was asked for, for the error message to name it.
    assert local_source("../nowhere", repo) == repo / "../nowhere"
