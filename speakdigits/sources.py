"""Fetch and read the raw spoken-digit recordings.

Two public datasets are supported, both as archives of ``.wav`` clips whose
basename is ``{digit}_{speaker}_{take}.wav``:

* AudioMNIST (``data/01/3_01_7.wav``; speakers ``01`` .. ``60``),
* the Free Spoken Digit Dataset (``recordings/3_george_7.wav``).

:func:`download` fetches an archive over HTTP(S) with resume and checksum,
:func:`read_archive` yields the clips of a folder, ``.zip`` or tar archive
without unpacking anything to disk, and :func:`parse_clip_name` decodes the
clip basename.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PureWindowsPath

from tqdm import tqdm

from speakdigits.errors import PipelineError

__all__ = ["check_archive", "download", "read_archive"]

_ARCHIVE_KINDS = "a folder, .zip, .tar, .tar.gz or .tgz"

_OFFLINE_HINT = (
    "Set data.source to 'synthetic' (the default) or to a local folder, "
    ".zip or .tar.gz of {digit}_{speaker}_{take}.wav files."
)

_CHUNK = 1 << 16

#: Most bytes one download may bring (AudioMNIST's archive is about 1 GB): a body that never ends
#: stops here instead of filling the disk.
MOST_DOWNLOAD_BYTES = 4 << 30

# Everything that can go wrong on the wire once a request is under way:
# URLError wraps connect failures, http.client raises its own exceptions
# (RemoteDisconnected, IncompleteRead) and sockets raise OSError/TimeoutError.
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError)


class _Truncated(Exception):
    """The body ended before the size the server announced."""


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    timeout: float = 20.0,
    retries: int = 5,
    progress: bool = True,
    most_bytes: int = MOST_DOWNLOAD_BYTES,
    check: Callable[[Path], None] | None = None,
) -> str:
    """Download ``url`` to ``dest`` atomically, resuming broken transfers.

    Bytes are streamed into ``dest`` + ``".part"``; that file is renamed onto
    ``dest`` only once it is complete and, if ``sha256`` is given, verified,
    and ``check`` passes. So ``dest`` either does not exist or holds the whole
    file, and a ``.part`` left by an interrupted run is resumed by the next
    call, if the server names the version it came from. Beside ``dest``,
    ``dest`` + ``".sha256"`` records the digest and size it had when fetched.

    Parameters
    ----------
    url : str
        HTTP(S) address of the file.
    dest : pathlib.Path
        Where the file ends up.  Its folder is created if needed.
    sha256 : str or None, optional
        Expected hex SHA-256 of the complete file (case-insensitive).  None
        skips verification.
    timeout : float, optional
        Seconds to wait for the connection and for each read.
    retries : int, optional
        How many times a transfer that broke off mid-file is resumed (with an
        HTTP ``Range`` request) before giving up.
    progress : bool, optional
        Show a tqdm progress bar on stderr.
    most_bytes : int, optional
        A file larger than this is refused (and what came of it deleted).
    check : callable, optional
        Called with the complete file before it becomes ``dest``; raises
        PipelineError if the file is damaged (e.g. :func:`check_archive`).

    Returns
    -------
    str
        Hex SHA-256 of the complete file at ``dest``.

    Raises
    ------
    PipelineError
        The first connection fails (offline, DNS, refused, timeout), the
        server answers with an HTTP error, the transfer keeps breaking off
        after ``retries`` resumptions, the file is larger than ``most_bytes``,
        the checksum does not match or ``check`` fails (what was downloaded is
        then deleted).

    Notes
    -----
    If ``dest`` already exists and matches ``sha256`` (or, with ``sha256``
    None, the digest and size recorded when it was fetched) it is returned
    without touching the network; it is hashed though, to return the digest.
    A ``dest`` that does not match (damaged on disk, or from an older version
    of this program, without a record) is downloaded again, with a one-line
    note, and replaced only once the new copy verifies.
    """
    dest = Path(dest)
    want = sha256.strip().lower() if sha256 is not None else None
    record = dest.with_name(dest.name + ".sha256")
    have = _already_fetched(url, dest, want, record)
    if have is not None:
        return have
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    validator_file = part.with_name(part.name + ".validator")
    _fetch_part(
        url,
        part,
        validator_file,
        label=dest.name,
        timeout=timeout,
        retries=retries,
        progress=progress,
        most_bytes=most_bytes,
    )
    have = _verified_digest(url, part, validator_file, want, check)
    _put_in_place(part, dest, record, have, validator_file)
    return have


def _already_fetched(url: str, dest: Path, want: str | None, record: Path) -> str | None:
    """The digest of ``dest`` if it already is the file to download, else None.

    ``dest`` is the file when it matches ``want``, or with ``want`` None, the
    digest and size in ``record``. A ``dest`` that exists but does not match
    gets a one-line note on stderr: it is about to be fetched again.
    """
    if not dest.is_file():
        return None
    have = _file_sha256(dest)
    if (have == want) if want is not None else (_read_record(record) == (have, dest.stat().st_size)):
        return have
    print(
        f"download: {dest} is not the file fetched from {url} (its sha256 or size differs, or no record); "
        "fetching it again",
        file=sys.stderr,
    )
    return None


def _fetch_part(
    url: str,
    part: Path,
    validator_file: Path,
    *,
    label: str,
    timeout: float,
    retries: int,
    progress: bool,
    most_bytes: int,
) -> None:
    """Bring ``part`` to the whole remote file, resuming it across broken transfers.

    Raises PipelineError as :func:`download` describes, except for the
    checks of the complete file, which are :func:`_verified_digest`'s.
    """
    connected = False  # a server answered at least once during this call
    failures = 0
    while True:
        offset, validator = _resume_point(part, validator_file)
        try:
            response = _open(url, offset, timeout, validator)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset:
                # The .part is at or past the end of the remote file (a stale
                # leftover, or the file changed): begin again from scratch.
                part.unlink()
                failures += 1
                if failures > retries:
                    raise PipelineError(
                        f"cannot download {url}: the server keeps refusing the byte range (HTTP 416)"
                    ) from None
                continue
            raise PipelineError(
                f"cannot download {url}: HTTP {exc.code} {_one_line(exc.reason)}. {_OFFLINE_HINT}"
            ) from None
        except ValueError as exc:  # urllib's reaction to a malformed URL
            raise PipelineError(f"cannot download {url}: not a valid URL ({_one_line(exc)})") from None
        except _NETWORK_ERRORS as exc:
            if not connected:
                # Fail fast on the first contact: retrying a DNS failure or a
                # refused connection only delays the offline hint.
                raise PipelineError(
                    f"cannot download {url}: {_reason(exc)}. Working offline? {_OFFLINE_HINT}"
                ) from None
            failures = _one_more_failure(url, exc, failures, retries, part)
            continue

        connected = True
        try:
            with response:
                _receive(response, part, offset, label, progress, validator_file, most_bytes, url)
        except (_Truncated, *_NETWORK_ERRORS) as exc:
            failures = _one_more_failure(url, exc, failures, retries, part)
            continue
        return


def _resume_point(part: Path, validator_file: Path) -> tuple[int, str]:
    """Where to resume ``part`` (its size, or 0 to start afresh) and the version it came from ('' if unknown)."""
    offset = part.stat().st_size if part.exists() else 0
    validator = validator_file.read_text(encoding="utf-8").strip() if validator_file.is_file() else ""
    if offset and not validator:
        # A partial file of unknown version: resuming could splice two versions together.
        part.unlink()
        offset = 0
    return offset, validator


def _one_more_failure(url: str, exc: BaseException, failures: int, retries: int, part: Path) -> int:
    """Count a transfer that broke off: give up (PipelineError) past ``retries``, else wait a little longer
    each time before the next attempt. Returns the new count."""
    failures += 1
    if failures > retries:
        raise _gave_up(url, exc, failures, part) from None
    time.sleep(0.2 * failures)
    return failures


def _verified_digest(
    url: str, part: Path, validator_file: Path, want: str | None, check: Callable[[Path], None] | None
) -> str:
    """The SHA-256 of the complete ``part``, once it matches ``want`` and passes ``check``.

    Otherwise ``part`` (and its validator) is deleted and PipelineError raised.
    """
    have = _file_sha256(part)
    if want is not None and have != want:
        # A mismatch means a corrupt transfer or a changed upstream file;
        # keeping the bytes would only make the next run resume garbage.
        part.unlink()
        validator_file.unlink(missing_ok=True)
        raise PipelineError(
            f"download {url}: sha256 mismatch, expected {want} but got {have}; the downloaded file was deleted"
        )
    if check is not None:
        try:
            check(part)
        except PipelineError as err:
            part.unlink()
            validator_file.unlink(missing_ok=True)
            raise PipelineError(f"download {url}: the file is damaged ({err}); it was deleted") from None
    return have


def _put_in_place(part: Path, dest: Path, record: Path, have: str, validator_file: Path) -> None:
    """Rename the verified ``part`` onto ``dest`` and record its digest and size beside it."""
    record.unlink(missing_ok=True)  # never a record that vouches for another file
    os.replace(part, dest)
    record.write_text(f"{have} {dest.stat().st_size}\n", encoding="utf-8")
    validator_file.unlink(missing_ok=True)


def _read_record(record: Path) -> tuple[str, int] | None:
    """The (sha256, size) recorded beside a downloaded file, or None if there is no readable record."""
    try:
        digest, size = record.read_text(encoding="utf-8").split()
        return digest, int(size)
    except (OSError, ValueError):
        return None


def check_archive(path: Path) -> None:
    """Refuse a ``.zip`` or tar archive that cannot be read to its end (a truncated download).

    A zip's member list sits at its end; a (compressed) tar is read through.
    Other kinds of file pass.

    Raises
    ------
    PipelineError
        Naming what is wrong.
    """
    name = Path(path).name.lower()
    try:
        if name.endswith(".zip") or name.endswith(".zip.part"):
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        elif name.removesuffix(".part").endswith((".tar", ".tar.gz", ".tgz")):
            with tarfile.open(path) as archive:
                for _ in archive:
                    pass
    except _ARCHIVE_ERRORS as exc:
        raise PipelineError(f"not a readable archive: {_one_line(exc) or type(exc).__name__}") from None


def _open(url: str, offset: int, timeout: float, validator: str) -> http.client.HTTPResponse:
    """Send the GET request, asking for bytes from ``offset`` on if nonzero.

    A resumed request carries ``If-Range`` with the version (ETag or
    Last-Modified) the partial file came from: a server whose file has
    changed since answers with the whole new file instead of the rest.
    """
    # identity encoding: byte ranges and Content-Length must refer to the raw
    # file, not to a compressed transfer of it.
    headers = {"User-Agent": "speakdigits", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(request, timeout=timeout)


def _version(response: http.client.HTTPResponse) -> str:
    """What identifies this version of the remote file: a strong ETag, else Last-Modified, else ''."""
    etag = (response.headers.get("ETag") or "").strip()
    if etag and not etag.startswith("W/"):  # If-Range only works with strong validators
        return etag
    return (response.headers.get("Last-Modified") or "").strip()


def _receive(
    response: http.client.HTTPResponse,
    part: Path,
    offset: int,
    label: str,
    progress: bool,
    validator_file: Path,
    most_bytes: int,
    url: str,
) -> None:
    """Append (206) or write afresh (200) the response body to ``part``.

    A fresh body's version (:func:`_version`) goes to ``validator_file``, for
    the ``If-Range`` of a later resumption; a server without one gets no
    resumption, and a 206 must name the same version again. Raises
    ``_Truncated`` when the body is shorter than announced (urllib returns an
    empty read at a premature EOF instead of raising), PipelineError when it
    is larger than ``most_bytes`` (and deletes the partial file).
    """
    offset, total = _body_start(response, part, offset, validator_file)
    if total is not None and total > most_bytes:
        raise _over_limit(url, total, most_bytes, part, validator_file)
    with (
        open(part, "ab" if offset else "wb") as out,
        tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            file=sys.stderr,
            disable=not progress,
        ) as bar,
    ):
        size = offset
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            size += len(chunk)
            bar.update(len(chunk))
            if size > most_bytes:
                out.close()
                raise _over_limit(url, size, most_bytes, part, validator_file)
    if total is not None and size < total:
        raise _Truncated(f"connection closed after {size} of {total} bytes")


def _body_start(
    response: http.client.HTTPResponse, part: Path, offset: int, validator_file: Path
) -> tuple[int, int | None]:
    """Where the body goes in ``part`` (``offset``, or 0 for a whole file) and the size the file reaches
    at its end (None if the server does not say).

    A 206 to a resumption must name the version in ``validator_file`` and
    start at ``offset``; if not, the partial file is deleted and ``_Truncated``
    raised, for the retry to start over. Any other answer is a whole file,
    whose version is written to ``validator_file``.
    """
    total = None
    if offset and response.status == 206:
        saved = validator_file.read_text(encoding="utf-8").strip()
        if _version(response) != saved:
            # A server that ignored If-Range: the rest may be of another version, or it does not say.
            part.unlink()
            validator_file.unlink()
            raise _Truncated("the server did not confirm the partial file's version")
        start, total = _content_range(response)
        if start != offset:
            # Not the bytes we asked for; appending them would corrupt the
            # file, so drop the partial copy and let the retry start over.
            part.unlink()
            raise _Truncated(f"server sent bytes from {start} instead of {offset}")
    else:
        # A 200 answer to a Range request is the whole file (the server
        # ignores ranges, or the file changed): start over.
        offset = 0
        validator_file.write_text(_version(response) + "\n", encoding="utf-8")
        length = response.headers.get("Content-Length")
        if length is not None and length.strip().isdigit():
            total = int(length)
        if response.status == 206:  # unasked-for range; trust its total
            total = _content_range(response)[1]
    return offset, total


def _over_limit(url: str, size: int, most_bytes: int, part: Path, validator_file: Path) -> PipelineError:
    """Delete what came of a download larger than ``most_bytes``, and say so."""
    part.unlink(missing_ok=True)
    validator_file.unlink(missing_ok=True)
    return PipelineError(
        f"cannot download {url}: {size} bytes or more, above the {most_bytes}-byte limit of a download; "
        "nothing was kept"
    )


def _content_range(response: http.client.HTTPResponse) -> tuple[int, int]:
    """Return (first byte, size the file reaches at the range end) of a 206."""
    value = response.headers.get("Content-Range", "")
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value)
    if match is None:
        raise _Truncated(f"unusable Content-Range header {value!r}")
    start, end, total = match.groups()
    # With an unknown total ('*') the range end still tells us where the
    # body stops, which is all the completeness check needs.
    return int(start), int(total) if total != "*" else int(end) + 1


def _gave_up(url: str, exc: BaseException, attempts: int, part: Path) -> PipelineError:
    kept = ""
    if part.exists():
        kept = f"; the partial file {part} is kept, so running again resumes"
    return PipelineError(f"cannot download {url}: {_reason(exc)} (gave up after {attempts} attempts){kept}")


def _reason(exc: BaseException) -> str:
    """The human part of a network exception, on one line."""
    # URLError wraps the socket error; its .reason is the readable part.
    if isinstance(exc, urllib.error.URLError) and exc.reason is not None:
        exc = exc.reason
    text = str(exc) or type(exc).__name__
    return _one_line(text)


def _one_line(text: object) -> str:
    """Collapse whitespace so an error message stays on one line."""
    return " ".join(str(text).split())


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_archive(
    source: Path, keep: Callable[[str], bool], *, max_bytes: int | None = None
) -> Iterator[tuple[str, bytes | None]]:
    """Yield the files of a folder or archive whose path ``keep`` accepts.

    Nothing is extracted to disk: members are read into memory one at a
    time.  Every entry name is checked before anything is yielded, and an
    archive with an absolute path or a ``..`` component anywhere, or with a
    symlink, hard link or device among the kept names, is refused as a whole:
    such entries are how archives write outside their target folder.

    Parameters
    ----------
    source : pathlib.Path
        A folder, or a ``.zip``, ``.tar``, ``.tar.gz`` or ``.tgz`` file (the
        kind is decided by the suffix).
    keep : callable
        Called with each regular file's relative POSIX path (as stored in the
        archive, or relative to the folder); True keeps the file.  E.g.
        ``lambda p: speakdigits.formats.raw.parse_clip_name(p) is not None``.
    max_bytes : int, optional
        A kept file larger than this (uncompressed) is not read: it is
        yielded with ``None`` for its contents, so memory stays bounded
        whatever an archive holds (a few hundred kilobytes of zeros can
        unpack to gigabytes).

    Yields
    ------
    tuple of (str, bytes or None)
        Member path and its contents (None when over ``max_bytes``), sorted by member path.  If a name is
        stored twice in an archive, the last copy wins, as when unpacking.

    Raises
    ------
    PipelineError
        On the first ``next()`` (this is a generator): the source is missing
        or of an unknown kind, the archive is corrupt, or it holds an unsafe
        entry.

    Notes
    -----
    For tar files the member list is read first, which for a ``.tar.gz``
    means decompressing it twice; members are then read in archive order,
    holding only those that arrive ahead of their sorted turn in memory.
    """
    source = Path(source)
    name = source.name.lower()
    if source.is_dir():
        yield from _read_folder(source, keep, max_bytes)
    elif not source.exists():
        raise PipelineError(f"data source {source}: no such file or folder; expected {_ARCHIVE_KINDS}")
    elif name.endswith(".zip"):
        yield from _read_zip(source, keep, max_bytes)
    elif name.endswith((".tar", ".tar.gz", ".tgz")):
        yield from _read_tar(source, keep, max_bytes)
    else:
        raise PipelineError(f"data source {source}: unknown kind of file; expected {_ARCHIVE_KINDS}")


def _is_unsafe_name(name: str) -> bool:
    """True for absolute names and names with a '..' component.

    Backslashes count as separators too: Windows tools write them into zip
    names, and an extractor on Windows would honour them.
    """
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return True
    return ".." in re.split(r"[\\/]", name)


def _unsafe(source: Path, name: str) -> PipelineError:
    return PipelineError(
        f"archive {source}: unsafe entry '{_printable(name)}' (absolute path, '..' or link); refusing to unpack it"
    )


def _corrupt(source: Path, exc: BaseException) -> PipelineError:
    return PipelineError(
        f"archive {source}: cannot read it ({_one_line(exc) or type(exc).__name__}); "
        "expected an intact .zip, .tar, .tar.gz or .tgz file"
    )


def _printable(name: str) -> str:
    """Escape control characters so a hostile name cannot break the message."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


