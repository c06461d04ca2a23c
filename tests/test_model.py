"""Library-level tests of the model half: the VAE's architectures, saving and
loading, the KL term, training with DVCLive (determinism and the NaN guard),
generation of wav files, and the vocoders. Real TensorFlow on tiny hand-made
data; no DVC."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import soundfile as sf
import yaml
from PIL import Image

from speakdigits.audio import log_mel
from speakdigits.errors import PipelineError
from speakdigits.formats.model import load_vae, read_geometry, read_latents, read_model_info, read_speakers, save_vae
from speakdigits.formats.normalized import write_split, write_stats
from speakdigits.generation import generate_clips, grid_rows, requested_digits, save_mel_grid
from speakdigits.model import (
    CHANNELS,
    TrainedVAE,
    build_encoder_decoder,
    fit_latent_gaussians,
    from_channels,
    kl_divergence,
    sample_latents,
    to_channels,
)
from speakdigits.params import GenerateParams, MelParams, TrainParams, VaeParams, load_params
from speakdigits.training import compiled_vae, train_vae
from speakdigits.vocoder import mel_to_audio

from conftest import REPO

SHAPE = (16, 16)
LATENT = 4
VAE_PARAMS = VaeParams(arch="conv", conditional=True, filters=(8, 16), dense=32)
TRAIN_PARAMS = TrainParams(
    epochs=2,
    batch_size=16,
    learning_rate=0.001,
    warmup_epochs=0.0,
    reconstruction_weight=2000.0,
    pitch_weight=1.0,
    digit_adversary=0.0,
    patience=8,
)
# Small, fast inversion settings matching SHAPE: 2000 samples, hop 133, n_fft 256.
MEL = MelParams(
    sample_rate=8000,
    duration=0.25,
    n_mels=SHAPE[0],
    frames=SHAPE[1],
    n_fft=256,
    fmin=0.0,
    fmax=None,
    trim_db=None,
    top_db=80.0,
)


# --------------------------------------------------------------------------- architectures

SEED_ENCODER = {
    "conv1": (48, 48, 40),
    "pool1": (24, 24, 40),
    "conv2": (22, 22, 25),
    "pool2": (11, 11, 25),
    "flatten": (3025,),
    "dense800": (800,),
    "dense60": (60,),
}
SEED_DECODER = {
    "dense60": (60,),
    "dense800": (800,),
    "dense3025": (3025,),
    "reshape": (11, 11, 25),
    "up1": (22, 22, 25),
    "deconv1": (24, 24, 40),
    "up2": (48, 48, 40),
    "deconv2": (50, 50, 2),  # the log-mel and f0; the voicing is read off them
}


@pytest.mark.parametrize("conditional", [True, False])
def test_seed_arch_reproduces_the_notebook_layer_shapes(conditional):
    encoder, decoder = build_encoder_decoder(
        (50, 50), latent_dim=7, arch="seed", conditional=conditional, filters=[32], dense=16
    )
    for name, shape in SEED_ENCODER.items():
        assert tuple(encoder.get_layer(name).output.shape[1:]) == shape, name
    for name in ("mu", "log_var"):
        assert tuple(encoder.get_layer(name).output.shape[1:]) == (7,)
    for name, shape in SEED_DECODER.items():
        assert tuple(decoder.get_layer(name).output.shape[1:]) == shape, name
    assert tuple(decoder.output.shape[1:]) == (50, 50, CHANNELS)
    # The digit goes in only for conditional models.
    assert len(encoder.inputs) == len(decoder.inputs) == (2 if conditional else 1)
    assert tuple(decoder.inputs[0].shape[1:]) == (7,)
    if conditional:
        assert tuple(encoder.get_layer("with_digit").output.shape[1:]) == (3025 + 10,)
        assert tuple(decoder.get_layer("z_with_digit").output.shape[1:]) == (7 + 10,)


def test_seed_arch_rejects_other_shapes():
    with pytest.raises(PipelineError, match=r"mel\.n_mels") as err:
        build_encoder_decoder((64, 64), latent_dim=8, arch="seed", conditional=True, filters=[8], dense=8)
    assert "64 x 64" in str(err.value)


@pytest.mark.parametrize("shape", [(50, 50), (32, 48), (21, 13)])
@pytest.mark.parametrize("conditional", [True, False])
def test_conv_arch_keeps_any_shape_and_outputs_unit_range(shape, conditional):
    encoder, decoder = build_encoder_decoder(
        shape, latent_dim=5, arch="conv", conditional=conditional, filters=[8, 16], dense=32
    )
    assert tuple(decoder.output.shape[1:]) == (*shape, CHANNELS)
    images = np.random.default_rng(0).uniform(0, 1, (3, *shape, CHANNELS)).astype(np.float32)
    digits = keras.utils.to_categorical([1, 5, 9], 10)
    mu, log_var = encoder.predict([images, digits] if conditional else images, verbose=0)
    assert mu.shape == log_var.shape == (3, 5)
    z = np.random.default_rng(1).normal(0, 3, (3, 5)).astype(np.float32)
    mels, pitch = TrainedVAE(encoder, decoder, conditional).decode(z, np.array([1, 5, 9]) if conditional else None)
    assert mels.shape == (3, *shape) and pitch.shape == (3, 2, shape[1])
    for out in (mels, pitch):
        assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1


def test_the_pitch_track_goes_down_every_column_and_comes_back_as_the_column_mean():
    rng = np.random.default_rng(0)
    mels, pitch = rng.uniform(size=(2, 5, 7)), rng.uniform(size=(2, 2, 7))
    image = to_channels(mels, pitch)
    assert image.shape == (2, 5, 7, 3) and image.dtype == np.float32
    np.testing.assert_array_equal(image[1, :, 4, 1], np.full(5, pitch[1, 0, 4], np.float32))  # f0 of frame 4
    np.testing.assert_array_equal(image[0, 2, :, 2], pitch[0, 1].astype(np.float32))  # voicing along a row
    back_mels, back_pitch = from_channels(image)
    np.testing.assert_allclose(back_mels, mels, rtol=1e-6)
    np.testing.assert_allclose(back_pitch, pitch, rtol=1e-6)
    image[:, 0, :, 1] += 0.5  # one row of the f0 channel off: the frame's f0 is the column's mean
    np.testing.assert_allclose(from_channels(image)[1][:, 0], pitch[:, 0] + 0.1, rtol=1e-5)


def test_save_and_load_round_trip_gives_identical_predictions(tmp_path):
    encoder, decoder = build_encoder_decoder(
        (20, 12), latent_dim=3, arch="conv", conditional=True, filters=[8, 16], dense=16
    )
    info = {"arch": "conv", "conditional": True, "latent_dim": 3, "shape": [20, 12]}
    latents = {"4": {"clips": 1, "mean": [0.5, 0.0, -1.0], "cov": np.eye(3).tolist()}}
    speakers = {"ann": {"clips": 2, "mean": [0.0, 1.0, 0.0], "cov": np.eye(3).tolist()}}
    save_vae(tmp_path, TrainedVAE(encoder, decoder, True), latents, speakers, info)
    assert read_model_info(tmp_path) == info
    assert read_latents(tmp_path) == latents
    assert read_speakers(tmp_path) == speakers
    loaded = load_vae(tmp_path)  # safe mode
    assert loaded.conditional
    loaded_encoder, loaded_decoder = loaded.encoder, loaded.decoder
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 1, (4, 20, 12, CHANNELS)).astype(np.float32)
    digits = keras.utils.to_categorical([0, 3, 6, 9], 10)
    for a, b in zip(encoder.predict([images, digits], verbose=0), loaded_encoder.predict([images, digits], verbose=0)):
        np.testing.assert_array_equal(a, b)
    z = rng.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        decoder.predict([z, digits], verbose=0), loaded_decoder.predict([z, digits], verbose=0)
    )


def test_missing_model_files_are_pipeline_errors(tmp_path):
    with pytest.raises(PipelineError, match="run the train stage"):
        read_model_info(tmp_path)
    (tmp_path / "model.json").write_text('{"conditional": true}')
    with pytest.raises(PipelineError, match="encoder.keras: not found; run the train stage"):
        load_vae(tmp_path)
    with pytest.raises(PipelineError, match="latents.json: not found; run the train stage"):
        read_latents(tmp_path)


def test_kl_divergence():
    zero = keras.ops.convert_to_numpy(kl_divergence(np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32)))
    np.testing.assert_array_equal(zero, [0.0, 0.0])
    # ½ [(1 + 1 − 1 − 0) + (4 + 4 − 1 − log 4)] = 4 − log 2
    mu = np.array([[1.0, 2.0]], np.float32)
    log_var = np.array([[0.0, math.log(4.0)]], np.float32)
    value = keras.ops.convert_to_numpy(kl_divergence(mu, log_var))
    assert value.shape == (1,)
    assert value[0] == pytest.approx(4 - math.log(2), rel=1e-6)


# --------------------------------------------------------------------------- training


def write_normalized(folder: Path, shape=SHAPE, counts=(("train", 40), ("val", 10), ("test", 10))) -> Path:
    """A normalize-stage output folder, with its writers: each digit a bright band at its own height,
    voiced where the band is, at an f0 of its own."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for split, n in counts:
        digits = np.arange(n) % 10
        x = rng.uniform(0, 0.2, (n, *shape))
        pitch = np.zeros((n, 2, shape[1]), np.float32)
        for i, digit in enumerate(digits):
            x[i, digit * shape[0] // 10 : digit * shape[0] // 10 + 2, :] += 0.7
            pitch[i, 0], pitch[i, 1, 2:-2] = 0.1 * digit, 1.0
        arrays = {
            "x": np.clip(x, 0, 1).astype(np.float32),
            "pitch": pitch,
            "digit": digits.astype(np.int64),
            "speaker": np.array([f"{split}{i % 2}" for i in range(n)], dtype=str),
            "take": (np.arange(n) // 10).astype(np.int64),
            "gender": np.array(["female"] * n, dtype=str),
            "age": np.full(n, -1, dtype=np.int64),
        }
        write_split(folder, split, arrays)
    mel_range = np.full(shape[0], -80.0, np.float32), np.zeros(shape[0], np.float32)
    write_stats(folder, mel_min=mel_range[0], mel_max=mel_range[1], speakers={}, geometry=MEL)
    return folder


def run_train(root: Path, name: str, normalized: Path, *, seed: int = 1, **changes) -> tuple[Path, Path, dict]:
    model_dir, live_dir = root / name / "model", root / name / "live"
    metrics = train_vae(
        normalized,
        model_dir,
        live_dir,
        latent_dim=LATENT,
        vae=VAE_PARAMS,
        train=dataclasses.replace(TRAIN_PARAMS, **changes),
        seed=seed,
    )
    return model_dir, live_dir, metrics


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny conditional model trained for 2 epochs, and its normalized folder."""
    root = tmp_path_factory.mktemp("trained")
    normalized = write_normalized(root / "normalized")
    model_dir, live_dir, metrics = run_train(root, "a", normalized)
    return {"root": root, "normalized": normalized, "model": model_dir, "live": live_dir, "metrics": metrics}


def read_tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


#: What the train stage saves: the two halves, where the clips lie in latent space, and what the model is.
MODEL_FILES = ["decoder.keras", "encoder.keras", "latents.json", "model.json", "speakers.json"]


def test_train_writes_model_and_dvclive_metrics(trained):
    model_dir, live_dir = trained["model"], trained["live"]
    assert sorted(p.name for p in model_dir.iterdir()) == MODEL_FILES
    # Where the training clips of each digit lie in latent space, for generation to draw from.
    latents = read_latents(model_dir)
    assert sorted(latents) == [str(d) for d in range(10)]
    for group in latents.values():
        assert group["clips"] == 4  # 40 training clips, digits 0-9 in turn
        assert len(group["mean"]) == LATENT and np.array(group["cov"]).shape == (LATENT, LATENT)
        assert np.all(np.linalg.eigvalsh(group["cov"]) > 0)
    assert read_model_info(model_dir) == {
        "arch": "conv",
        "conditional": True,
        "latent_dim": LATENT,
        "shape": list(SHAPE),
        "epochs_run": 2,
        "mel": dataclasses.asdict(MEL),
    }
    assert read_geometry(model_dir) == MEL  # carried from the features, for generation to invert with
    # No temporary folders of the atomic writes are left beside the outputs.
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["live", "model"]

    metrics = json.loads((live_dir / "metrics.json").read_text())
    for section in ("train", "eval"):
        assert set(metrics[section]) == {"loss", "reconstruction", "pitch", "kl"}  # no adversary unless asked
        assert all(math.isfinite(v) for v in metrics[section].values())
    assert set(metrics["test"]) == {"mse", "pitch_mse", "kl", "elbo"}
    assert metrics["test"] == pytest.approx(trained["metrics"])
    assert 0 < metrics["test"]["mse"] < 1 and 0 < metrics["test"]["pitch_mse"] < 1 and metrics["test"]["kl"] >= 0
    # elbo is minus the training objective: weight x (MSE + pitch MSE) (with sampled z) + KL, so at most -KL.
    assert metrics["test"]["elbo"] < -metrics["test"]["kl"]
    assert metrics["step"] == 1

    for section in ("train", "eval"):
        for name in ("loss", "reconstruction", "kl"):
            rows = read_tsv(live_dir / "plots" / "metrics" / section / f"{name}.tsv")
            assert rows[0] == ["step", name]
            assert [r[0] for r in rows[1:]] == ["0", "1"], (section, name)
            assert all(math.isfinite(float(r[1])) for r in rows[1:])
    # Each epoch's loss is its parts' means combined, to the last bit: tracked as a mean of its own, the first
    # epoch's loss differed by a float32 step between identical trainings on a busy machine.
    w, pw = (np.float32(v) for v in (TRAIN_PARAMS.reconstruction_weight, TRAIN_PARAMS.pitch_weight))
    for section in ("train", "eval"):
        curve = {
            name: np.array(
                [r[1] for r in read_tsv(live_dir / "plots" / "metrics" / section / f"{name}.tsv")[1:]], np.float32
            )
            for name in ("loss", "reconstruction", "pitch", "kl")
        }
        np.testing.assert_array_equal(curve["loss"], w * (curve["reconstruction"] + pw * curve["pitch"]) + curve["kl"])
    # The last epoch's row is what metrics.json reports.
    assert float(read_tsv(live_dir / "plots" / "metrics" / "train" / "loss.tsv")[-1][1]) == pytest.approx(
        metrics["train"]["loss"]
    )


def test_a_digit_adversary_is_left_guessing_by_the_encoder_and_is_not_saved(tmp_path):
    normalized = write_normalized(tmp_path / "normalized", counts=(("train", 160), ("val", 40), ("test", 10)))
    fast = dict(epochs=8, learning_rate=0.01, batch_size=32)
    _, idle_live, _ = run_train(tmp_path, "idle", normalized, digit_adversary=1e-3, **fast)
    model_dir, live_dir, _ = run_train(tmp_path, "hiding", normalized, digit_adversary=100.0, **fast)
    idle, hiding = (
        json.loads((d / "metrics.json").read_text())["eval"]["digit_adversary"] for d in (idle_live, live_dir)
    )
    # Each digit is a band of its own in these images: barely pushed, the encoder lets the adversary read the
    # digit from mu (measured: cross-entropy 1.7); pushed hard, it leaves it guessing, near chance's ln 10
    # (measured: 2.38), rather than confidently wrong, as a gradient reversal left it (6.1).
    assert idle < math.log(10) - 0.4
    assert math.log(10) - 0.1 < hiding < math.log(10) + 0.3
    rows = read_tsv(live_dir / "plots" / "metrics" / "eval" / "digit_adversary.tsv")
    assert rows[0] == ["step", "digit_adversary"] and len(rows) == 9
    # The adversary only trains: the model is the same two halves.
    assert sorted(p.name for p in model_dir.iterdir()) == MODEL_FILES


def test_an_unconditional_model_trains_without_the_digit_adversary():
    # Its decoder is told nothing but z, so z must keep the digit: the default adversary weight leaves it alone.
    train = dataclasses.replace(TRAIN_PARAMS, digit_adversary=10.0)
    plain = dataclasses.replace(VAE_PARAMS, conditional=False)
    kwargs = dict(latent_dim=LATENT, train=train, seed=1, steps_per_epoch=1)
    assert compiled_vae(SHAPE, vae=plain, **kwargs).adversary is None
    assert compiled_vae(SHAPE, vae=VAE_PARAMS, **kwargs).adversary is not None


def decoder_weights(model_dir: Path) -> list[np.ndarray]:
    return load_vae(model_dir).decoder.get_weights()


def test_training_is_deterministic_for_a_seed(trained):
    again_model, again_live, _ = run_train(trained["root"], "again", trained["normalized"], seed=1)
    other_model, other_live, _ = run_train(trained["root"], "other", trained["normalized"], seed=2)

    first = json.loads((trained["live"] / "metrics.json").read_text())
    assert json.loads((again_live / "metrics.json").read_text()) == first
    for a, b in zip(decoder_weights(trained["model"]), decoder_weights(again_model), strict=True):
        np.testing.assert_array_equal(a, b)

    assert json.loads((other_live / "metrics.json").read_text())["test"] != first["test"]
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(decoder_weights(trained["model"]), decoder_weights(other_model), strict=True)
    )


TRAIN_IN_A_NEW_PROCESS = """
import sys
from pathlib import Path
from test_model import run_train
run_train(Path(sys.argv[1]), "in_another_process", Path(sys.argv[2]), seed=1)
"""


def test_a_training_in_another_process_writes_identical_model_files(trained):
    """Same data, params and seed in a fresh process: every file of the model, byte for byte."""
    subprocess.run(
        [sys.executable, "-c", TRAIN_IN_A_NEW_PROCESS, str(trained["root"]), str(trained["normalized"])],
        cwd=REPO,
        check=True,
        timeout=300,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
            "TF_CPP_MIN_LOG_LEVEL": "3",
        },
    )
    other = trained["root"] / "in_another_process" / "model"
    files = sorted(p.name for p in trained["model"].iterdir())
    assert files == sorted(p.name for p in other.iterdir())
    for name in files:
        assert (trained["model"] / name).read_bytes() == (other / name).read_bytes(), name


def test_diverging_training_raises_and_writes_nothing(trained):
    root = trained["root"] / "diverged"
    with pytest.raises(PipelineError, match=r"^training diverged: .*loss = (nan|inf)") as err:
        run_train(trained["root"], "diverged", trained["normalized"], learning_rate=10.0)
    assert "train.learning_rate (now 10.0)" in str(err.value)
    assert not (root / "model").exists()
    assert sorted(p.name for p in root.iterdir()) == ["live"]  # no temporary folders left
    # The curves up to the divergence stay, to look at; no final or test metrics.
    assert (root / "live" / "plots" / "metrics" / "train" / "loss.tsv").is_file()
    assert "test" not in json.loads((root / "live" / "metrics.json").read_text())


LIVE_CURVES_WHILE_TRAINING = """
import sys
from pathlib import Path
from test_model import run_train
run_train(Path(sys.argv[1]), "watched", Path(sys.argv[2]), epochs=200, patience=200)
"""


def live_summary(path: Path, deadline: float) -> dict:
    """DVCLive's ``metrics.json`` as a reader sees it while training: DVCLive rewrites the file in
    place each epoch, so a read can fall between the truncation and the write; read again then."""
    while True:
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            assert time.monotonic() < deadline, f"{path} never held a whole summary"
            time.sleep(0.05)


def test_curves_can_be_read_while_the_model_trains(trained):
    """DVCLive writes into metrics/train (not a temporary folder), so dvc plots show sees each epoch."""
    live = trained["root"] / "watched" / "live"
    proc = subprocess.Popen(
        [sys.executable, "-c", LIVE_CURVES_WHILE_TRAINING, str(trained["root"]), str(trained["normalized"])],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])},
    )
    try:
        deadline = time.monotonic() + 120
        loss = live / "plots" / "metrics" / "train" / "loss.tsv"
        while not (loss.is_file() and len(loss.read_text().splitlines()) >= 3):  # a header and two epochs
            assert proc.poll() is None, "training ended before it could be watched"
            assert time.monotonic() < deadline, "no curve appeared while training"
            time.sleep(0.1)
        assert proc.poll() is None  # still training, 198 epochs to go
        assert (live / "plots" / "metrics" / "eval" / "loss.tsv").is_file()  # validation, same quantity
        assert live_summary(live / "metrics.json", deadline)["step"] >= 1
        assert not (trained["root"] / "watched" / "model").exists()  # the model only once it is done
    finally:
        proc.kill()
        proc.wait()


def test_the_learning_rate_rises_over_the_warmup_epochs():
    # Adam's first step moves every weight by about the full rate: on FSDD it sent log σ² to 34 and the
    # first epoch's KL to 2.8e11. train.warmup_epochs ramps the rate up over the first epochs' steps.
    warm = dataclasses.replace(TRAIN_PARAMS, learning_rate=0.001, warmup_epochs=2.0)
    model = compiled_vae(SHAPE, latent_dim=LATENT, vae=VAE_PARAMS, train=warm, seed=0, steps_per_epoch=5)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0001)  # the first step: a tenth
    schedule = model.optimizer._learning_rate
    np.testing.assert_allclose(
        [float(schedule(step)) for step in range(12)], [i / 1e4 for i in range(1, 11)] + [1e-3] * 2
    )
    cold = dataclasses.replace(warm, warmup_epochs=0.0)
    model = compiled_vae(SHAPE, latent_dim=LATENT, vae=VAE_PARAMS, train=cold, seed=0, steps_per_epoch=5)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)


def test_an_integer_learning_rate_reaches_keras_as_a_float(tmp_path):
    """params.yaml validates train.learning_rate as a number, so ``10`` (what ``-S train.learning_rate=10``
    writes) is valid; Keras's optimizer rejects an int (ValueError), so load_params hands it on as ``10.0``.
    (The conversion of every number key: test_params.py; training at that rate diverges, and says so:
    test_diverging_training_raises_and_writes_nothing.)"""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["learning_rate"] = 10
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    learning_rate = load_params(path).train.learning_rate
    assert learning_rate == 10.0 and isinstance(learning_rate, float)
    cold = dataclasses.replace(TRAIN_PARAMS, learning_rate=learning_rate, warmup_epochs=0.0)  # the rate, unscheduled
    model = compiled_vae(SHAPE, latent_dim=LATENT, vae=VAE_PARAMS, train=cold, seed=0, steps_per_epoch=5)
    assert float(model.optimizer.learning_rate) == 10.0


def test_empty_training_split_is_a_pipeline_error(tmp_path):
    normalized = write_normalized(tmp_path / "normalized", counts=(("train", 0), ("val", 4), ("test", 4)))
    with pytest.raises(PipelineError, match="no training clips"):
        run_train(tmp_path, "empty", normalized)
    assert not (tmp_path / "empty").exists()


# --------------------------------------------------------------------------- generation


# The generate stage's settings in the tests that make clips: few vocoder rounds.
GEN_SETTINGS = GenerateParams(
    per_digit=1,
    n_samples=1,
    sampling="fitted",
    temperature=1.0,
    contrast=1.2,
    voice_detail=1.0,
    latent_voice=1.0,
    vocoder="harmonic",
    harmonic_iters=4,
    aperiodicity=0.7,
    griffin_lim_iters=4,
    griffin_lim_momentum=0.99,
)


def gen(trained, out: Path, digits, *, seed=3, model=None, sampling="fitted", **chosen):
    settings = dataclasses.replace(GEN_SETTINGS, sampling=sampling)
    return generate_clips(
        model or trained["model"],
        trained["normalized"],
        out,
        mel=MEL,
        generate=settings,
        digits=digits,
        seed=seed,
        **chosen,
    )


def test_conditional_generation_writes_every_digit(trained, tmp_path):
    out = tmp_path / "generated"
    digits = requested_digits(conditional=True, per_digit=2, n_samples=99)
    records = gen(trained, out, digits)

    names = [f"{d}_{i:02d}.wav" for d in range(10) for i in range(2)]
    assert sorted(p.name for p in out.iterdir()) == sorted(names + ["mels.npy", "mels.png", "samples.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generated"]  # no leftovers of the atomic write
    mels = np.load(out / "mels.npy")  # the decoder's images, for the evaluate stage's novelty check
    assert mels.shape == (len(names), *SHAPE) and mels.dtype == np.float32 and 0 <= mels.min() <= mels.max() <= 1
    n_samples = round(MEL.duration * MEL.sample_rate)
    for name in names:
        info = sf.info(out / name)
        assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", "PCM_16", 1, MEL.sample_rate)
        assert info.frames == n_samples
        samples, _ = sf.read(out / name, dtype="float32")
        assert np.all(np.isfinite(samples))
        assert 0.5 < np.abs(samples).max() <= 1.0  # peak-normalised to -1 dBFS, not silent
        assert np.sqrt(np.mean(samples**2)) > 0.01

    with Image.open(out / "mels.png") as image:
        assert image.format == "PNG"
        image.verify()
    listed = json.loads((out / "samples.json").read_text())
    assert listed == records
    assert [(r["file"], r["digit"]) for r in listed] == [(n, int(n[0])) for n in names]
    for record in listed:
        assert record["seconds"] == pytest.approx(MEL.duration)
        assert 0 < record["peak"] <= 1


def test_generation_is_reproducible_for_a_seed(trained, tmp_path):
    digits = [2, 2, 7]
    gen(trained, tmp_path / "a", digits, seed=5)
    gen(trained, tmp_path / "b", digits, seed=5)
    gen(trained, tmp_path / "c", digits, seed=6)
    names = ["2_00.wav", "2_01.wav", "7_00.wav"]
    for name in names + ["samples.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert all((tmp_path / "a" / n).read_bytes() != (tmp_path / "c" / n).read_bytes() for n in names)


def test_mel_grid_stays_the_same_size_however_many_clips(tmp_path):
    """generate.per_digit at its maximum (1000) once made a 251 MB picture; the grid shows 10 of each digit."""
    many = requested_digits(conditional=True, per_digit=1000, n_samples=0)
    rows = grid_rows(many)
    assert [len(row) for row in rows] == [10] * 10
    assert [many[row[0]] for row in rows] == list(range(10)) and rows[3] == list(range(3000, 3010))
    assert grid_rows([None] * 5000) == [list(range(i, i + 10)) for i in range(0, 100, 10)]
    assert grid_rows([7, 7, 7]) == [[0, 1, 2]]

    images = np.zeros((len(many), 4, 4), np.float32)
    images[::7] = -40.0
    titles = [f"digit {d}" for d in many]
    save_mel_grid(images, titles, tmp_path / "many.png", rows=rows)
    few = requested_digits(conditional=True, per_digit=10, n_samples=0)  # the default: 100 clips, all shown
    save_mel_grid(images[:100], [f"digit {d}" for d in few], tmp_path / "few.png", rows=grid_rows(few))
    for name in ("many.png", "few.png"):
        width, height = struct.unpack(">II", (tmp_path / name).read_bytes()[16:24])  # the PNG's IHDR
        assert (width, height) == (1280, 1200), name


def test_fitted_gaussians_are_the_moments_of_each_digits_posteriors():
    # Digit 3: posteriors at two points with variance 0.25 each; digit 8: one point, variance 1.
    mu = np.array([[1.0, 0.0], [3.0, 2.0], [-5.0, 4.0]])
    log_var = np.log(np.array([[0.25, 0.25], [0.25, 0.25], [1.0, 1.0]]))
    latents = fit_latent_gaussians(mu, log_var, np.array([3, 3, 8]))
    assert sorted(latents) == ["3", "8"]
    assert latents["3"]["clips"] == 2 and latents["3"]["mean"] == [2.0, 1.0]
    # The spread of the means (sample covariance) plus the mean posterior variance.
    np.testing.assert_allclose(latents["3"]["cov"], [[2.25, 2.0], [2.0, 2.25]])
    assert latents["8"]["mean"] == [-5.0, 4.0] and latents["8"]["cov"] == [[1.0, 0.0], [0.0, 1.0]]
    everything = fit_latent_gaussians(mu, log_var, None)
    assert list(everything) == ["all"] and everything["all"]["clips"] == 3


def test_fitted_sampling_draws_from_each_digits_gaussian():
    latents = {
        "1": {"clips": 9, "mean": [4.0, -2.0], "cov": [[1.0, 0.8], [0.8, 1.0]]},
        "2": {"clips": 9, "mean": [-4.0, 0.0], "cov": [[0.25, 0.0], [0.0, 4.0]]},
    }
    digits = [1] * 20000 + [2] * 20000
    z = sample_latents(latents, digits, latent_dim=2, temperature=1.0, rng=np.random.default_rng(0))
    for digit, rows in ((1, slice(0, 20000)), (2, slice(20000, None))):
        np.testing.assert_allclose(z[rows].mean(axis=0), latents[str(digit)]["mean"], atol=0.05)
        np.testing.assert_allclose(np.cov(z[rows], rowvar=False), latents[str(digit)]["cov"], atol=0.1)
    # The temperature scales the spread about the mean; 0 gives the mean itself.
    cold = sample_latents(latents, [2, 2], latent_dim=2, temperature=0.0, rng=np.random.default_rng(0))
    assert cold.tolist() == [[-4.0, 0.0], [-4.0, 0.0]]
    # The prior: N(0, temperature^2 I), whatever was fitted.
    prior = sample_latents(None, digits, latent_dim=2, temperature=0.5, rng=np.random.default_rng(0))
    np.testing.assert_allclose(prior.mean(axis=0), [0, 0], atol=0.02)
    np.testing.assert_allclose(prior.std(axis=0), [0.5, 0.5], atol=0.02)
    with pytest.raises(PipelineError, match="no training clip of digit 5.*generate.sampling=prior"):
        sample_latents(latents, [5], latent_dim=2, temperature=1.0, rng=np.random.default_rng(0))


def test_fitted_and_prior_sampling_give_different_clips(trained, tmp_path):
    gen(trained, tmp_path / "fitted", [4, 4], sampling="fitted")
    gen(trained, tmp_path / "prior", [4, 4], sampling="prior")
    assert not np.array_equal(np.load(tmp_path / "fitted" / "mels.npy"), np.load(tmp_path / "prior" / "mels.npy"))


@pytest.fixture
def unconditional_model(tmp_path):
    """An untrained unconditional model, saved as the train stage saves one."""
    encoder, decoder = build_encoder_decoder(
        SHAPE, latent_dim=LATENT, arch="conv", conditional=False, filters=[8, 16], dense=32
    )
    model_dir = tmp_path / "uncond_model"
    model_dir.mkdir()
    latents = fit_latent_gaussians(np.zeros((3, LATENT)), np.zeros((3, LATENT)), None)
    save_vae(
        model_dir,
        TrainedVAE(encoder, decoder, False),
        latents,
        {},
        {"arch": "conv", "conditional": False, "latent_dim": LATENT, "shape": list(SHAPE)},
    )
    return model_dir


def test_unconditional_generation_numbers_the_samples(trained, unconditional_model, tmp_path):
    out = tmp_path / "generated"
    records = gen(
        trained, out, requested_digits(conditional=False, per_digit=2, n_samples=3), model=unconditional_model
    )
    names = ["sample_000.wav", "sample_001.wav", "sample_002.wav"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names + ["mels.npy", "mels.png", "samples.json"])
    assert [(r["file"], r["digit"]) for r in records] == [(n, None) for n in names]
    for name in names:
        samples, rate = sf.read(out / name)
        assert rate == MEL.sample_rate and len(samples) == round(MEL.duration * MEL.sample_rate)
        assert np.abs(samples).max() > 0.5


def test_unconditional_model_cannot_be_asked_for_a_digit(trained, unconditional_model, tmp_path):
    with pytest.raises(PipelineError, match="unconditional"):
        gen(trained, tmp_path / "generated", [3, 3], model=unconditional_model)
    assert not (tmp_path / "generated").exists()


# --------------------------------------------------------------------------- vocoder


@pytest.mark.parametrize("f0", [300.0, 440.0])
def test_griffin_lim_recovers_the_pitch_of_a_harmonic_tone(f0):
    mel = MelParams(
        sample_rate=22050,
        duration=1.0,
        n_mels=64,
        frames=64,
        n_fft=1024,
        fmin=0.0,
        fmax=None,
        trim_db=None,
        top_db=80.0,
    )
    t = np.arange(mel.sample_rate) / mel.sample_rate
    tone = sum(a * np.sin(2 * np.pi * k * f0 * t) for k, a in ((1, 0.6), (2, 0.25), (3, 0.1))).astype(np.float32)
    image = log_mel(tone, mel=mel)
    assert image.shape == (64, 64)

    audio = mel_to_audio(image, mel=mel, n_iter=32, momentum=0.99, seed=0)
    assert audio.dtype == np.float32 and audio.shape == (mel.sample_rate,)
    assert np.abs(audio).max() == pytest.approx(10 ** (-1 / 20), rel=1e-6)
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    freqs = np.fft.rfftfreq(len(audio), 1 / mel.sample_rate)
    assert freqs[spectrum.argmax()] == pytest.approx(f0, rel=0.03)


def test_silent_image_gives_zeros_not_amplified_noise():
    mel = dataclasses.replace(MEL, n_mels=16, frames=16)
    audio = mel_to_audio(np.full((16, 16), -np.inf, np.float32), mel=mel, n_iter=4, momentum=0.99, seed=0)
    assert audio.dtype == np.float32 and audio.shape == (2000,)
    assert np.all(audio == 0)


def test_saved_model_files_are_byte_identical_for_identical_models(tmp_path):
    """Keras stamps the save time into .keras files; the pipeline's files must not change with it."""
    encoder, decoder = build_encoder_decoder(
        (16, 16), latent_dim=2, arch="conv", conditional=True, filters=[4], dense=8
    )
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        save_vae(tmp_path / name, TrainedVAE(encoder, decoder, True), {}, {}, {"conditional": True, "latent_dim": 2})
        time.sleep(1.1)  # the second save happens at a later second on the clock
    for name in MODEL_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == MODEL_FILES
    reloaded = load_vae(tmp_path / "a").encoder
    assert len(reloaded.get_weights()) == len(encoder.get_weights())


SAVE_IN_A_NEW_PROCESS = """
import sys
import keras
from speakdigits.formats.model import save_vae
from speakdigits.model import TrainedVAE, build_encoder_decoder
keras.utils.set_random_seed(0)
encoder, decoder = build_encoder_decoder((16, 16), latent_dim=2, arch="conv", conditional=True, filters=[4], dense=8)
save_vae(sys.argv[1], TrainedVAE(encoder, decoder, True), {}, {}, {"conditional": True, "latent_dim": 2})
"""


def test_identical_models_saved_by_two_processes_are_identical_files(tmp_path):
    """Keras numbers shared objects in config.json by their Python id(), which differs between processes;
    the saved files must not, or a fresh clone's dvc repro cannot reproduce the committed dvc.lock."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        subprocess.run(
            [sys.executable, "-c", SAVE_IN_A_NEW_PROCESS, str(tmp_path / name)],
            cwd=REPO,
            check=True,
            env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"},
            timeout=300,
        )
    for name in ("encoder.keras", "decoder.keras"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    reloaded = load_vae(tmp_path / "b").encoder  # the renumbered file still loads in safe mode
    assert len(reloaded.get_weights()) > 0
