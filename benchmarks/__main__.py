"""Benchmark: the original notebooks' approach beside this project's stages.

    python -m benchmarks [--fsdd FOLDER] [--work DIR] [--epochs N]

Runs, one after another on this machine, each job in its own process:

* ``download`` of the synthetic source at AudioMNIST's size (60 speakers x 50
  takes = 30,000 clips);
* on an AudioMNIST-shaped set (those 30,000 clips resampled to 48 kHz and
  written as AudioMNIST's folder of wavs) and, with ``--fsdd``, on the Free
  Spoken Digit Dataset's recordings: the original extraction loop
  (:mod:`benchmarks.original`) against this project's ``download`` (packing
  the folder) and ``extract`` stages, at the original's 50 x 50 mel;
* training epochs of the original network and loss against this project's
  for ``vae.arch`` seed and conv.

Each job runs ``--repeat`` times, taking turns with the others, and its
fastest run counts. It prints a table of wall time, CPU time (the process and
its workers), peak memory (the largest single process) and the ratio. Nothing
in the repository is touched: every job works in a folder under ``--work``
(kept, so that the prepared data is made once).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import soundfile
import soxr
import yaml

from speakdigits import TENSORFLOW_KERNELS
from speakdigits.cores import available_cores

REPO = Path(__file__).resolve().parents[1]
AUDIOMNIST_RATE = 48_000
# The original's mel: 50 bands, 50 frames over 1 s; n_fft is librosa's default.
MEL_50 = {"n_mels": 50, "frames": 50, "n_fft": 2048}


@dataclass
class Measured:
    """What one job cost."""

    wall: float
    cpu: float
    peak_mb: float
    stdout: str


def measured(command: list[str], cwd: Path, env: dict | None = None, unset: tuple[str, ...] = ()) -> Measured:
    """Run ``command`` in ``cwd``: wall clock, CPU time of it and its workers, and the peak RSS of its
    largest process (``wait4``'s rusage covers the process and the descendants it waited for).
    ``env`` adds to this process's environment, ``unset`` takes names out of it.

    The peak also counts the launching process's own resident memory, which the
    child shares between the spawn and its exec: launch from a small process (as
    ``python -m benchmarks`` is: about 60 MB), not from one holding large data.
    """
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**{k: v for k, v in os.environ.items() if k not in unset}, "PYTHONPATH": str(REPO), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Read both pipes to the end before waiting, so a chatty job never blocks on a full pipe.
    with process.stdout, process.stderr:
        stderr_chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: stderr_chunks.append(process.stderr.read()))
        reader.start()
        stdout = process.stdout.read()
        reader.join()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(
            f"benchmark job failed ({' '.join(map(str, command))}):\n"
            f"{b''.join(stderr_chunks).decode(errors='replace')[-2000:]}"
        )
    # ru_maxrss is in KiB on Linux: the largest of the process and its waited-for descendants.
    return Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout.decode())


def scratch(work: Path, name: str, overrides: dict) -> Path:
    """A working folder for jobs: the repository's params.yaml with ``overrides`` (dotted keys) applied."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    for key, value in overrides.items():
        *parents, last = key.split(".")
        section = params
        for parent in parents:
            section = section[parent]
        section[last] = value
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return folder


def fastest(
    jobs: dict[str, Callable[[], Measured]], repeat: int, key: Callable[[Measured], float] = lambda m: m.wall
) -> dict[str, Measured]:
    """Run every job ``repeat`` times, taking turns, and keep each one's fastest run.

    The same machine is not equally fast from one minute to the next (twofold
    swings were seen on the reference machine); taking turns exposes every job
    to the same spells, and the fastest of a few runs is the least disturbed.
    """
    best: dict[str, Measured] = {}
    for _ in range(repeat):
        for name, job in jobs.items():
            result = job()
            if name not in best or key(result) < key(best[name]):
                best[name] = result
    return best


def stage(name: str, folder: Path) -> Measured:
    """Run one of this project's stages in ``folder`` (its data/ and params.yaml)."""
    return measured([sys.executable, "-m", f"stages.{name}"], folder)


_resampler: dict = {}


def _open_archive(zip_path: str) -> None:
    _resampler["zip"] = zipfile.ZipFile(zip_path)


def _to_48k(job: tuple[str, str]) -> None:
    name, out = job
    samples, rate = soundfile.read(io.BytesIO(_resampler["zip"].read(name)), dtype="float32")
    path = Path(out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, soxr.resample(samples, rate, AUDIOMNIST_RATE), AUDIOMNIST_RATE, subtype="PCM_16")


def audiomnist_shaped(raw_dir: Path, folder: Path) -> Path:
    """The synthetic clips of ``raw_dir`` as AudioMNIST lays them out: 48 kHz 16-bit wavs in one folder
    per speaker, and ``audioMNIST_meta.txt``. Made once (under a temporary name, then renamed)."""
    if folder.is_dir():
        return folder
    building = folder.with_name(f".{folder.name}.building")
    shutil.rmtree(building, ignore_errors=True)  # a previous benchmark's unfinished copy
    with zipfile.ZipFile(raw_dir / "audio.zip") as archive:
        names = [name for name in archive.namelist() if name.endswith(".wav")]
    print(f"preparing {len(names)} clips at {AUDIOMNIST_RATE} Hz in {folder} (once)", flush=True)
    with get_context("fork").Pool(
        available_cores(), initializer=_open_archive, initargs=(str(raw_dir / "audio.zip"),)
    ) as pool:
        pool.map(_to_48k, [(name, str(building)) for name in names], chunksize=64)
    shutil.copyfile(raw_dir / "speakers.json", building / "audioMNIST_meta.txt")
    building.rename(folder)
    return folder


def clips_per_second(result: Measured) -> tuple[float, float, str]:
    """Training clips per second in the last epoch (the first one includes tracing), the first
    epoch's seconds, and the device."""
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["clips"] / report["epoch_seconds"][-1], report["epoch_seconds"][0], report.get("device", "CPU")


def main() -> None:
    """Run the benchmark of the command line, printing each figure as it comes and a table at the end."""
    args = _parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = _Results()

    synthetic = _synthesize(work, skip, results)
    sets = {
        "AudioMNIST-shaped, 30,000 clips at 48 kHz": audiomnist_shaped(
            synthetic / "data" / "raw", work / "audiomnist-shaped"
        )
    }
    if args.fsdd:
        recordings = args.fsdd.resolve() / "recordings"
        sets["FSDD, 3,000 clips at 8 kHz"] = recordings if recordings.is_dir() else args.fsdd.resolve()
    train_folder = _extract(sets, work, skip, args.repeat, results)
    if "train" not in skip and train_folder is not None:
        _train(train_folder, work, epochs=args.epochs, clips=args.train_clips, repeat=args.repeat, results=results)
    results.print_table()


def _parse_args() -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path.home() / ".cache" / "speakdigits" / "benchmarks",
        help="folder for the jobs' data (default: %(default)s)",
    )
    parser.add_argument("--fsdd", type=Path, help="a folder of the Free Spoken Digit Dataset's recordings")
    parser.add_argument(
        "--epochs",
        type=int,
        default=2,
        help="training epochs per network; the last one is timed (default: %(default)s)",
    )
    parser.add_argument(
        "--train-clips",
        type=int,
        default=6400,
        help="training clips per epoch (default: %(default)s, 100 batches of 64)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="runs of each job, taking turns; the fastest counts (default: %(default)s)",
    )
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: synthetic, extract, train")
    return parser.parse_args()


