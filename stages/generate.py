"""DVC stage ``generate``: new voices from the trained VAE into data/generated.

Also usable on its own, after training, to ask the model for clips:

    python -m stages.generate --digit 7 --count 5 --out samples/

--out adds the clips to a new or existing folder and never overwrites or
removes anything there: a folder that already holds a file of the same name
is refused, so is a repository's root, the home directory and .git.
"""

import argparse
from pathlib import Path

from speakdigits.errors import PipelineError
from speakdigits.files import check_user_folder
from speakdigits.formats import check_geometry, generated, model, normalized
from speakdigits.params import load_params
from stages.common import Stage, entry_point

#: Most clips one call makes (as generate.n_samples allows): memory stays bounded, about 2 GB.
MOST_CLIPS = 10_000

DVC_STAGE = Stage(deps=(model.DIR, normalized.DIR), params=("seed", "generate"), outs=(generated.DIR,))


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--digit",
        type=int,
        choices=range(10),
        metavar="0-9",
        help="digit to say (conditional model); default: the pipeline's set of every digit",
    )
    parser.add_argument("--count", type=int, default=None, help="how many clips (default: generate.per_digit)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"folder to add the clips to; nothing there is overwritten (default: replace {generated.DIR})",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed, 0 to 2**31 - 1 (default: params.yaml's seed)")


@entry_point(tensorflow=True, arguments=arguments)
def main(args: argparse.Namespace) -> None:
    from speakdigits.generation import generate, requested_digits

    params = load_params()
    gen = params.generate
    conditional = model.read_model_info(model.DIR)["conditional"]
    geometry = model.read_geometry(model.DIR)
    check_geometry(geometry, params.mel, model.DIR)
    if args.count is not None and args.count < 1:
        raise PipelineError(f"--count {args.count}: expected a positive number of clips")
    if args.seed is not None and not 0 <= args.seed < 2**31:
        raise PipelineError(f"--seed {args.seed}: expected a whole number from 0 to 2**31 - 1")
    if args.digit is not None:
        if not conditional:
            raise PipelineError(
                "--digit: the trained model is unconditional (vae.conditional: false); "
                "it cannot be asked for a digit. Leave out --digit, or retrain with vae.conditional=true"
            )
        digits = [args.digit] * (args.count or gen.per_digit)
    elif args.count is not None:
        digits = requested_digits(conditional=conditional, per_digit=args.count, n_samples=args.count)
    else:
        digits = requested_digits(conditional=conditional, per_digit=gen.per_digit, n_samples=gen.n_samples)
    if len(digits) > MOST_CLIPS:
        raise PipelineError(
            f"--count {args.count}: asks for {len(digits)} clips; at most {MOST_CLIPS} in one call"
            + ("" if args.digit is not None or not conditional else " (without --digit, --count clips of each digit)")
        )
    if args.out is not None:
        check_user_folder(args.out, generated.output_names(digits))  # before any work
    out = args.out or generated.DIR
    records = generate(
        model.DIR,
        normalized.DIR,
        out,
        mel=geometry,
        generate=gen,
        digits=digits,
        seed=params.seed if args.seed is None else args.seed,
        replace=args.out is None,
        progress=report_progress,
    )
    print(f"generate: {len(records)} clips and a mel grid in {out.resolve()}")


def report_progress(done: int, total: int) -> None:
    """A line at every tenth of the clips (from 50 clips), so that a long run is seen to move."""
    step = -(-total // 10)
    if total >= 50 and (done % step == 0 or done == total):
        print(f"generate: {done} of {total} clips", flush=True)


if __name__ == "__main__":
    main()
