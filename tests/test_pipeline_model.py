"""End to end: the whole pipeline, model half included (train, generate), run by
real DVC in one committed copy of the repository with tiny params and a tiny
model; then experiments, the generate CLI, a remote round trip, a queued grid
search and a diverging training run, all in that same copy.

The tests share the copy (``pipeline``, module scope) so that the pipeline is
reproduced from scratch only once. Each leaves the copy reproduced and up to
date, whatever its params, so they do not depend on each other's order.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from conftest import (
    DVC,
    REPO,
    UP_TO_DATE,
    dump_dom,
    params_of,
    ran_stages,
    readme_comparison,
    reproduced_copy,
    run,
    tool_env,
)

#: The metrics the README's comparison always shows.
HEADLINE = ("accuracy", "judge", "judge_mfcc", "voiced", "naturalness", "test_mse")

STAGES = ["download", "extract", "normalize", "train", "generate", "classify", "mfcc_judge", "evaluate"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The copy after a first ``dvc repro``, and that command's result."""
    return reproduced_copy(tmp_path_factory, "model_pipeline")


def test_repro_runs_every_stage_and_generates_every_digit(pipeline):
    repo, first = pipeline
    assert ran_stages(first.stdout) == STAGES
    assert "Running stage 'plots_page'" in first.stdout and "Running stage 'check_params'" in first.stdout
    for noise in ("cuInit", "absl::InitializeLog", "cudart_stub", "use_unbounded_threadpool"):
        assert noise not in first.stdout + first.stderr  # TensorFlow's start-up lines are silenced

    generated = repo / "data" / "generated"
    wavs = [f"{digit}_00.wav" for digit in range(10)]
    assert sorted(p.name for p in generated.iterdir()) == sorted(wavs + ["mels.npy", "mels.png", "samples.json"])
    mel = params_of(repo)["mel"]
    for name in wavs:
        info = sf.info(generated / name)
        assert (info.samplerate, info.channels, info.subtype) == (mel["sample_rate"], 1, "PCM_16")
        assert info.frames == round(mel["duration"] * mel["sample_rate"])
    assert (generated / "mels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model_info = json.loads((repo / "data" / "model" / "model.json").read_text())
    assert model_info["latent_dim"] == 4 and model_info["shape"] == [mel["n_mels"], mel["frames"]]

    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout

    metrics = json.loads((repo / "metrics" / "train" / "metrics.json").read_text())
    assert set(metrics["test"]) == {"mse", "pitch_mse", "kl", "elbo"}
    shown = json.loads(run(DVC + ["metrics", "show", "--json"], repo).stdout)
    workspace = shown[""]["data"]
    assert sorted(workspace) == ["metrics/summary.json", "metrics/vae.json"]  # the headline only
    summary = workspace["metrics/summary.json"]["data"]
    assert set(summary) <= {
        *("accuracy", "judge", "judge_mfcc", "voiced", "naturalness", "pesq", "novelty", "converted", "voice_kept")
    }
    assert {"accuracy", "judge", "judge_mfcc", "voiced", "naturalness"} <= set(summary)
    assert workspace["metrics/vae.json"]["data"] == {"test_mse": pytest.approx(metrics["test"]["mse"], rel=1e-3)}
    # Every headline number in one table, about 140 columns (README's comparison fits 120: --keep).
    table = run(DVC + ["metrics", "show"], repo).stdout
    assert "test_mse" in table and max(len(line) for line in table.splitlines()) <= 140

    plots = json.loads(run(DVC + ["plots", "show", "--json"], repo).stdout)
    assert not plots.get("errors")
    loss_plot = plots["data"]["VAE loss (training and validation)"][0]["content"]["data"]["values"]
    curves = {point["rev"] if "filename" not in point else point["filename"] for point in loss_plot}
    assert len(curves) == 2  # training and validation, in one plot
    assert sorted({point["step"] for point in loss_plot}) == ["0", "1"]
    assert "data/generated/mels.png" in plots["data"]  # the mel grid is a plot too


def test_plots_page_works_offline_and_leaves_the_repository_clean(pipeline, tmp_path):
    repo, _ = pipeline
    run(DVC + ["plots", "show"], repo)
    page = repo / "dvc_plots" / "index.html"
    html = page.read_text()
    assert "cdn.jsdelivr" not in html and "<script src=" not in html  # Vega inline, from the template
    assert run(["git", "status", "--porcelain", "dvc_plots"], repo).stdout == ""  # git-ignored
    dom = dump_dom(page, tmp_path / "profile")  # chromium with no network to reach
    assert dom.count('class="marks"') >= 4  # the three curves and the confusion matrix, drawn


def test_generate_cli_asks_for_one_digit(pipeline, tmp_path):
    repo, _ = pipeline
    out = tmp_path / "sevens"
    result = run([sys.executable, "-m", "stages.generate", "--digit", "7", "--count", "3", "--out", str(out)], repo)
    assert str(out.resolve()) in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "7_00.wav",
        "7_01.wav",
        "7_02.wav",
        "mels.npy",
        "mels.png",
        "samples.json",
    ]
    assert [r["digit"] for r in json.loads((out / "samples.json").read_text())] == [7, 7, 7]
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout  # data/generated untouched

    bad = run(
        [sys.executable, "-m", "stages.generate", "--digit", "11", "--out", str(tmp_path / "bad")], repo, check=False
    )
    assert bad.returncode == 2
    assert "--digit" in bad.stderr and "invalid choice" in bad.stderr
    assert not (tmp_path / "bad").exists()

    # A seed numpy cannot take and a count past the cap: one line each, before any work.
    for flags, line in [
        (["--seed", "-1"], "error: --seed -1: expected a whole number from 0 to 2**31 - 1"),
        (["--count", "100000"], "error: --count 100000: asks for 1000000 clips; at most 10000 in one call"),
    ]:
        command = [sys.executable, "-m", "stages.generate", *flags, "--out", str(tmp_path / "bad")]
        refused = run(command, repo, check=False)
        assert refused.returncode == 1 and error_lines(refused)[0].startswith(line), refused.stderr
        assert len(error_lines(refused)) == 1
    assert not (tmp_path / "bad").exists()


