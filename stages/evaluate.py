"""DVC stage ``evaluate``: the generated voices heard by two digit judges and measured for how they
sound, in metrics/evaluate.json (headline numbers in metrics/summary.json), and the listening page
data/listen/index.html."""

import argparse
import math
from pathlib import Path

from speakdigits import listening
from speakdigits.files import write_json
from speakdigits.formats import check_geometry, classifiers, generated, mfcc_judge, model, normalized, raw
from speakdigits.params import load_params
from stages.common import Stage, entry_point

METRICS = Path("metrics/evaluate.json")
SUMMARY = Path("metrics/summary.json")
DVC_STAGE = Stage(
    deps=(generated.DIR, classifiers.DIR, mfcc_judge.DIR, model.DIR, normalized.DIR, raw.DIR),
    params=("seed", "generate", "evaluate"),
    outs=(listening.DIR,),
    metrics=(METRICS, SUMMARY),
)


def summary(metrics: dict) -> dict[str, float]:
    """The headline numbers, flat and short-named, for ``dvc exp show`` (see README, "Metrics");
    the train stage writes the VAE's own (metrics/vae.json).

    A number that cannot be had (no clip judged, no held-out judge, no novelty
    yardstick) is left out rather than written as NaN.
    """
    gen = metrics["generated"]
    values = {
        "accuracy": gen.get("accuracy"),
        "judge": metrics["judge"].get("accuracy"),
        "judge_mfcc": metrics["judges"]["mfcc"].get("accuracy"),
        "voiced": gen["sound"].get("voiced"),
        "naturalness": gen["sound"].get("ovrl"),
        "pesq": metrics["vocoder_ceiling"]["sound"].get("pesq"),
        "novelty": metrics["novelty"].get("ratio"),
        "converted": metrics["voices"].get("converted"),
        "voice_kept": metrics["voices"].get("voice_kept"),
        "voice_kept_takes": (metrics["voices"].get("take_voices") or {}).get("kept"),
    }
    return {key: float(f"{value:.4g}") for key, value in values.items() if value is not None and math.isfinite(value)}


@entry_point(tensorflow=True)
def main(args: argparse.Namespace) -> None:
    from speakdigits.evaluation import evaluate_model

    params = load_params()
    check_geometry(model.read_geometry(model.DIR), params.mel, model.DIR)
    metrics = evaluate_model(
        generated_dir=generated.DIR,
        classifier_dir=classifiers.DIR,
        mfcc_judge_dir=mfcc_judge.DIR,
        normalized_dir=normalized.DIR,
        model_dir=model.DIR,
        raw_dir=raw.DIR,
        listen_dir=listening.DIR,
        generate=params.generate,
        evaluate=params.evaluate,
        seed=params.seed,
    )
    write_json(METRICS, metrics)
    write_json(SUMMARY, summary(metrics))
    print_report(metrics)
    print(f"evaluate: listening page {(listening.DIR / listening.INDEX_HTML).resolve()}")


def print_report(metrics: dict) -> None:
    """The metrics in a few lines: the judges, the generated clips, the references, how each set sounds, the voices."""
    gen, real, ceiling, judge = metrics["generated"], metrics["real"], metrics["vocoder_ceiling"], metrics["judge"]
    print(
        f"evaluate: the digit judge: accuracy {judge['accuracy']:.3f} on real takes it never heard "
        f"({'trusted' if judge['reliable'] else 'below ' + format(judge['trusted_accuracy'], '.3f')}); "
        f"the MFCC judge: {metrics['judges']['mfcc']['accuracy']:.3f}"
    )
    for warning in listening.warnings(metrics):
        print(f"evaluate: warning: {warning}")
    parts = (
        [
            f"accuracy {gen['accuracy']:.3f} (digit judge {gen['accuracy_mel']:.3f}, "
            f"MFCC judge {gen['accuracy_mfcc']:.3f})"
        ]
        if "accuracy" in gen
        else []
    )
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
    for label, key in (("generated", "generated"), ("real", "real"), ("vocoder", "vocoder_ceiling"), ("vae", "vae")):
        sound = metrics[key]["sound"]
        if sound.get("clips"):
            pesq = f", PESQ-WB {sound['pesq']:.2f}" if "pesq" in sound else ""
            print(
                f"evaluate: sound of {label} clips: voiced {sound['voiced']:.3f}, DNSMOS SIG {sound['sig']:.2f} "
                f"BAK {sound['bak']:.2f} OVRL {sound['ovrl']:.2f} P.808 {sound['p808']:.2f}{pesq}"
            )
    voices = metrics["voices"]
    if "converted" in voices:
        kept = (
            f"; heard as their own speaker {voices['voice_kept']:.3f} "
            f"(the source clips {voices['voice_kept_real']:.3f}, their voices said as their own digits "
            f"{voices['voice_kept_own_digit']:.3f}, speaker judge {voices['speaker_judge']['accuracy']:.3f} "
            "on unheard takes, chance "
            f"{voices['speaker_judge']['chance']:.3f})"
            if "voice_kept" in voices
            else ""
        )
        print(
            f"evaluate: voices: {voices['converted_clips']} clips converted to another digit, heard as it "
            f"{voices['converted']:.3f}{kept}"
        )
        if "gender_kept" in voices:
            mel = voices.get("gender_mel")
            print(
                f"evaluate: voices: converted clips heard as their source's gender {voices['gender_kept']:.3f} (the "
                f"MFCC gender judge, {voices['gender_judge']['accuracy']:.3f} on unheard speakers, "
                f"{voices['gender_kept_vocoder']:.3f} of the source clips vocoded)"
                + (f"; by the log-mel gender judge {mel['gender_kept']:.3f}" if mel else "")
            )
        for key, whose in (
            ("known_voices", "training speakers' voices"),
            ("take_voices", "voices of test speakers, each from several takes,"),
        ):
            heard = voices.get(key)
            if heard:
                count = heard["speakers"] if key == "known_voices" else heard["voices"]
                print(
                    f"evaluate: voices: {count} {whose} saying every digit: heard as it "
                    f"{heard['said']:.3f}, as the speaker {heard['kept']:.3f}"
                    + (
                        f" (the same digits with no voice: {heard['kept_without_voice']:.3f})"
                        if heard.get("kept_without_voice") is not None
                        else ""
                    )
                )


if __name__ == "__main__":
    main()
