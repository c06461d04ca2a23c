"""DVC stage ``evaluate``: the generated voices judged by the digit classifier, in
metrics/evaluate.json, and the listening page data/listen/index.html."""

import argparse
import math
from pathlib import Path

from speakdigits import listening
from speakdigits.files import write_json
from speakdigits.formats import classifiers, generated, model, normalized, raw
from speakdigits.params import load_params
from stages.common import Stage, entry_point

METRICS = Path("metrics/evaluate.json")
SUMMARY = Path("metrics/summary.json")
DVC_STAGE = Stage(
    deps=(generated.DIR, classifiers.DIR, model.DIR, normalized.DIR, raw.DIR),
    params=("seed", "mel", "generate", "evaluate"),
    outs=(listening.DIR,),
    metrics=(METRICS, SUMMARY),
)


def summary(metrics: dict) -> dict[str, float]:
    """The headline numbers, flat and short-named, for ``dvc exp show`` (see README, "Metrics");
    the train stage writes the VAE's own (metrics/vae.json).

    A number that cannot be had (no clip judged, no held-out judge, no novelty
    yardstick) is left out rather than written as NaN.
    """
    values = {
        "accuracy": metrics["generated"].get("accuracy"),
        "inception": metrics["generated"].get("inception_score"),
        "frechet": metrics["generated"].get("frechet_distance"),
        "judge": metrics["judge"].get("accuracy"),
        "novelty": metrics["novelty"].get("ratio"),
    }
    return {key: float(f"{value:.4g}") for key, value in values.items() if value is not None and math.isfinite(value)}


@entry_point(tensorflow=True)
def main(args: argparse.Namespace) -> None:
    from speakdigits.evaluation import evaluate

    params = load_params()
    metrics = evaluate(
        generated_dir=generated.DIR,
        classifier_dir=classifiers.DIR,
        normalized_dir=normalized.DIR,
        model_dir=model.DIR,
        raw_dir=raw.DIR,
        listen_dir=listening.DIR,
        mel=params.mel,
        generate=params.generate,
        evaluate=params.evaluate,
        seed=params.seed,
    )
    write_json(METRICS, metrics)
    write_json(SUMMARY, summary(metrics))
    gen, real, ceiling, judge = metrics["generated"], metrics["real"], metrics["vocoder_ceiling"], metrics["judge"]
    print(
        f"evaluate: the judge: accuracy {judge['accuracy']:.3f} on real takes it never heard "
        f"({'trusted' if judge['reliable'] else 'below ' + format(judge['trusted_accuracy'], '.3f')})"
    )
    if not judge["reliable"]:
        print(f"evaluate: warning: {judge['warning']}")
    parts = [f"accuracy {gen['accuracy']:.3f}"] if "accuracy" in gen else []
    parts += [
        f"{key.replace('_', ' ')} {gen[key]:.3f}"
        for key in ("inception_score", "mean_confidence", "frechet_distance")
        if key in gen
    ]
    print(f"evaluate: generated clips: {', '.join(parts) or 'none could be judged'}")
    novel = metrics["novelty"]
    if "ratio" in novel:
        print(
            f"evaluate: novelty: generated clips lie {novel['ratio']:.2f} times as far from the training set as "
            f"the VAE's reconstructions of unheard speakers; copies {novel['copies']:.3f}"
        )
    print(
        f"evaluate: judge accuracy on the test speakers' unheard takes {real.get('accuracy', float('nan')):.3f}, "
        f"vocoder ceiling {ceiling.get('accuracy', float('nan')):.3f} ({ceiling['clips']} clips)"
    )
    print(f"evaluate: listening page {(listening.DIR / listening.INDEX_HTML).resolve()}")


if __name__ == "__main__":
    main()