def test_generate_cli_speaks_in_a_chosen_voice(pipeline, tmp_path):
    repo, _ = pipeline
    with zipfile.ZipFile(repo / "data" / "raw" / "audio.zip") as archive:
        members = sorted(n for n in archive.namelist() if n.endswith(".wav"))
        a, b = (tmp_path / Path(members[i]).name for i in (0, -1))
        a.write_bytes(archive.read(members[0]))
        b.write_bytes(archive.read(members[-1]))
    out = tmp_path / "between"
    command = [sys.executable, "-m", "stages.generate", "--digit", "2", "--between", str(a), str(b), "--steps", "3"]
    run([*command, "--out", str(out)], repo)
    records = json.loads((out / "samples.json").read_text())
    assert [(r["file"], r["digit"], r["voice"]["step"]) for r in records] == [
        ("2_00.wav", 2, 0),
        ("2_01.wav", 2, 1),
        ("2_02.wav", 2, 2),
    ]
    assert records[0]["voice"]["between"] == [str(a), str(b)]
    assert all(sf.info(out / r["file"]).samplerate == params_of(repo)["mel"]["sample_rate"] for r in records)
    # Several recordings of one voice.
    out = tmp_path / "like"
    run([sys.executable, "-m", "stages.generate", "--digit", "4", "--like", str(a), str(b), "--out", str(out)], repo)
    records = json.loads((out / "samples.json").read_text())
    assert [(r["file"], r["digit"], r["voice"]) for r in records] == [("4_00.wav", 4, {"like": [str(a), str(b)]})]
    # A training speaker's voice, two takes of two digits.
    name = sorted(json.loads((repo / "data" / "model" / "speakers.json").read_text()))[0]
    out = tmp_path / "speaker"
    run([sys.executable, "-m", "stages.generate", "--speaker", name, "--count", "2", "--out", str(out)], repo)
    records = json.loads((out / "samples.json").read_text())
    assert len(records) == 20 and {r["digit"] for r in records} == set(range(10))
    assert all(r["voice"] == {"speaker": name} for r in records)

    # An unknown speaker, a file that is not a wav: one line each, and nothing written.
    (tmp_path / "3_x_0.wav").write_text("hello")
    for flags, line in [
        (["--speaker", "nobody"], "error: --speaker 'nobody': not a training speaker; expected one of "),
        (["--like", str(tmp_path / "3_x_0.wav")], f"error: {tmp_path / '3_x_0.wav'}: "),
    ]:
        refused = run(
            [sys.executable, "-m", "stages.generate", *flags, "--out", str(tmp_path / "bad")], repo, check=False
        )
        assert refused.returncode == 1 and error_lines(refused)[0].startswith(line), refused.stderr
        assert len(error_lines(refused)) == 1
    assert not (tmp_path / "bad").exists()
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout


