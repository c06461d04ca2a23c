"""Time this project's VAE training, epoch by epoch.

``python -m benchmarks.train_epochs NORMALIZED_DIR ARCH EPOCHS CLIPS``, run
in a folder whose params.yaml gives the network: the model, loss, optimiser
and input pipeline of :func:`speakdigits.training.train_vae` (without DVCLive,
early stopping or saving), on the first CLIPS clips of the training split. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from benchmarks.epochs import epoch_timer
from stages.common import import_tensorflow_quietly


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_epochs")
    parser.add_argument("normalized_dir", type=Path)
    parser.add_argument("arch", choices=("conv", "seed"))
    parser.add_argument("epochs", type=int)
    parser.add_argument("clips", type=int)
    args = parser.parse_args()
    import_tensorflow_quietly()
    import tensorflow as tf

    from speakdigits.formats.normalized import load_split
    from speakdigits.params import load_params
    from speakdigits.runtime import make_deterministic
    from speakdigits.training import batches, compiled_vae

    params = load_params()
    make_deterministic(params.seed)
    split = {key: value[: args.clips] for key, value in load_split(args.normalized_dir, "train").items()}
    model = compiled_vae(
        tuple(split["x"].shape[1:]),
        latent_dim=params.latent_dim,
        vae=dataclasses.replace(params.vae, arch=args.arch),
        train=params.train,
        seed=params.seed,
        steps_per_epoch=-(-len(split["x"]) // params.train.batch_size),
    )
    timer, seconds = epoch_timer()
    model.fit(
        batches(split, params.train.batch_size, shuffle_seed=params.seed),
        epochs=args.epochs,
        callbacks=[timer],
        verbose=0,
    )
    print(
        json.dumps(
            {
                "clips": len(split["x"]),
                "epoch_seconds": seconds,
                "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
            }
        )
    )


if __name__ == "__main__":
    main()
