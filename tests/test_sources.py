"""Tests for speakdigits.sources: downloads against a real local HTTP server,
archive reading on real zip/tar files, and clip-name parsing.  Offline: the
only network traffic goes to 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speakdigits.errors import PipelineError
from speakdigits.formats.raw import CLIP_NAME, parse_clip_name
from speakdigits.sources import download, read_archive
from tests.conftest import FileServer


def _blob(size: int = 200_000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _validator(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.validator")


# --------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------


def test_dropped_connection_resumes_with_range(server: FileServer, tmp_path: Path, capsys):
    data = _blob()
    (server.root / "blob.bin").write_bytes(data)
    server.drops_left = 1
    dest = tmp_path / "out" / "blob.bin"

    digest = download(server.url("blob.bin"), dest, progress=True)

    assert dest.read_bytes() == data
    assert digest == _sha(data)
    assert not _part(dest).exists()
    assert [r[0] for r in server.requests] == ["/blob.bin", "/blob.bin"]
    assert server.requests[0][1] is None
    resumed = re.fullmatch(r"bytes=(\d+)-", server.requests[1][1] or "")
    assert resumed and 0 < int(resumed[1]) < len(data)
    assert "blob.bin" in capsys.readouterr().err  # the tqdm bar went to stderr


def test_connection_that_keeps_dropping_gives_up_and_keeps_part(server: FileServer, tmp_path: Path):
    data = _blob(seed=7)
    (server.root / "blob.bin").write_bytes(data)
    server.drops_left = 100
    dest = tmp_path / "blob.bin"
    url = server.url("blob.bin")

    with pytest.raises(PipelineError) as info:
        download(url, dest, retries=2, progress=False)

    message = str(info.value)
    assert url in message and "3 attempts" in message and "\n" not in message
    assert len(server.requests) == 3  # the first try and two resumptions
    assert all(r[1] is not None for r in server.requests[1:])
    assert not dest.exists()
    kept = _part(dest).read_bytes()  # kept, so the next run resumes
    assert 0 < len(kept) < len(data) and data.startswith(kept)


def _etag(data: bytes) -> str:
    """The test server's ETag for ``data``."""
    return f'"{_sha(data)[:16]}"'


def test_part_from_earlier_run_is_resumed(server: FileServer, tmp_path: Path, capsys):
    data = _blob(seed=1)
    (server.root / "blob.bin").write_bytes(data)
    dest = tmp_path / "blob.bin"
    _part(dest).write_bytes(data[:1000])
    _validator(dest).write_text(_etag(data) + "\n")  # the version the partial file came from

    digest = download(server.url("blob.bin"), dest, sha256=_sha(data), progress=False)

    assert digest == _sha(data)
    assert dest.read_bytes() == data
    assert server.requests == [("/blob.bin", "bytes=1000-")]
    assert server.if_ranges == [_etag(data)]
    assert not _part(dest).exists() and not _validator(dest).exists()
    assert capsys.readouterr().err == ""  # progress=False is silent


def test_resume_after_the_remote_file_changed_starts_over(server: FileServer, tmp_path: Path):
    """If-Range: the server sees the partial file is of an older version and sends the whole new one."""
    old, new = _blob(seed=8), _blob(seed=9)
    (server.root / "blob.bin").write_bytes(old)
    server.drops_left = 1
    dest = tmp_path / "blob.bin"
    with pytest.raises(PipelineError):
        download(server.url("blob.bin"), dest, retries=0, progress=False)
    assert 0 < _part(dest).stat().st_size < len(old)  # half of the old version, kept to resume

    (server.root / "blob.bin").write_bytes(new)  # upstream publishes a new version meanwhile
    assert download(server.url("blob.bin"), dest, progress=False) == _sha(new)
    assert dest.read_bytes() == new  # not the old half with the new rest spliced on
    assert server.if_ranges[-1] == _etag(old)


def test_part_without_a_known_version_is_not_resumed(server: FileServer, tmp_path: Path):
    data = _blob(seed=10)
    (server.root / "blob.bin").write_bytes(data)
    server.send_etag = False  # and no Last-Modified either: nothing tells versions apart
    server.drops_left = 1
    dest = tmp_path / "blob.bin"
    assert download(server.url("blob.bin"), dest, progress=False) == _sha(data)
    assert server.requests == [("/blob.bin", None), ("/blob.bin", None)]  # started over, no Range

    _part(dest).write_bytes(b"left by an older version of this program")  # no validator beside it
    dest.unlink()
    download(server.url("blob.bin"), dest, progress=False)
    assert dest.read_bytes() == data and server.requests[-1] == ("/blob.bin", None)


