"""The original notebooks' approach, as ../shared/SEED.md describes it: the baseline.

Run as ``python -m benchmarks.original extract FOLDER OUT.npy`` (every wav
under FOLDER, one after another in one process, all signals held in memory,
as the notebook did) or ``python -m benchmarks.original train FEATURES.npy
EPOCHS CLIPS`` (the notebook's VAE, its loss and its batch size on min/max-scaled
50 x 50 images, the first 75 % of them, at most CLIPS). Each prints one JSON line with what
it measured itself. Written from the description, not copied: the network,
the loss and the mel settings are the ones SEED.md lists.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.epochs import epoch_timer

N_MELS = 50
SAMPLE_RATE = 22050  # librosa.load's default
HOP_LENGTH = int((SAMPLE_RATE + 1) / 50) + 1  # 442: 50 frames in 1 s
BATCH_SIZE = 64
LATENT_DIM = 20


def extract(folder: Path) -> np.ndarray:
    """The notebook's loop: load every clip at 22,050 Hz, pad or cut to 1 s, 50 x 50 log-mel."""
    import librosa

    files = sorted(Path(folder).rglob("*.wav"))
    signals = [librosa.load(path)[0] for path in files]  # all held in memory at once, as the notebook did
    mels = []
    for signal in signals:
        signal = librosa.util.fix_length(signal, size=SAMPLE_RATE)
        power = librosa.feature.melspectrogram(y=signal, sr=SAMPLE_RATE, n_mels=N_MELS, hop_length=HOP_LENGTH)
        mels.append(librosa.power_to_db(power))
    return np.array(mels, dtype=np.float32)


def build_vae():
    """The notebook's network (SEED.md, item 5) and its loss, 500 x MSE + mean KL."""
    import keras
    import tensorflow as tf
    from keras import layers

    image = keras.Input((50, 50, 1))
    h = layers.Conv2D(40, 3, activation="relu")(image)
    h = layers.AveragePooling2D(2)(h)
    h = layers.Conv2D(25, 3, activation="relu")(h)
    h = layers.AveragePooling2D(2)(h)
    h = layers.Flatten()(h)
    h = layers.Dense(800, activation="relu")(h)
    h = layers.Dense(60, activation="relu")(h)
    encoder = keras.Model(image, [layers.Dense(LATENT_DIM)(h), layers.Dense(LATENT_DIM)(h)])

    z = keras.Input((LATENT_DIM,))
    h = layers.Dense(60, activation="relu")(z)
    h = layers.Dense(800, activation="relu")(h)
    h = layers.Dense(11 * 11 * 25, activation="relu")(h)
    h = layers.Reshape((11, 11, 25))(h)
    h = layers.UpSampling2D(2)(h)
    h = layers.Conv2DTranspose(40, 3)(h)
    h = layers.UpSampling2D(2)(h)
    h = layers.Conv2DTranspose(1, 3, activation="relu")(h)
    decoder = keras.Model(z, h)

    class VAE(keras.Model):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = encoder, decoder

        def train_step(self, x):
            with tf.GradientTape() as tape:
                mu, log_var = self.encoder(x)
                z = mu + tf.random.normal(tf.shape(mu)) * tf.exp(0.5 * log_var)
                x_hat = self.decoder(z)
                mse = tf.reduce_mean(tf.square(x - x_hat))
                kl = tf.reduce_mean(0.5 * (tf.square(mu) + tf.exp(log_var) - 1.0 - log_var))
                loss = 500.0 * mse + kl
            grads = tape.gradient(loss, self.trainable_weights)
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
            return {"loss": loss}

    model = VAE()
    model.compile(optimizer=keras.optimizers.Adam())
    return model


def train(features: Path, epochs: int, clips: int) -> dict:
    """Min/max per mel coefficient over all clips (the original's leak included), the first 75 % to
    train, of which the first ``clips``."""
    mels = np.load(features)
    low, high = mels.min(axis=(0, 2), keepdims=True), mels.max(axis=(0, 2), keepdims=True)
    scaled = ((mels - low) / np.maximum(high - low, 1e-9))[..., None].astype(np.float32)
    x_train = scaled[: int(0.75 * len(scaled))][:clips]
    model = build_vae()
    timer, seconds = epoch_timer()
    model.fit(x_train, batch_size=BATCH_SIZE, epochs=epochs, callbacks=[timer], verbose=0)
    return {"clips": len(x_train), "epoch_seconds": seconds}


if __name__ == "__main__":
    command, path = sys.argv[1], Path(sys.argv[2])
    if command == "extract":
        mels = extract(path)
        np.save(sys.argv[3], mels)
        print(json.dumps({"clips": len(mels)}))
    elif command == "train":
        print(json.dumps(train(path, int(sys.argv[3]), int(sys.argv[4]))))
    else:
        raise SystemExit(f"unknown command {command!r}; expected extract or train")
