"""The variational autoencoder over normalised mel spectrograms (Keras 3).

Two architectures:

``seed``
    The original student notebook's network, layer for layer (``SEED.md``):
    two 3x3 convolutions with average pooling, dense 800 and 60, and a
    mirrored decoder. It only fits 50 x 50 inputs.
``conv``
    This project's default: strided 3x3 convolutions (as many as
    ``vae.filters`` lists) with batch normalisation, a dense bottleneck, and a
    transposed-convolution decoder ending in a sigmoid, since the data lie in
    [0, 1]. Inputs of any size are zero-padded to a multiple of the total
    stride and the output is cropped back.

The VAE models the voice's pitch beside its spectral envelope: the image has
three channels, the normalised log-mel and the clip's pitch track (f0 and
voicing, :mod:`speakdigits.pitch`), each frame's value repeated down its
column, so that every convolution sees the pitch of the frames it looks at
(:func:`to_channels`). The decoder gives back all three; a frame's pitch is
the mean of its column (:func:`from_channels`), and the harmonic vocoder turns
envelope and pitch into a voice. The decoder's voicing is read off its own
image, frame by frame (``_voicing_head``): decoded as a channel of its own, it
came out voiced where the generated mel was silent and the other way round
(on FSDD, 45 % of generated speech frames voiced against 77 % of
reconstructed ones; read off the image, 51 %).

Conditional models also feed the digit (one-hot) to the encoder, next to the
flattened features, and to the decoder, next to ``z``; generation can then ask
for any digit.

The encoder and decoder are plain functional models made of built-in layers,
saved as two ``.keras`` files that load in Keras safe mode
(:mod:`speakdigits.formats.model`); the :class:`VAE` subclass only adds the
training step (sampling, loss, metric trackers), and :class:`TrainedVAE` is
what the later stages call: encode, decode, reconstruct.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from speakdigits.errors import PipelineError

N_DIGITS = 10
#: ``latents.json``'s key for an unconditional model's one Gaussian.
ALL_DIGITS = "all"
SEED_SHAPE = (50, 50)
#: The image's channels: the log-mel, then the pitch track's rows (f0, voicing).
CHANNELS = 3


def to_channels(mels: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """The VAE's input: ``mels`` (n x n_mels x frames) and ``pitch`` (n x 2 x frames), all in [0, 1],
    as n x n_mels x frames x 3 float32, each frame's pitch repeated down its column."""
    mels, pitch = np.asarray(mels, dtype=np.float32), np.asarray(pitch, dtype=np.float32)
    columns = np.broadcast_to(np.swapaxes(pitch, 1, 2)[:, None], (*mels.shape, pitch.shape[1]))
    return np.concatenate([mels[..., None], columns], axis=-1)


