"""DVC stage ``mfcc_judge``: the second digit judge, the speaker judge and the gender judge, trained on the raw
recordings' MFCCs, in data/mfcc_judge; their accuracies on held-out takes (the gender judge's: on held-out
speakers) in metrics/mfcc_judge.json."""

import argparse
from pathlib import Path

from speakdigits.files import write_json
from speakdigits.formats import mfcc_judge, raw
from speakdigits.params import load_params
from stages.common import Stage, entry_point

METRICS = Path("metrics/mfcc_judge.json")
DVC_STAGE = Stage(
    deps=(raw.DIR,),
    params=("seed", "classify", "split"),
    outs=(mfcc_judge.DIR,),
    metrics=(METRICS,),
    note="Reads the raw recordings, never the VAE's features: a judge with a front end of its own.",
)


@entry_point(tensorflow=True)
def main(args: argparse.Namespace) -> None:
    from speakdigits.mfcc_judge import train_judge

    params = load_params()
    metrics = train_judge(raw.DIR, mfcc_judge.DIR, classify=params.classify, split=params.split, seed=params.seed)
    write_json(METRICS, metrics)
    accuracy = metrics["test_accuracy"]
    print(
        f"mfcc_judge: test accuracy {'–' if accuracy is None else format(accuracy, '.3f')} on "
        f"{metrics['test_clips']} clips held out by {metrics['held_out']}"
    )
    speaker = metrics["speaker"]
    if speaker["available"]:
        print(
            f"mfcc_judge: the speaker judge: test accuracy {speaker['test_accuracy']:.3f} on {speaker['test_clips']} "
            f"clips of {speaker['speakers']} speakers (chance {1 / speaker['speakers']:.3f})"
        )
    else:
        print(f"mfcc_judge: no speaker judge: {speaker['reason']}")
    gender = metrics["gender"]
    if gender["available"]:
        print(
            f"mfcc_judge: the gender judge: test accuracy {gender['test_accuracy']:.3f} on {gender['test_clips']} "
            f"clips of speakers it never heard ({', '.join(gender['test_speakers'])})"
        )
    else:
        print(f"mfcc_judge: no gender judge: {gender['reason']}")


if __name__ == "__main__":
    main()