def test_a_server_that_ignores_if_range_and_names_no_version_is_not_spliced(server: FileServer, tmp_path: Path):
    old, new = _blob(seed=11), _blob(seed=12)
    (server.root / "blob.bin").write_bytes(old)
    server.drops_left = 1
    dest = tmp_path / "blob.bin"
    with pytest.raises(PipelineError):
        download(server.url("blob.bin"), dest, retries=0, progress=False)
    assert 0 < _part(dest).stat().st_size < len(old)  # half of v1, with v1's version beside it

    (server.root / "blob.bin").write_bytes(new)  # v2 upstream; the server sends its tail to v1's Range
    server.ignore_if_range, server.send_etag = True, False  # ... and says nothing of versions
    download(server.url("blob.bin"), dest, progress=False)
    assert dest.read_bytes() == new  # not v1's head with v2's tail
    assert server.requests[-2:] == [("/blob.bin", f"bytes={len(old) // 2}-"), ("/blob.bin", None)]


def test_an_endless_body_stops_at_the_size_limit_and_keeps_nothing(server: FileServer, tmp_path: Path):
    (server.root / "blob.bin").write_bytes(_blob(100_000, seed=13))
    server.endless = True
    dest = tmp_path / "downloads" / "blob.bin"
    with pytest.raises(PipelineError, match=r"above the 1000000-byte limit of a download; nothing was kept$"):
        download(server.url("blob.bin"), dest, progress=False, most_bytes=1_000_000)
    assert sorted(dest.parent.iterdir()) == []


def test_a_cached_file_damaged_on_disk_is_fetched_again_with_a_note(server: FileServer, tmp_path: Path, capsys):
    data = _blob(seed=14)
    (server.root / "blob.bin").write_bytes(data)
    dest = tmp_path / "blob.bin"
    download(server.url("blob.bin"), dest, progress=False)
    assert download(server.url("blob.bin"), dest, progress=False) == _sha(data) and len(server.requests) == 1

    damaged = bytearray(data)
    damaged[5000:7000] = bytes(255 - b for b in damaged[5000:7000])  # 2,000 bytes flipped, same size
    dest.write_bytes(bytes(damaged))
    assert download(server.url("blob.bin"), dest, progress=False) == _sha(data)
    assert dest.read_bytes() == data and len(server.requests) == 2
    note = capsys.readouterr().err.strip()
    assert note.startswith(f"download: {dest} is not the file fetched from ") and note.endswith("fetching it again")


def test_server_ignoring_range_restarts_from_zero(server: FileServer, tmp_path: Path):
    data = _blob(seed=2)
    (server.root / "blob.bin").write_bytes(data)
    server.ignore_range = True
    dest = tmp_path / "blob.bin"
    _part(dest).write_bytes(b"stale bytes from some other file")
    _validator(dest).write_text(_etag(data) + "\n")

    download(server.url("blob.bin"), dest, progress=False)

    assert dest.read_bytes() == data  # not appended to the stale prefix
    assert server.requests == [("/blob.bin", "bytes=32-")]


def test_part_longer_than_file_restarts_from_zero(server: FileServer, tmp_path: Path):
    data = _blob(1000, seed=3)
    (server.root / "blob.bin").write_bytes(data)
    dest = tmp_path / "blob.bin"
    _part(dest).write_bytes(b"x" * 5000)  # server answers 416 to bytes=5000-
    _validator(dest).write_text(_etag(data) + "\n")

    download(server.url("blob.bin"), dest, progress=False)

    assert dest.read_bytes() == data
    assert server.requests == [("/blob.bin", "bytes=5000-"), ("/blob.bin", None)]