def error_lines(result) -> list[str]:
    """The lines of stderr that are the stage's own (not TensorFlow's start-up log), a traceback included."""
    return [line for line in result.stderr.splitlines() if line.startswith(("error:", "Traceback", "  "))]


def test_generate_out_never_overwrites_or_removes_a_users_files(pipeline, tmp_path):
    repo, _ = pipeline
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my own work\n")
    generate = [sys.executable, "-m", "stages.generate", "--digit", "3", "--count", "2", "--out"]
    run(generate + [str(out)], repo)
    assert sorted(p.name for p in out.iterdir()) == [
        "3_00.wav",
        "3_01.wav",
        "mels.npy",
        "mels.png",
        "notes.txt",
        "samples.json",
    ]
    assert (out / "notes.txt").read_text() == "my own work\n"

    # Again into the same folder: the names clash, so it is refused and nothing changes.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = run(generate + [str(out)], repo, check=False)
    assert again.returncode == 1
    assert error_lines(again) == [
        f"error: --out {out}: already holds 3_00.wav; give a new folder (nothing is ever overwritten there)"
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    # The repository root, its .git, the home directory: refused before any work, all intact.
    tracked = run(["git", "ls-files"], repo).stdout
    for target, reason in [
        (".", "is a repository's root"),
        (".git", "is inside .git or .dvc"),
        (str(Path.home()), "refusing to write into"),
    ]:
        result = run(generate + [target], repo, check=False)
        assert result.returncode == 1 and len(error_lines(result)) == 1 and reason in result.stderr, result.stderr
    assert run(["git", "ls-files"], repo).stdout == tracked
    assert not any(repo.glob("3_0*.wav")) and not any(Path.home().glob("3_0*.wav"))
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout


def test_a_stage_run_by_hand_after_a_mel_edit_is_refused_in_one_line(pipeline, tmp_path):
    """The model holds the geometry of the features it learnt; inverting with another would be silently wrong."""
    repo, _ = pipeline
    original = (repo / "params.yaml").read_text()
    frames = params_of(repo)["mel"]["frames"]
    try:
        (repo / "params.yaml").write_text(original.replace(f"frames: {frames}", f"frames: {frames + 8}"))
        for stage in ("generate", "evaluate"):
            extra = ["--out", str(tmp_path / "out")] if stage == "generate" else []
            result = run([sys.executable, "-m", f"stages.{stage}", *extra], repo, check=False)
            assert result.returncode == 1 and error_lines(result) == [
                f"error: params.yaml: mel.frames = {frames + 8}, but data/model was made with mel.frames = "
                f"{frames}; run dvc repro to remake it with the params"
            ], stage
        assert not (tmp_path / "out").exists()
    finally:
        (repo / "params.yaml").write_text(original)
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout


def experiments(repo: Path) -> dict[str, dict]:
    """``dvc exp show --json`` as {experiment name: {"latent_dim", "mse"}}."""
    rows = {}
    for commit in json.loads(run(DVC + ["exp", "show", "--json"], repo).stdout):
        for exp in commit.get("experiments") or []:
            data = exp["revs"][0]["data"]
            metrics = data.get("metrics", {}).get("metrics/vae.json", {}).get("data", {})
            rows[exp["name"]] = {
                "latent_dim": data["params"]["params.yaml"]["data"]["latent_dim"],
                "mse": metrics.get("test_mse"),
            }
    return rows


def test_the_readme_comparison_keeps_the_headline_metrics_when_they_are_equal(pipeline):
    # Right after dvc repro, the workspace and HEAD have the same value in every column: --only-changed
    # alone left only the Experiment column.
    repo, _ = pipeline
    table = run(DVC + readme_comparison() + ["--no-pager"], repo, env={"COLUMNS": "120"}).stdout
    header = next(line for line in table.splitlines() if "Experiment" in line)
    for column in HEADLINE:
        assert f" {column} " in f" {header} ", table


def test_exp_run_with_a_model_param_reruns_train_generate_and_evaluate(pipeline):
    repo, _ = pipeline
    latent = 8 if params_of(repo)["latent_dim"] != 8 else 6
    result = run(DVC + ["exp", "run", "-S", f"latent_dim={latent}"], repo)
    assert ran_stages(result.stdout) == ["train", "generate", "evaluate"]
    for stage in ("download", "extract", "normalize", "classify"):
        assert f"Stage '{stage}' didn't change, skipping" in result.stdout
    name = re.search(r"Ran experiment\(s\): (\S+)", result.stdout).group(1)

    assert params_of(repo)["latent_dim"] == latent
    assert json.loads((repo / "data" / "model" / "model.json").read_text())["latent_dim"] == latent
    mse = json.loads((repo / "metrics" / "train" / "metrics.json").read_text())["test"]["mse"]
    assert experiments(repo)[name] == {"latent_dim": latent, "mse": pytest.approx(mse, rel=1e-3)}
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout

    # The README's comparison fits a 120-column terminal: names, the params that differ, the headline metrics.
    table = run(DVC + readme_comparison() + ["--no-pager"], repo, env={"COLUMNS": "120"}).stdout
    header = next(line for line in table.splitlines() if "Experiment" in line)
    for column in (*HEADLINE, "latent_dim"):
        assert f" {column} " in f" {header} ", table
    assert name in table and "…" not in table and max(len(line) for line in table.splitlines()) <= 120, table


def outputs(repo: Path) -> dict[str, bytes]:
    """Every file under data/ and metrics/ (the pipeline's outputs), by path; not check_params' token,
    which DVC removes before that stage runs."""
    return {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for folder in ("data", "metrics")
        for p in sorted((repo / folder).rglob("*"))
        if p.is_file() and p.name != "params_checked.txt"
    }


@pytest.mark.parametrize(
    "change, expected",
    [
        (["exp", "run", "-S", "latent_dim=0"], "latent_dim = 0 is not allowed"),
        (["exp", "run", "-S", "data.source=no/such/folder"], "data.source = 'no/such/folder': no such file or folder"),
        (["exp", "run", "-S", "vae.arch=seed"], "vae.arch = 'seed' is the original 50 x 50 network"),  # with mel
        (["exp", "run", "-S", "+latnet_dim=8"], "unknown key 'latnet_dim'"),  # + appends a key
        (["repro"], "unknown key 'latnet_dim'"),  # the typo appended to params.yaml by hand
    ],
)
def test_refused_params_leave_every_previous_output_in_place(pipeline, change, expected):
    repo, _ = pipeline
    params_yaml = (repo / "params.yaml").read_bytes()
    before = outputs(repo)
    if change == ["repro"]:
        (repo / "params.yaml").write_bytes(params_yaml + b"latnet_dim: 8\n")
    try:
        result = run(DVC + change, repo, check=False)
        assert result.returncode != 0
        assert f"error: params.yaml: {expected}" in result.stderr or f"error: {expected}" in result.stderr, (
            result.stderr
        )
        assert ran_stages(result.stdout) == []
        after = outputs(repo)
        assert sorted(after) == sorted(before) and after == before  # the model, the data: all still there
    finally:
        (repo / "params.yaml").write_bytes(params_yaml)
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout or ran_stages(run(DVC + ["repro"], repo).stdout) == []


def commit_all(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "--allow-empty", "-m", message], repo)


