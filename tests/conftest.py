"""Shared fixtures: a temporary copy of the repository with its own git commit.

``dvc exp run`` and the queue only see what git tracks, so every end-to-end
test works in a fresh copy of the repository, committed, with a tiny
configuration that runs in seconds on 2 cores.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from speakdigits.cores import CORES_ENV
from speakdigits.errors import PipelineError
from speakdigits.params import load_params

# The suite runs on two processes (pyproject.toml: pytest -n 2), each with one core for its stages, their
# worker pools and TensorFlow, so that the two never fight over the 2 cores of the reference machine.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault(CORES_ENV, "1")

REPO = Path(__file__).resolve().parent.parent

# A few synthetic speakers and small spectrograms: enough to exercise every
# stage, quick on 2 cores.
TINY_PARAMS = {
    "data": {"synthetic": {"speakers": 4, "takes": 2}},
    "mel": {"n_mels": 32, "frames": 32},
    "split": {"val_fraction": 0.25, "test_fraction": 0.25},
    "classify": {"epochs": 3},
    # The voices' measures only where a test asks for them (test_pipeline_judge): each evaluate run
    # would otherwise say every clip as every digit.
    "evaluate": {"reference_clips": 4, "voice_clips": 0},
}


def merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` applied key by key (nested dicts merged)."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# The machine-wide download cache (speakdigits.acquire.download_cache) of every stage the tests run:
# one for this test session, so that nothing lands in the user's ~/.cache.
DOWNLOAD_CACHE = Path(tempfile.mkdtemp(prefix="speakdigits-test-cache-"))


# The end-to-end tests: real `dvc repro`, `dvc exp run` and queue runs, real TensorFlow
# training, a real browser. `pytest -m "not e2e"` leaves them out for a quick check while
# editing; the README's test command, plain `pytest`, runs everything.
E2E_MODULES = frozenset(
    {
        "test_pipeline_data",
        "test_pipeline_model",
        "test_pipeline_judge",
        "test_model",
        "test_classifier",
        "test_judge",
        "test_listening_page",
        "test_voices",
    }
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__ in E2E_MODULES:
            item.add_marker(pytest.mark.e2e)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(DOWNLOAD_CACHE, ignore_errors=True)


def tool_env() -> dict[str, str]:
    """Environment for subprocesses: this interpreter's tools first, no telemetry."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(
        {
            "DVC_NO_ANALYTICS": "1",
            "DVC_NO_UPDATER": "1",
            "GIT_AUTHOR_NAME": "test",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "test",
            "GIT_COMMITTER_EMAIL": "test@example.com",
            "SPEAKDIGITS_CACHE": str(DOWNLOAD_CACHE),
            "no_proxy": "*",
        }
    )
    return env


