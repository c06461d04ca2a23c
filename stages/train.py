"""DVC stage ``train``: the VAE in data/model, its curves and test metrics in metrics/train."""

import argparse
from pathlib import Path

from speakdigits.files import write_json
from speakdigits.formats import model, normalized
from speakdigits.params import load_params
from stages.common import Stage, entry_point

LIVE_DIR = Path("metrics/train")  # DVCLive's folder: the curves, written as it trains
HEADLINE = Path("metrics/vae.json")  # the VAE's headline number, flat, for dvc exp show
DVC_STAGE = Stage(
    deps=(normalized.DIR,),
    params=("seed", "latent_dim", "vae", "train"),
    outs=(model.DIR,),
    metrics=(LIVE_DIR, HEADLINE),
)


@entry_point(tensorflow=True)
def main(args: argparse.Namespace) -> None:
    from speakdigits.training import train_vae

    params = load_params()
    metrics = train_vae(
        normalized.DIR,
        model.DIR,
        LIVE_DIR,
        latent_dim=params.latent_dim,
        vae=params.vae,
        train=params.train,
        seed=params.seed,
    )
    write_json(HEADLINE, {"test_mse": float(f"{metrics['mse']:.4g}")} if "mse" in metrics else {})
    print("train: test " + ", ".join(f"{key} {value:.5g}" for key, value in metrics.items()))


if __name__ == "__main__":
    main()