def test_queued_grid_search_runs_every_combination(pipeline):
    repo, _ = pipeline
    commit_all(repo, "baseline for the queue")  # dvc.lock and metrics committed: the queue reuses the data
    queued = run(DVC + ["exp", "run", "--queue", "train", "-S", "latent_dim=2,3"], repo)
    names = re.findall(r"Queued experiment '([^']+)'", queued.stdout)
    assert len(names) == 2, queued.stdout
    try:
        ran = run(DVC + ["exp", "run", "--run-all"], repo, timeout=300)  # waits for the queue to drain
    finally:
        run(DVC + ["queue", "stop"], repo, check=False)
    status = run(DVC + ["queue", "status"], repo).stdout
    for name in names:
        assert re.search(rf"{name}\s.*Success", status), status + ran.stdout + ran.stderr

    found = experiments(repo)
    assert sorted(found[name]["latent_dim"] for name in names) == [2, 3]
    for name in names:
        assert isinstance(found[name]["mse"], float) and 0 < found[name]["mse"] < 1
    assert found[names[0]]["mse"] != found[names[1]]["mse"]
    # The queue ran elsewhere: the workspace is as it was.
    assert params_of(repo)["latent_dim"] not in (2, 3)
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout


def test_push_clone_pull_round_trip(pipeline, tmp_path):
    repo, _ = pipeline
    run(DVC + ["remote", "add", "-d", "-f", "local", str(tmp_path / "remote")], repo)
    run(DVC + ["push"], repo)
    commit_all(repo, "results")
    assert run(["git", "status", "--porcelain"], repo).stdout == ""

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "data" / "model").exists()
    run(DVC + ["pull"], clone)
    assert UP_TO_DATE in run(DVC + ["status"], clone).stdout
    again = run(DVC + ["repro"], clone)
    assert ran_stages(again.stdout) == []
    for stage in STAGES + ["plots_page"]:
        assert f"Stage '{stage}' didn't change, skipping" in again.stdout
    for path in (
        "data/model/decoder.keras",
        "data/generated/3_00.wav",
        "data/normalized/train/x.npy",
        "metrics/train/metrics.json",
    ):
        assert (clone / path).read_bytes() == (repo / path).read_bytes(), path