class _Results:
    """The benchmark's figures: each printed as soon as it is measured, and all as a table at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, Measured | None, Measured | None, str, str]] = []

    def add(
        self, what: str, original: Measured | None, ours: Measured | None, ratio: str = "-", note: str = ""
    ) -> None:
        """Record a row; ``ratio`` defaults to the original's wall time over ours, when both ran."""
        if original and ours and ratio == "-":
            ratio = f"{original.wall / ours.wall:.1f}x"
        self.rows.append((what, original, ours, ratio, note))
        print(
            f"measured: {what}: "
            + ", ".join(
                f"{who} {m.wall:.1f} s wall, {m.cpu:.1f} s CPU, {m.peak_mb:.0f} MB"
                for who, m in (("original", original), ("ours", ours))
                if m
            )
            + (f"; {note}" if note else ""),
            flush=True,
        )

    def print_table(self) -> None:
        """Print the machine and every row as a Markdown table."""
        print()
        print(
            f"{time.strftime('%Y-%m-%d')}, {platform.node()}: {len(os.sched_getaffinity(0))} cores, "
            f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
        )
        print("| job | original: wall / CPU / peak | this project: wall / CPU / peak | ratio | note |")
        print("|---|---|---|---|---|")
        for what, original, ours, ratio, note in self.rows:
            cell = lambda m: f"{m.wall:.1f} s / {m.cpu:.1f} s / {m.peak_mb:.0f} MB" if m else "-"  # noqa: E731
            print(f"| {what} | {cell(original)} | {cell(ours)} | {ratio} | {note} |")
        print(
            "ratio: the original's wall time over this project's (extraction), or this project's training clips "
            "per second over the original's (training); CPU time includes worker processes; peak: the largest "
            "single process."
        )