# Errors the zip/tar/gzip modules raise on damaged or unsupported input;
# RuntimeError covers encrypted zip members, NotImplementedError unknown
# compression methods.
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    OSError,
    RuntimeError,
    NotImplementedError,
)


def _too_large(size: int, max_bytes: int | None) -> bool:
    return max_bytes is not None and size > max_bytes


def _read_zip(source: Path, keep: Callable[[str], bool], max_bytes: int | None) -> Iterator[tuple[str, bytes | None]]:
    try:
        archive = zipfile.ZipFile(source)
    except _ARCHIVE_ERRORS as exc:
        raise _corrupt(source, exc) from None
    with archive:
        kept: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            if _is_unsafe_name(info.filename):
                raise _unsafe(source, info.filename)
            if info.is_dir() or not keep(info.filename):
                continue
            # Only Unix-made zips carry a file mode, and often just the
            # permission bits (Python writes 0o600), so only an explicit
            # non-regular type counts.  A symlink is stored as a small file
            # holding the target, which an unzipper would recreate as a link.
            kind = stat.S_IFMT(info.external_attr >> 16)
            if info.create_system == 3 and kind not in (0, stat.S_IFREG):
                raise _unsafe(source, info.filename)
            kept[info.filename] = info  # later duplicates win, as in unzip
        for member in sorted(kept):
            if _too_large(kept[member].file_size, max_bytes):
                yield member, None
                continue
            try:
                data = archive.read(kept[member])
            except _ARCHIVE_ERRORS as exc:
                raise _corrupt(source, exc) from None
            yield member, data