def test_diverging_train_fails_with_one_line_and_no_model(pipeline):
    repo, _ = pipeline
    good = (repo / "params.yaml").read_text()
    params = params_of(repo)
    params["train"]["learning_rate"] = 10.0
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        failed = run(DVC + ["repro"], repo, check=False)
        assert failed.returncode != 0
        assert ran_stages(failed.stdout) == ["train"]
        errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, failed.stderr
        assert errors[0].startswith("error: training diverged: ")
        assert "train.learning_rate (now 10.0)" in errors[0]
        assert "Traceback" not in failed.stderr
        assert not (repo / "data" / "model").exists()
        assert not list((repo / "data").glob(".model.*"))  # no half-written model either
    finally:
        (repo / "params.yaml").write_text(good)
    # With the learning rate back, the pipeline recovers.
    recovered = run(DVC + ["repro"], repo)
    # The same params train the same bytes, so nothing after train reruns.
    assert ran_stages(recovered.stdout) == ["train"]
    assert (repo / "data" / "model" / "decoder.keras").exists()
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout


def test_one_core_trains_the_same_model_as_every_core(pipeline):
    # With TensorFlow's threads per op following the cores, SPEAKDIGITS_CORES=1 (the README's advice for
    # two queued experiments) trained another model, and so other clips and figures, from the same params.
    repo, _ = pipeline
    trained = ("data/model/", "metrics/vae", "metrics/train/")
    before = {name: data for name, data in outputs(repo).items() if name.startswith(trained)}
    # The suite's own runs use one core each (conftest): train on every core of the machine, then on one.
    run([sys.executable, "-m", "stages.train"], repo, env={"SPEAKDIGITS_CORES": str(os.cpu_count() or 1)})
    assert {name: data for name, data in outputs(repo).items() if name.startswith(trained)} == before
    run([sys.executable, "-m", "stages.train"], repo, env={"SPEAKDIGITS_CORES": "1"})
    after = {name: data for name, data in outputs(repo).items() if name.startswith(trained)}
    assert sorted(after) == sorted(before) and "data/model/decoder.keras" in after
    assert [name for name in before if after[name] != before[name]] == []
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout


def documented(command_start: str) -> str:
    """The command of docs/pipeline.md that starts with ``command_start`` (the recovery steps the docs promise)."""
    lines = (REPO / "docs" / "pipeline.md").read_text(encoding="utf-8").splitlines()
    return next(line.strip() for line in lines if line.strip().startswith(command_start))


def test_an_interrupted_experiment_is_undone_by_the_documented_recovery(pipeline):
    # Ctrl-C in `dvc exp run` during train: DVC had removed the model and the git-tracked metrics, and
    # `dvc checkout` alone brought back the model only.
    repo, _ = pipeline
    commit_all(repo, "the results an experiment is tried against")
    before = outputs(repo)
    proc = subprocess.Popen(
        DVC + ["exp", "run", "-S", "train.epochs=500", "-S", "train.patience=500"],  # long enough to interrupt
        cwd=repo,
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # Ctrl-C reaches DVC and the stage it runs, as in a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for line in proc.stdout:
            if line.startswith("Running stage 'train'"):
                break
        time.sleep(4)  # TensorFlow is loading or training; DVC removed the outputs first
        assert proc.poll() is None, "the experiment ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    assert not (repo / "data" / "model").exists() and not (repo / "metrics" / "vae.json").exists()

    recovery = documented("git checkout HEAD -- ")
    run(["bash", "-c", recovery], repo)
    assert outputs(repo) == before
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout


def test_an_experiment_run_on_one_machine_is_compared_on_another(pipeline, tmp_path):
    # Two clones of a bare Git repository stand in for two machines, a local folder for the DVC remote.
    repo, _ = pipeline
    run(DVC + ["remote", "add", "-d", "-f", "shared", str(tmp_path / "dvc-remote")], repo)
    run(DVC + ["push", "-q"], repo)
    commit_all(repo, "results, and the shared remote")
    run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], tmp_path)
    run(["git", "push", "-q", str(tmp_path / "origin.git"), "HEAD:refs/heads/main"], repo)
    machine, other = tmp_path / "machine", tmp_path / "other"
    for clone in (machine, other):
        run(["git", "clone", "-q", "-b", "main", str(tmp_path / "origin.git"), str(clone)], tmp_path)

    run(DVC + ["pull", "-q"], machine)
    latent = 6 if params_of(machine)["latent_dim"] != 6 else 5
    result = run(DVC + ["exp", "run", "-S", f"latent_dim={latent}"], machine)
    assert ran_stages(result.stdout) == ["train", "generate", "evaluate"]  # the pulled outputs are reused
    name = re.search(r"Ran experiment\(s\): (\S+)", result.stdout).group(1)
    run(DVC + ["exp", "push", "origin", name], machine)

    run(DVC + ["exp", "pull", "origin"], other)
    table = run(DVC + readme_comparison() + ["--no-pager"], other, env={"COLUMNS": "120"}).stdout
    assert name in table and "latent_dim" in table, table
    run(DVC + ["exp", "apply", name], other)
    assert params_of(other)["latent_dim"] == latent
    for path in ("data/model/decoder.keras", "data/generated/3_00.wav", "metrics/summary.json"):
        assert (other / path).read_bytes() == (machine / path).read_bytes(), path

    # With an experiment's results in the workspace, a refused value is undone by `dvc exp apply`, as the docs
    # say: `git checkout params.yaml` brought back the commit's params beside the experiment's model.
    experiment = outputs(other)
    refused = run(DVC + ["exp", "run", "-S", "latent_dim=0"], other, check=False)
    assert refused.returncode != 0 and params_of(other)["latent_dim"] == 0
    assert documented("dvc exp apply ") == "dvc exp apply <name>"
    run(DVC + ["exp", "apply", name], other)
    assert params_of(other)["latent_dim"] == latent and outputs(other) == experiment
    assert UP_TO_DATE in run(DVC + ["status"], other).stdout