def from_channels(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undo :func:`to_channels` on the decoder's output: ``(mels, pitch)``, a frame's pitch the mean of its column."""
    images = np.asarray(images)
    return images[..., 0], np.swapaxes(images[..., 1:].mean(axis=1), 1, 2)


def kl_divergence(mu, log_var):
    """KL(q(z|x) || N(0, I)) in closed form, summed over latent dimensions.

    ``½ Σ (μ² + σ² − 1 − log σ²)``, one value per example.
    """
    return 0.5 * keras.ops.sum(keras.ops.square(mu) + keras.ops.exp(log_var) - 1.0 - log_var, axis=-1)


def reconstruction_mse(x, x_hat):
    """Mean squared error of the log-mel channel per example, over all mel bins and frames."""
    return keras.ops.mean(keras.ops.square(x[..., 0] - x_hat[..., 0]), axis=(1, 2))


def pitch_mse(x, x_hat):
    """Mean squared error of the pitch channels (f0, voicing) per example."""
    return keras.ops.mean(keras.ops.square(x[..., 1:] - x_hat[..., 1:]), axis=(1, 2, 3))


def _seed_encoder(image, label):
    h = layers.Conv2D(40, 3, activation="relu", name="conv1")(image)
    h = layers.AveragePooling2D(2, name="pool1")(h)
    h = layers.Conv2D(25, 3, activation="relu", name="conv2")(h)
    h = layers.AveragePooling2D(2, name="pool2")(h)
    h = layers.Flatten(name="flatten")(h)
    if label is not None:
        h = layers.Concatenate(name="with_digit")([h, label])
    h = layers.Dense(800, activation="relu", name="dense800")(h)
    h = layers.Dense(60, activation="relu", name="dense60")(h)
    return h


def _seed_decoder(z):
    h = layers.Dense(60, activation="relu", name="dense60")(z)
    h = layers.Dense(800, activation="relu", name="dense800")(h)
    h = layers.Dense(11 * 11 * 25, activation="relu", name="dense3025")(h)
    h = layers.Reshape((11, 11, 25), name="reshape")(h)
    h = layers.UpSampling2D(2, name="up1")(h)
    h = layers.Conv2DTranspose(40, 3, activation="relu", name="deconv1")(h)
    h = layers.UpSampling2D(2, name="up2")(h)
    return layers.Conv2DTranspose(CHANNELS - 1, 3, activation="relu", name="deconv2")(h)


def _padded(size: int, stride: int) -> int:
    return int(math.ceil(size / stride) * stride)


def _conv_encoder(image, label, shape, filters: list[int], dense: int):
    stride = 2 ** len(filters)
    pad_h, pad_w = _padded(shape[0], stride) - shape[0], _padded(shape[1], stride) - shape[1]
    h = layers.ZeroPadding2D(((0, pad_h), (0, pad_w)), name="pad")(image) if pad_h or pad_w else image
    for i, n in enumerate(filters):
        h = layers.Conv2D(n, 3, strides=2, padding="same", name=f"conv{i + 1}")(h)
        h = layers.BatchNormalization(name=f"bn{i + 1}")(h)
        h = layers.Activation("gelu", name=f"act{i + 1}")(h)
    h = layers.Flatten(name="flatten")(h)
    if label is not None:
        h = layers.Concatenate(name="with_digit")([h, label])
    return layers.Dense(dense, activation="gelu", name="dense")(h)


def _conv_decoder(z, shape, filters: list[int], dense: int):
    stride = 2 ** len(filters)
    ph, pw = _padded(shape[0], stride), _padded(shape[1], stride)
    h = layers.Dense(dense, activation="gelu", name="dense")(z)
    h = layers.Dense((ph // stride) * (pw // stride) * filters[-1], activation="gelu", name="expand")(h)
    h = layers.Reshape((ph // stride, pw // stride, filters[-1]), name="reshape")(h)
    for i, n in enumerate(list(reversed(filters))[1:] + [max(8, filters[0] // 2)]):
        h = layers.Conv2DTranspose(n, 3, strides=2, padding="same", name=f"deconv{i + 1}")(h)
        h = layers.BatchNormalization(name=f"bn{i + 1}")(h)
        h = layers.Activation("gelu", name=f"act{i + 1}")(h)
    h = layers.Conv2D(CHANNELS - 1, 3, padding="same", activation="sigmoid", name="out")(h)
    if ph != shape[0] or pw != shape[1]:
        h = layers.Cropping2D(((0, ph - shape[0]), (0, pw - shape[1])), name="crop")(h)
    return h


def _voicing_head(mel_and_f0, shape):
    """The decoder's last step: each frame's voicing from its column of the decoder's image (the log-mel,
    and the f0, which is the same down the column) and two columns on either side, spread down the
    column as the third channel."""
    n_mels, frames = shape
    columns = layers.Permute((2, 1, 3), name="frames_first")(mel_and_f0)
    columns = layers.Reshape((frames, n_mels * (CHANNELS - 1)), name="columns")(columns)
    h = layers.Conv1D(32, 5, padding="same", activation="gelu", name="voicing_conv")(columns)
    h = layers.Conv1D(1, 5, padding="same", activation="sigmoid", name="voicing")(h)
    h = layers.Reshape((1, frames, 1), name="voicing_row")(h)
    h = layers.UpSampling2D((n_mels, 1), name="voicing_columns")(h)
    return layers.Concatenate(name="mel_f0_voicing")([mel_and_f0, h])


def build_encoder_decoder(
    shape: tuple[int, int], *, latent_dim: int, arch: str, conditional: bool, filters: list[int], dense: int
) -> tuple[keras.Model, keras.Model]:
    """Build the encoder and decoder.

    Parameters
    ----------
    shape : (int, int)
        ``(n_mels, frames)`` of the input images.
    latent_dim : int
        Size of z.
    arch : {'conv', 'seed'}
        The architecture (see the module docstring).
    conditional : bool
        Whether both halves also take the digit as a one-hot vector.
    filters : list of int
        Channels of each strided convolution (``conv`` only).
    dense : int
        Width of the dense layer beside the bottleneck (``conv`` only).

    Returns
    -------
    encoder : keras.Model
        ``image`` (``shape`` x :data:`CHANNELS`, :func:`to_channels`; and ``digit``) to ``[mu, log_var]``.
    decoder : keras.Model
        ``z`` (and ``digit``) to an image of ``shape`` x :data:`CHANNELS`.
    """
    if arch == "seed" and tuple(shape) != SEED_SHAPE:
        raise PipelineError(
            f"vae.arch = 'seed' is the original 50 x 50 network, but mel.n_mels x mel.frames is "
            f"{shape[0]} x {shape[1]}; set mel.n_mels=50 and mel.frames=50, or vae.arch='conv'"
        )
    image = keras.Input((*shape, CHANNELS), name="image")
    enc_label = keras.Input((N_DIGITS,), name="digit") if conditional else None
    if arch == "seed":
        h = _seed_encoder(image, enc_label)
    else:
        h = _conv_encoder(image, enc_label, shape, filters, dense)
    mu = layers.Dense(latent_dim, name="mu")(h)
    log_var = layers.Dense(latent_dim, name="log_var")(h)
    encoder = keras.Model([image, enc_label] if conditional else image, [mu, log_var], name="encoder")

    z = keras.Input((latent_dim,), name="z")
    dec_label = keras.Input((N_DIGITS,), name="digit") if conditional else None
    h = layers.Concatenate(name="z_with_digit")([z, dec_label]) if conditional else z
    out = _seed_decoder(h) if arch == "seed" else _conv_decoder(h, shape, filters, dense)
    decoder = keras.Model([z, dec_label] if conditional else z, _voicing_head(out, shape), name="decoder")
    return encoder, decoder


def build_adversary(latent_dim: int) -> keras.Model:
    """A small network that tries to tell the digit from a clip's posterior mean (training only)."""
    mu = keras.Input((latent_dim,), name="mu")
    h = layers.Dense(64, activation="relu", name="adversary_hidden")(mu)
    return keras.Model(mu, layers.Dense(N_DIGITS, name="adversary_logits")(h), name="digit_adversary")