def _read_tar(source: Path, keep: Callable[[str], bool], max_bytes: int | None) -> Iterator[tuple[str, bytes | None]]:
    try:
        archive = tarfile.open(source, "r:*")
    except _ARCHIVE_ERRORS as exc:
        raise _corrupt(source, exc) from None
    try:
        members = archive.getmembers()
    except _ARCHIVE_ERRORS as exc:
        archive.close()
        raise _corrupt(source, exc) from None
    with archive:
        kept: dict[str, tarfile.TarInfo] = {}
        for info in members:
            if _is_unsafe_name(info.name):
                raise _unsafe(source, info.name)
            if info.isdir():
                continue
            if not keep(info.name):
                continue
            if not info.isreg():
                raise _unsafe(source, info.name)
            kept[info.name] = info  # later duplicates win, as in tar -x
        # Read in archive order (seeking backwards in a .tar.gz restarts the
        # decompression) and release each member once its sorted turn comes.
        order = sorted(kept)
        turn = 0
        early: dict[str, bytes | None] = {}
        for info in sorted(kept.values(), key=lambda i: i.offset_data):
            if _too_large(info.size, max_bytes):
                data = None
            else:
                try:
                    handle = archive.extractfile(info)
                    data = handle.read() if handle is not None else b""
                except _ARCHIVE_ERRORS as exc:
                    raise _corrupt(source, exc) from None
            early[info.name] = data
            while turn < len(order) and order[turn] in early:
                yield order[turn], early.pop(order[turn])
                turn += 1


def _read_folder(root: Path, keep: Callable[[str], bool], max_bytes: int | None) -> Iterator[tuple[str, bytes | None]]:
    files: list[tuple[str, Path]] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise PipelineError(f"data source {root}: cannot list {folder} ({_one_line(exc)})") from None
        for entry in entries:
            path = Path(entry.path)
            rel = path.relative_to(root).as_posix()
            # Symlinked folders are not descended into (they may point
            # anywhere); a symlink or special file that would be kept is
            # refused, matching the archive rules.
            if entry.is_dir(follow_symlinks=False):
                pending.append(path)
            elif not keep(rel):
                continue
            elif entry.is_file(follow_symlinks=False):
                files.append((rel, path))
            else:
                raise _unsafe(root, rel)
    for rel, path in sorted(files):
        try:
            data = None if _too_large(path.stat().st_size, max_bytes) else path.read_bytes()
        except OSError as exc:
            raise PipelineError(f"data source {root}: cannot read {rel} ({_one_line(exc)})") from None
        yield rel, data
