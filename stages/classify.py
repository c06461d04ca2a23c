"""DVC stage ``classify``: digit, gender and age-bracket classifiers in data/classifiers,
test accuracies in metrics/classify.json, confusion matrices in metrics/classify/."""

import argparse
from pathlib import Path

from speakdigits.files import atomic_dir, write_json
from speakdigits.formats import classifiers, normalized
from speakdigits.params import load_params
from stages.common import Stage, entry_point

METRICS = Path("metrics/classify.json")
CONFUSION_DIR = Path("metrics/classify")  # one confusion_<task>.json per trained task
DVC_STAGE = Stage(
    deps=(normalized.DIR,),
    params=("seed", "classify"),
    outs=(classifiers.DIR,),
    metrics=(METRICS, CONFUSION_DIR),
    note="Depends on the normalised data and its own params only: experiments on the VAE "
    "(latent_dim, vae.*, train.*, generate.*) never retrain the judges.",
)


@entry_point(tensorflow=True)
def main(args: argparse.Namespace) -> None:
    from speakdigits.classifier import train_classifiers

    params = load_params()
    metrics, confusion = train_classifiers(normalized.DIR, classifiers.DIR, classify=params.classify, seed=params.seed)
    with atomic_dir(CONFUSION_DIR) as tmp:
        for task, records in confusion.items():
            write_json(tmp / f"confusion_{task}.json", records)
    write_json(METRICS, metrics)
    for task, result in metrics.items():
        if result["available"]:
            print(
                f"classify: {task}: test accuracy {result['test_accuracy']:.3f} "
                f"(majority baseline {result['majority_baseline']:.3f}, {result['test_clips']} clips "
                f"held out by {result['held_out']})"
            )
        else:
            print(f"classify: {task}: not available: {result['reason']}")


if __name__ == "__main__":
    main()