class VAE(keras.Model):
    """Training wrapper: samples z, computes the loss, tracks its parts.

    Loss = ``reconstruction_weight`` x (MSE of the log-mel + ``pitch_weight`` x
    MSE of the pitch channels) + KL, averaged over the batch. Batches are
    ``(images, one_hot_digits)`` with :func:`to_channels` images; unconditional
    models ignore the digits.

    With ``adversary_weight`` > 0 (conditional models), a :func:`build_adversary`
    learns to read the digit from μ (its cross-entropy, moving only its own
    weights), and the encoder learns to leave it guessing: ``adversary_weight``
    x the cross-entropy of the adversary's guess against every digit alike is
    added to the encoder's loss. Pushed to make the adversary *wrong* instead
    (a gradient reversal), the encoder kept the digit in μ and moved it about:
    the adversary, chasing, was confidently wrong (cross-entropy 6 against
    chance's ln 10 = 2.3). A conditional decoder is told the digit anyway;
    what z keeps of it only gets in the way of saying a voice as another digit
    (:func:`saying`).
    """

    def __init__(
        self,
        encoder: keras.Model,
        decoder: keras.Model,
        *,
        conditional: bool,
        reconstruction_weight: float,
        pitch_weight: float,
        adversary_weight: float = 0.0,
        seed: int,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.conditional = conditional
        self.reconstruction_weight = reconstruction_weight
        self.pitch_weight = pitch_weight
        self.adversary_weight = adversary_weight
        # Built only when asked for, after both halves: a model without one draws the same initial weights as before.
        self.adversary = build_adversary(int(encoder.outputs[0].shape[-1])) if adversary_weight > 0 else None
        self.noise = keras.random.SeedGenerator(seed)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.pitch_tracker = keras.metrics.Mean(name="pitch")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.adversary_tracker = keras.metrics.Mean(name="digit_adversary")
        # Both halves are built functional models, so the wrapper has all its weights.
        self.built = True

    def trained(self) -> TrainedVAE:
        """The two halves as the later stages use them."""
        return TrainedVAE(self.encoder, self.decoder, self.conditional)

    @property
    def metrics(self):
        trackers = [self.reconstruction_tracker, self.pitch_tracker, self.kl_tracker]
        return trackers + ([self.adversary_tracker] if self.adversary is not None else [])

    def _inputs(self, x, y):
        return [x, y] if self.conditional else x

    def call(self, data, training=False):
        x, y = data
        mu, _ = self.encoder(self._inputs(x, y), training=training)
        return self.decoder(self._inputs(mu, y), training=training)

    def _loss_parts(self, x, y, training: bool):
        """The VAE's loss to descend and its parts: MSE, pitch MSE, KL and the adversary's cross-entropy
        (0 without one), which is also the adversary's own loss to descend."""
        mu, log_var = self.encoder(self._inputs(x, y), training=training)
        eps = keras.random.normal(keras.ops.shape(mu), seed=self.noise)
        z = mu + eps * keras.ops.exp(0.5 * log_var)
        x_hat = self.decoder(self._inputs(z, y), training=training)
        mse = keras.ops.mean(reconstruction_mse(x, x_hat))
        pitch = keras.ops.mean(pitch_mse(x, x_hat))
        kl = keras.ops.mean(kl_divergence(mu, log_var))
        loss = self.reconstruction_weight * (mse + self.pitch_weight * pitch) + kl
        adversary = keras.ops.zeros(())
        if self.adversary is not None:
            # The adversary reads a μ it cannot move; the encoder sees its guess, with its weights as they are.
            read = self.adversary(keras.ops.stop_gradient(mu), training=training)
            adversary = keras.ops.mean(keras.losses.categorical_crossentropy(y, read, from_logits=True))
            guess = keras.ops.log_softmax(self.adversary(mu, training=training))
            loss = loss - self.adversary_weight * keras.ops.mean(guess)  # cross-entropy against 1/10 each
        return loss, (mse, pitch, kl, adversary)

    def _track(self, mse, pitch, kl, adversary):
        # The reported loss is made from its parts' running means, not tracked as a mean of its own: tracked,
        # the first epoch's loss came out one float32 step apart in about one training in five on a busy
        # machine (the weights and every part the same), and DVC saw another metrics/train. By linearity,
        # it is the same mean. It is the VAE's objective: the adversary's cross-entropy is reported apart.
        self.reconstruction_tracker.update_state(mse)
        self.pitch_tracker.update_state(pitch)
        self.kl_tracker.update_state(kl)
        if self.adversary is not None:
            self.adversary_tracker.update_state(adversary)
        parts = {m.name: m.result() for m in self.metrics}
        total = (
            self.reconstruction_weight * (parts["reconstruction"] + self.pitch_weight * parts["pitch"]) + parts["kl"]
        )
        return {"loss": total, **parts}

    def train_step(self, data):
        x, y = data
        with tf.GradientTape(persistent=self.adversary is not None) as tape:
            loss, parts = self._loss_parts(x, y, training=True)
        if self.adversary is None:
            weights = self.trainable_weights
            grads = tape.gradient(loss, weights)
        else:
            own = {id(w) for w in self.adversary.trainable_weights}
            vae_weights = [w for w in self.trainable_weights if id(w) not in own]
            weights = vae_weights + self.adversary.trainable_weights
            adversary_loss = parts[-1]  # its cross-entropy, the last of the parts
            grads = tape.gradient(loss, vae_weights) + tape.gradient(adversary_loss, self.adversary.trainable_weights)
            del tape
        self.optimizer.apply_gradients(zip(grads, weights))
        return self._track(*parts)

    def test_step(self, data):
        x, y = data
        _, parts = self._loss_parts(x, y, training=False)
        return self._track(*parts)


def one_hot(digits: np.ndarray) -> np.ndarray:
    """Digits 0-9 as float32 one-hot rows."""
    return np.eye(N_DIGITS, dtype=np.float32)[np.asarray(digits, dtype=np.int64)]


@dataclass(frozen=True)
class TrainedVAE:
    """A trained VAE, as training leaves it and the later stages load it
    (:func:`speakdigits.formats.model.load_vae`): its two halves and whether they also take the digit.

    Mels are ``n x n_mels x frames`` and pitch tracks ``n x 2 x frames``, both normalised to [0, 1];
    digits one int per clip (ignored by an unconditional model, which may be given None).
    """

    encoder: keras.Model
    decoder: keras.Model
    conditional: bool

    @property
    def latent_dim(self) -> int:
        """Size of z: the width of the decoder's first input."""
        return int(self.decoder.inputs[0].shape[-1])

    def _inputs(self, first: np.ndarray, digits: np.ndarray | None):
        return [first, one_hot(digits)] if self.conditional else first

    def encode(
        self, mels: np.ndarray, pitch: np.ndarray, digits: np.ndarray | None, *, batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, log_var)`` of each clip's posterior q(z|x)."""
        x = to_channels(mels, pitch)
        mu, log_var = self.encoder.predict(self._inputs(x, digits), batch_size=batch_size, verbose=0)
        return mu, log_var

    def decode(
        self, z: np.ndarray, digits: np.ndarray | None, *, batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """The decoder's ``(mels, pitch)`` of ``z`` (in [0, 1] for ``conv``; ``seed``'s ReLU output is not bounded)."""
        z = np.asarray(z, dtype=np.float32)
        return from_channels(self.decoder.predict(self._inputs(z, digits), batch_size=batch_size, verbose=0))

    def reconstruct(
        self, mels: np.ndarray, pitch: np.ndarray, digits: np.ndarray | None, *, batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """The decoder's ``(mels, pitch)`` of each clip's posterior mean (z = μ), clipped to [0, 1] as
        generation clips."""
        mu, _ = self.encode(mels, pitch, digits, batch_size=batch_size)
        rebuilt_mels, rebuilt_pitch = self.decode(mu, digits, batch_size=batch_size)
        return np.clip(rebuilt_mels, 0.0, 1.0), np.clip(rebuilt_pitch, 0.0, 1.0)


def fit_latent_gaussians(mu: np.ndarray, log_var: np.ndarray, digits: np.ndarray | None) -> dict:
    """Where the training clips lie in latent space: one Gaussian per digit (or per any other label:
    the train stage also fits one per speaker, the voices of ``generate --speaker``).

    The encoder's posteriors of the training clips of a digit, q(z|x) =
    N(μ, σ²), together form that digit's *aggregate posterior*: the region the
    decoder learned to turn into that digit. A VAE's prior N(0, I) covers it
    only roughly (with a strong reconstruction term each digit's clips sit
    away from the origin, and the prior's samples land where the decoder never
    learned); sampling from a Gaussian with the aggregate posterior's mean and
    covariance, ``mean(μ)`` and ``cov(μ) + mean(σ²)`` on the diagonal, draws
    new points from where the data are.

    Parameters
    ----------
    mu, log_var : numpy.ndarray
        clips x latent_dim: the encoder's outputs on the training clips.
    digits : numpy.ndarray or None
        The clips' digits (conditional model), or None: one Gaussian for all;
        or their speakers.

    Returns
    -------
    dict
        ``{group: {"clips": n, "mean": [...], "cov": [[...], ...]}}`` with
        group the digit (or speaker) as a string, or ``'all'``.
    """
    mu, var = np.asarray(mu, dtype=np.float64), np.exp(np.asarray(log_var, dtype=np.float64))
    groups = (
        {ALL_DIGITS: np.arange(len(mu))}
        if digits is None
        else {str(d): np.flatnonzero(np.asarray(digits) == d) for d in sorted(set(np.asarray(digits).tolist()))}
    )
    out = {}
    for group, rows in groups.items():
        spread = np.cov(mu[rows], rowvar=False).reshape(mu.shape[1], mu.shape[1]) if len(rows) > 1 else 0.0
        cov = spread + np.diag(var[rows].mean(axis=0))
        out[group] = {"clips": int(len(rows)), "mean": mu[rows].mean(axis=0).tolist(), "cov": cov.tolist()}
    return out


def sample_latents(
    latents: dict | None, digits: list[int | None], *, latent_dim: int, temperature: float, rng: np.random.Generator
) -> np.ndarray:
    """Draw one z per requested clip, from the prior or from the fitted Gaussians.

    Parameters
    ----------
    latents : dict or None
        :func:`fit_latent_gaussians`' output (``generate.sampling: fitted``),
        or None for the prior N(0, I) (``prior``).
    digits : list of int or None
        The digit of each clip (None: unconditional).
    latent_dim : int
        Size of z.
    temperature : float
        Scales each Gaussian's spread around its mean (0: every clip of a digit
        is that digit's mean).
    rng : numpy.random.Generator
        The source of randomness: the standard normal draws are the same
        whichever way they are then shaped, so ``prior`` and ``fitted`` differ
        only by the map.
    """
    eps = rng.standard_normal((len(digits), latent_dim))
    if latents is None:
        return eps * temperature
    z = np.empty_like(eps)
    for group in sorted({ALL_DIGITS if d is None else str(d) for d in digits}):
        if group not in latents:
            raise PipelineError(
                f"the fitted latents hold no training clip of digit {group}, so there is no region of "
                "latent space to draw it from; use generate.sampling=prior"
            )
        rows = [i for i, d in enumerate(digits) if (ALL_DIGITS if d is None else str(d)) == group]
        z[rows] = around(latents[group], eps[rows], temperature=temperature)
    return z


def around(gaussian: dict, eps: np.ndarray, *, temperature: float) -> np.ndarray:
    """Standard normal draws ``eps`` (n x latent_dim) mapped into one of :func:`fit_latent_gaussians`'
    Gaussians (``mean``, ``cov``), their spread scaled by ``temperature``."""
    cov = np.asarray(gaussian["cov"], dtype=np.float64)
    # A tiny ridge keeps the factorisation defined for a degenerate (e.g. single-clip) covariance.
    factor = np.linalg.cholesky(cov + 1e-9 * np.eye(len(cov)))
    return np.asarray(gaussian["mean"]) + temperature * eps @ factor.T


def digit_centres(latents: dict, digits) -> np.ndarray:
    """The centre in latent space of each given digit's training clips (:func:`fit_latent_gaussians`' means),
    a row each.

    Raises
    ------
    PipelineError
        For a digit no training clip said (no centre to say it from).
    """
    rows = []
    for digit in np.asarray(digits).tolist():
        if str(digit) not in latents:
            raise PipelineError(f"the training set holds no clip of digit {digit}, so no voice can be said as it")
        rows.append(latents[str(digit)]["mean"])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)


def voice_of(mu: np.ndarray, digits, latents: dict) -> np.ndarray:
    """Clips' voices: their latent vectors (clips x latent_dim) less the centre of the digit each says.

    A conditional VAE is told the digit, yet its latent vector still partly holds it: each digit's
    training clips lie around a centre of their own. What is left, the offset from that centre, is
    the voice (:mod:`speakdigits.voices`)."""
    return np.asarray(mu, dtype=np.float64) - digit_centres(latents, digits)


def saying(voices: np.ndarray, digits, latents: dict) -> np.ndarray:
    """The latent vectors that say ``digits`` in ``voices`` (one row each): :func:`voice_of` undone."""
    return np.asarray(voices, dtype=np.float64) + digit_centres(latents, digits)