def test_wrong_sha256_raises_and_keeps_nothing(server: FileServer, tmp_path: Path):
    data = _blob(seed=4)
    (server.root / "blob.bin").write_bytes(data)
    dest = tmp_path / "blob.bin"
    url = server.url("blob.bin")
    wrong = "0" * 64

    with pytest.raises(PipelineError) as info:
        download(url, dest, sha256=wrong, progress=False)

    message = str(info.value)
    assert url in message and wrong in message and _sha(data) in message
    assert "\n" not in message
    assert not dest.exists()
    assert not _part(dest).exists()


def test_right_sha256_passes_and_existing_file_skips_network(server: FileServer, tmp_path: Path):
    data = _blob(seed=5)
    (server.root / "blob.bin").write_bytes(data)
    dest = tmp_path / "blob.bin"
    url = server.url("blob.bin")

    assert download(url, dest, sha256=_sha(data).upper(), progress=False) == _sha(data)
    assert dest.read_bytes() == data
    assert len(server.requests) == 1

    # Already there and verified: no second request.
    assert download(url, dest, sha256=_sha(data), progress=False) == _sha(data)
    assert download(url, dest, progress=False) == _sha(data)
    assert len(server.requests) == 1


def test_existing_file_with_wrong_digest_is_replaced(server: FileServer, tmp_path: Path):
    data = _blob(seed=6)
    (server.root / "blob.bin").write_bytes(data)
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"an older, different file")

    download(server.url("blob.bin"), dest, sha256=_sha(data), progress=False)

    assert dest.read_bytes() == data
    assert len(server.requests) == 1


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_fails_fast_with_offline_hint(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    url = f"http://127.0.0.1:{_closed_port()}/audio.zip"
    dest = tmp_path / "audio.zip"

    started = time.monotonic()
    with pytest.raises(PipelineError) as info:
        download(url, dest, progress=False)
    elapsed = time.monotonic() - started

    message = str(info.value)
    assert elapsed < 1.5  # no retries with backoff on a first-contact failure
    assert url in message and "synthetic" in message and "\n" not in message
    assert not dest.exists() and not _part(dest).exists()


def test_http_404_names_the_status(server: FileServer, tmp_path: Path):
    url = server.url("missing.zip")
    with pytest.raises(PipelineError, match="404") as info:
        download(url, tmp_path / "missing.zip", progress=False)
    assert url in str(info.value)
    assert len(server.requests) == 1  # an HTTP error is not retried
    assert not (tmp_path / "missing.zip.part").exists()


def test_invalid_url_is_a_pipeline_error(tmp_path: Path):
    with pytest.raises(PipelineError, match="not-a-url"):
        download("not-a-url", tmp_path / "x.zip", progress=False)


# --------------------------------------------------------------------------
# read_archive on the two dataset layouts, downloaded from the server
# --------------------------------------------------------------------------


def _wav(seed: int) -> bytes:
    t = np.arange(300) / 8000
    tone = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t)
    buffer = io.BytesIO()
    sf.write(buffer, tone, 8000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


AUDIOMNIST = {
    "data/audioMNIST_meta.txt": b'{"01": {"age": "30"}}',
    "data/02/9_02_49.wav": _wav(1),
    "data/01/3_01_7.wav": _wav(2),
    "data/01/0_01_0.wav": _wav(3),
    "data/01/notes.wav.txt": b"not a clip",
}
FSDD = {
    "free-spoken-digit-dataset-1.0.10/README.md": b"# FSDD",
    "free-spoken-digit-dataset-1.0.10/recordings/7_theo_12.wav": _wav(4),
    "free-spoken-digit-dataset-1.0.10/recordings/3_george_7.wav": _wav(5),
    "free-spoken-digit-dataset-1.0.10/recordings/._3_george_7.wav": b"macOS junk",
}


def _clip(path: str) -> bool:
    return CLIP_NAME.fullmatch(path.rsplit("/", 1)[-1]) is not None


def _write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():  # deliberately unsorted
            archive.writestr(name, data)
    return path


def _write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(("gz", "tgz")) else "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _write(path: Path, files: dict[str, bytes]) -> Path:
    return _write_zip(path, files) if path.suffix == ".zip" else _write_tar(path, files)


@pytest.mark.parametrize("archive_name", ["audio.zip", "audio.tar.gz", "audio.tgz", "audio.tar"])
@pytest.mark.parametrize("layout", [AUDIOMNIST, FSDD], ids=["audiomnist", "fsdd"])
def test_download_then_read_dataset_layouts(
    server: FileServer, tmp_path: Path, archive_name: str, layout: dict[str, bytes]
):
    _write(server.root / archive_name, layout)
    dest = tmp_path / "raw" / archive_name
    download(server.url(archive_name), dest, progress=False)

    got = list(read_archive(dest, _clip))

    expected = sorted((name, data) for name, data in layout.items() if _clip(name))
    assert got == expected
    assert len(got) == (3 if layout is AUDIOMNIST else 2)


def test_tar_members_out_of_order_come_out_sorted(tmp_path: Path):
    files = {f"r/{d}_s_{t}.wav": bytes([d, t]) for d in (9, 1, 5) for t in (3, 0)}
    archive = _write_tar(tmp_path / "x.tar.gz", files)
    assert [name for name, _ in read_archive(archive, _clip)] == sorted(files)
    assert dict(read_archive(archive, _clip)) == files


def test_zip_keeps_last_copy_of_a_duplicated_name(tmp_path: Path):
    path = tmp_path / "dup.zip"
    with zipfile.ZipFile(path, "w") as archive, pytest.warns(UserWarning):
        archive.writestr("a/1_x_1.wav", b"first")
        archive.writestr("a/1_x_1.wav", b"second")
    assert list(read_archive(path, _clip)) == [("a/1_x_1.wav", b"second")]


# --------------------------------------------------------------------------
# Unsafe archives are refused, nothing lands on disk
# --------------------------------------------------------------------------


def _no_evil_anywhere(tmp_path: Path) -> None:
    for folder in (tmp_path, tmp_path.parent, tmp_path.parent.parent):
        assert not (folder / "evil.wav").exists()
    assert not list(tmp_path.rglob("evil.wav"))


def _tar_with(path: Path, *infos: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in infos:
            info.size = len(data) if info.isreg() else 0
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _assert_refused(source: Path, entry: str, tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as info:
        list(read_archive(source, _clip))
    message = str(info.value)
    assert f"'{entry}'" in message and str(source) in message
    assert "unsafe entry" in message and "\n" not in message
    _no_evil_anywhere(tmp_path)


def test_zip_with_parent_traversal_is_refused(tmp_path: Path):
    archive = _write_zip(tmp_path / "evil.zip", {"data/01/3_01_7.wav": _wav(0), "../evil.wav": _wav(1)})
    assert "../evil.wav" in zipfile.ZipFile(archive).namelist()  # stored verbatim
    _assert_refused(archive, "../evil.wav", tmp_path)


def test_zip_traversal_is_refused_even_when_not_kept(tmp_path: Path):
    archive = _write_zip(tmp_path / "evil.zip", {"a/1_x_1.wav": b"ok", "../notes.txt": b"x"})
    _assert_refused(archive, "../notes.txt", tmp_path)


def test_zip_symlink_entry_is_refused(tmp_path: Path):
    path = tmp_path / "link.zip"
    link = zipfile.ZipInfo("data/01/3_01_7.wav")
    link.create_system = 3
    link.external_attr = 0o120777 << 16  # S_IFLNK
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(link, "/etc/passwd")
    _assert_refused(path, "data/01/3_01_7.wav", tmp_path)


def test_tar_gz_with_parent_traversal_is_refused(tmp_path: Path):
    archive = _tar_with(
        tmp_path / "evil.tar.gz",
        (tarfile.TarInfo("data/01/3_01_7.wav"), _wav(0)),
        (tarfile.TarInfo("../../evil.wav"), _wav(1)),
    )
    assert "../../evil.wav" in tarfile.open(archive).getnames()
    _assert_refused(archive, "../../evil.wav", tmp_path)


def test_tar_gz_with_absolute_path_is_refused(tmp_path: Path):
    target = tmp_path / "abs" / "evil.wav"
    target.parent.mkdir()
    archive = _tar_with(tmp_path / "abs.tar.gz", (tarfile.TarInfo(str(target)), _wav(1)))
    assert str(target) in tarfile.open(archive).getnames()  # stored absolute
    _assert_refused(archive, str(target), tmp_path)
    assert not target.exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_tar_link_or_device_named_like_a_clip_is_refused(tmp_path: Path, kind: bytes):
    link = tarfile.TarInfo("data/01/3_01_7.wav")
    link.type = kind
    link.linkname = "/etc/passwd"
    archive = _tar_with(tmp_path / "link.tar.gz", (link, b""))
    _assert_refused(archive, "data/01/3_01_7.wav", tmp_path)


def test_tar_link_not_kept_is_skipped(tmp_path: Path):
    link = tarfile.TarInfo("data/latest")
    link.type = tarfile.SYMTYPE
    link.linkname = "01"
    archive = _tar_with(tmp_path / "ok.tar.gz", (link, b""), (tarfile.TarInfo("data/01/3_01_7.wav"), b"wav"))
    assert list(read_archive(archive, _clip)) == [("data/01/3_01_7.wav", b"wav")]


# --------------------------------------------------------------------------
# Folders, bad sources
# --------------------------------------------------------------------------


def test_folder_with_nested_subfolders(tmp_path: Path):
    root = tmp_path / "clips"
    files = {
        "a/b/3_x_1.wav": b"one",
        "c/0_george_2.wav": b"two",
        "4_01_0.wav": b"three",
        "a/readme.txt": b"skip",
        "c/4_q_0.wav.txt": b"skip",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    # A symlinked folder is not followed, even though it holds a clip.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "5_z_5.wav").write_bytes(b"outside")
    (root / "linked").symlink_to(outside, target_is_directory=True)

    got = list(read_archive(root, _clip))

    assert got == [("4_01_0.wav", b"three"), ("a/b/3_x_1.wav", b"one"), ("c/0_george_2.wav", b"two")]


def test_folder_symlink_named_like_a_clip_is_refused(tmp_path: Path):
    root = tmp_path / "clips"
    (root / "d").mkdir(parents=True)
    (root / "d" / "1_x_1.wav").write_bytes(b"ok")
    (root / "d" / "2_x_1.wav").symlink_to("/etc/passwd")
    with pytest.raises(PipelineError, match=r"unsafe entry 'd/2_x_1\.wav'"):
        list(read_archive(root, _clip))


@pytest.mark.parametrize("name", ["bad.zip", "bad.tar.gz", "bad.tgz"])
def test_corrupt_archive_names_the_file(tmp_path: Path, name: str):
    path = tmp_path / name
    path.write_bytes(b"this is not an archive at all" * 10)
    with pytest.raises(PipelineError) as info:
        list(read_archive(path, _clip))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_tar_gz_names_the_file(tmp_path: Path):
    good = _write_tar(tmp_path / "full.tar.gz", {f"r/{i}_s_0.wav": _blob(5000, i) for i in range(5)})
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(PipelineError, match=re.escape(str(path))):
        list(read_archive(path, _clip))


def test_missing_or_unknown_source(tmp_path: Path):
    with pytest.raises(PipelineError, match=r"no such file.*\.zip"):
        list(read_archive(tmp_path / "nothing.zip", _clip))
    rar = tmp_path / "clips.rar"
    rar.write_bytes(b"Rar!")
    with pytest.raises(PipelineError, match=r"clips\.rar.*\.tar\.gz"):
        list(read_archive(rar, _clip))


# --------------------------------------------------------------------------
# Clip names
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("3_01_7.wav", (3, "01", 7)),
        ("data/60/9_60_49.wav", (9, "60", 49)),
        ("recordings/0_george_12.wav", (0, "george", 12)),
        ("x/y/5_Theo2_0.wav", (5, "Theo2", 0)),
        ("10_01_7.wav", None),  # two-digit "digit"
        ("3_01_7.WAV", None),
        ("3_01_7.wav.txt", None),
        ("._3_01_7.wav", None),
        ("3__7.wav", None),
        ("3_01_x.wav", None),
        ("3_jack-o_1.wav", None),
        ("3_01_٣.wav", None),  # non-ASCII digit
        ("3_01_7.wav\n", None),
        ("audioMNIST_meta.txt", None),
        ("", None),
    ],
)
def test_parse_clip_name(path: str, expected):
    assert parse_clip_name(path) == expected


def test_clip_name_regex_groups():
    match = CLIP_NAME.fullmatch("7_jackson_3.wav")
    assert match and match.group("digit", "speaker", "take") == ("7", "jackson", "3")
    assert CLIP_NAME.match("7_jackson_3.wav.bak") is None