def _synthesize(work: Path, skip: set[str], results: _Results) -> Path:
    """The folder of the synthetic source at AudioMNIST's size, its ``download`` stage timed (unless
    ``synthetic`` is skipped and its clips are there already)."""
    synthetic = scratch(work, "synthetic-60x50", {"data.synthetic.speakers": 60, "data.synthetic.takes": 50})
    if "synthetic" not in skip or not (synthetic / "data" / "raw" / "audio.zip").exists():
        results.add(
            "synthesize 30,000 clips (stage download)",
            None,
            stage("download", synthetic),
            note="the original downloaded AudioMNIST",
        )
    return synthetic


def _extract(sets: dict[str, Path], work: Path, skip: set[str], repeat: int, results: _Results) -> Path | None:
    """Time the original extraction loop against the ``download`` and ``extract`` stages on each set.

    Returns the folder of the first set's stages (where the training jobs run), or None without sets.
    """
    train_folder = None
    for label, folder in sets.items():
        name = "audiomnist" if label.startswith("Audio") else "fsdd"
        ours_dir = scratch(
            work, f"{name}-50x50", {"data.source": str(folder), **{f"mel.{k}": v for k, v in MEL_50.items()}}
        )
        train_folder = train_folder or ours_dir
        if "extract" in skip and (ours_dir / "data" / "features").is_dir():
            continue
        best = fastest(
            {
                "original": functools.partial(
                    measured,
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.original",
                        "extract",
                        str(folder),
                        str(work / f"{name}-original-mels.npy"),
                    ],
                    work,
                ),
                "pack": functools.partial(stage, "download", ours_dir),
                "extract": functools.partial(stage, "extract", ours_dir),
            },
            repeat,
        )
        original, pack, ours = best["original"], best["pack"], best["extract"]
        results.add(
            f"{label}: pack the folder (stage download)", None, pack, note="the original read the files directly"
        )
        results.add(f"{label}: extract (whole stage vs whole loop)", original, ours)
    return train_folder


def _train(train_folder: Path, work: Path, *, epochs: int, clips: int, repeat: int, results: _Results) -> None:
    """Time training epochs of the original network (TensorFlow's default kernels, and oneDNN's) against
    ``vae.arch`` seed and conv, on the features of ``train_folder``."""
    stage("normalize", train_folder)
    epochs_arg, clips_arg = str(epochs), str(clips)
    original = [sys.executable, "-m", "benchmarks.original", "train", str(work / "audiomnist-original-mels.npy")]
    jobs = {
        # As the notebook ran: TensorFlow's default kernels (this package turns on oneDNN's, and
        # the benchmark's own environment carries that setting to every job it starts).
        "original": functools.partial(
            measured, [*original, epochs_arg, clips_arg], work, unset=tuple(TENSORFLOW_KERNELS)
        ),
        "original, oneDNN": functools.partial(measured, [*original, epochs_arg, clips_arg], work),
    }
    for arch in ("seed", "conv"):
        jobs[arch] = functools.partial(
            measured,
            [sys.executable, "-m", "benchmarks.train_epochs", "data/normalized", arch, epochs_arg, clips_arg],
            train_folder,
        )
    best = fastest(jobs, repeat, key=lambda m: 1.0 / clips_per_second(m)[0])
    theirs_rate, theirs_first, _ = clips_per_second(best["original"])
    results.add(
        f"train: the original network and loop, {clips} clips",
        best["original"],
        None,
        note=f"{theirs_rate:.0f} clips/s; first epoch {theirs_first:.0f} s; TensorFlow's default kernels",
    )
    rate, first, _ = clips_per_second(best["original, oneDNN"])
    results.add(
        f"train: the original network and loop with oneDNN's kernels, {clips} clips",
        best["original, oneDNN"],
        None,
        note=f"{rate:.0f} clips/s ({rate / theirs_rate:.2f}x); first epoch {first:.0f} s",
    )
    for arch in ("seed", "conv"):
        rate, first, device = clips_per_second(best[arch])
        results.add(
            f"train: vae.arch {arch}, {clips} clips",
            None,
            best[arch],
            f"{rate / theirs_rate:.2f}x",
            f"{rate:.0f} clips/s on {device}; first epoch {first:.0f} s",
        )


if __name__ == "__main__":
    main()