def run(
    args: list[str], cwd: Path, check: bool = True, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a command (``env``: extra variables), capture its output, and fail with that output if it fails."""
    result = subprocess.run(
        args, cwd=cwd, env={**tool_env(), **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def ran_stages(output: str) -> list[str]:
    """Names of the stages DVC says it ran, from ``Running stage 'x':`` lines.

    Leaves out the two stages beside the chain: ``check_params``, which runs
    (or is restored from DVC's run cache) whenever params.yaml changes and
    never makes another stage rerun, and ``plots_page``, which depends on
    nothing else and runs wherever DVC puts it; their own tests are in
    test_pipeline_model.py.
    """
    return [
        line.split("'")[1]
        for line in output.splitlines()
        if line.startswith("Running stage '") and line.split("'")[1] not in ("check_params", "plots_page")
    ]


def make_repo_copy(dest: Path, params: dict | None = None) -> Path:
    """Copy the repository's source files into ``dest``, set params, and commit.

    Only files git knows about (tracked, or new and not ignored) are copied, as
    on a fresh clone; ``data/``, caches and virtualenvs stay behind.
    """
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        # Skip results and half-built stage outputs (``data/.features.*.tmp``) of runs in the checkout.
        if source.is_file() and not name.startswith(("dvc.lock", "metrics/", "data/")):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (dest / "metrics").mkdir(exist_ok=True)
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(merge(base, merge(TINY_PARAMS, params or {})), sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "test copy"], dest)
    return dest


DVC = [sys.executable, "-m", "dvc"]
UP_TO_DATE = "Data and pipelines are up to date."
# On top of TINY_PARAMS: a VAE small enough to train in seconds, for tests of the whole DAG.
PIPELINE_PARAMS = {
    "latent_dim": 4,
    "vae": {"filters": [8, 16], "dense": 32},
    "train": {"epochs": 2, "batch_size": 16},
    "generate": {"per_digit": 1, "harmonic_iters": 4},
}


def params_of(repo: Path) -> dict:
    """The params.yaml of a repository copy."""
    return yaml.safe_load((repo / "params.yaml").read_text())


def reproduced_copy(
    tmp_path_factory, name: str, params: dict | None = None
) -> tuple[Path, subprocess.CompletedProcess]:
    """A repository copy with PIPELINE_PARAMS (and ``params`` over them) after a first ``dvc repro``, and that
    command's result."""
    repo = make_repo_copy(tmp_path_factory.mktemp(name) / "repo", merge(PIPELINE_PARAMS, params or {}))
    return repo, run(DVC + ["repro"], repo)


def readme_comparison(which: int = 0) -> list[str]:
    """The README's ``dvc exp show`` commands (0: the headline metrics, 1: the voices'), as words (the comment
    left out)."""
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("dvc exp show")]
    return shlex.split(lines[which].split("#")[0])[1:]


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A committed copy of the repository with the tiny params."""
    return make_repo_copy(tmp_path / "repo")


# --------------------------------------------------------------------------
# A real HTTP server with Range support and a "drop the connection" switch
# --------------------------------------------------------------------------


@dataclass
class FileServer:
    root: Path
    port: int = 0
    # (path, Range header or None) of every GET, in arrival order
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    drops_left: int = 0  # this many GETs get full headers, half the body, close
    ignore_range: bool = False  # answer 200 with the whole file to Range
    slow: float = 0.0  # seconds each full body takes to send
    send_etag: bool = True  # identify the file's version (If-Range is honoured either way)
    if_ranges: list[str | None] = field(default_factory=list)  # If-Range header of every GET
    ignore_if_range: bool = False  # honour Range even when If-Range names another version
    endless: bool = False  # a 200 with no Content-Length whose body never ends

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


class _Handler(BaseHTTPRequestHandler):
    server_state: FileServer  # set on a per-fixture subclass

    def do_GET(self) -> None:
        state = self.server_state
        wanted = self.headers.get("Range")
        state.requests.append((self.path, wanted))
        path = state.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        if state.endless:
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(data)
            except OSError:  # the client hung up
                return
        etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'  # a strong validator: changes with the bytes
        status, start = 200, 0
        if_range = self.headers.get("If-Range")
        state.if_ranges.append(if_range)
        honoured = if_range is None or if_range == etag or state.ignore_if_range
        if wanted is not None and not state.ignore_range and honoured:
            match = re.fullmatch(r"bytes=(\d+)-", wanted)
            assert match, f"client sent an unexpected Range {wanted!r}"
            start = int(match[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if state.send_etag:
            self.send_header("ETag", etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if state.drops_left > 0:
            state.drops_left -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        for start in range(0, len(body), max(1, len(body) // 10)):  # in tenths, spread over state.slow seconds
            self.wfile.write(body[start : start + max(1, len(body) // 10)])
            time.sleep(state.slow / 10)

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError:
            # The client hung up mid-body, as a download that has seen enough does. Left to socketserver,
            # its traceback lands on stderr, in the output of the test that reads the download's note.
            pass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # keep pytest output clean


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # A proxy configured in the environment must not intercept 127.0.0.1.
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    root = tmp_path / "served"
    root.mkdir()
    state = FileServer(root)
    handler = type("Handler", (_Handler,), {"server_state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------
# A real headless browser (Debian's chromium), for the pages the project makes
# --------------------------------------------------------------------------

NO_BROWSER = (
    "chromium is not installed (neither 'chromium' nor 'chromium-browser' is on PATH; on Debian "
    "`apt-get install chromium`, as .ci/run does), so the page cannot be opened in a browser"
)


def dump_dom(page: Path, profile: Path) -> str:
    """Open ``page`` in headless chromium, let its scripts run, and return the DOM they leave.

    Skips the calling test when chromium is absent.
    """
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip(NO_BROWSER)
    result = subprocess.run(
        [
            exe,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--mute-audio",
            "--window-size=1400,900",  # the page must fit a laptop's window
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class _Collect(HTMLParser):
    """Every tag with its attributes, in order."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(page: str) -> list[tuple[str, dict]]:
    parser = _Collect()
    parser.feed(page)
    return parser.tags


def browser_check(page: Path, profile: Path) -> str:
    """Open ``page`` in headless chromium and return what the page's own check wrote into ``data-check``.

    Skips the calling test when chromium is absent.
    """
    dom = dump_dom(page, profile)
    bodies = [attrs for tag, attrs in tags(dom) if tag == "body"]
    assert bodies, f"chromium returned no page body:\n{dom[:500]}"
    return bodies[0].get("data-check", "")


# --------------------------------------------------------------------------
# params.yaml variants, and the one-line message load_params gives for them
# --------------------------------------------------------------------------

BASE = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def write_params(tmp_path: Path, params: object) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def with_value(dotted: str, value: object) -> dict:
    """A deep copy of the repo's params with ``dotted`` set to ``value``."""
    params = copy.deepcopy(BASE)
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value
    return params


def without(dotted: str) -> dict:
    params = copy.deepcopy(BASE)
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    del node[last]
    return params


def rejection(tmp_path: Path, params: object) -> str:
    """The one-line message load_params gives for ``params``."""
    path = write_params(tmp_path, params)
    with pytest.raises(PipelineError) as info:
        load_params(path)
    message = str(info.value)
    assert "\n" not in message, f"message spans several lines: {message!r}"
    return message
