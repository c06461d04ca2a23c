"""DVC stage ``generate``: new voices from the trained VAE into data/generated.

Also usable on its own, after training, to ask the model for clips:

    python -m stages.generate --digit 7 --count 5 --out samples/

or for a voice of your choice (a conditional model; without --digit, every digit):

    python -m stages.generate --digit 7 --like path/to/3_george_5.wav --out samples/
    python -m stages.generate --digit 7 --like 3_ann_0.wav 5_ann_2.wav 8_ann_1.wav --out samples/
    python -m stages.generate --speaker george --out samples/
    python -m stages.generate --digit 7 --between a.wav b.wav --steps 5 --out samples/

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
    voice = parser.add_argument_group("the voice (default: a new one for every clip)")
    chosen = voice.add_mutually_exclusive_group()
    chosen.add_argument(
        "--like",
        type=Path,
        nargs="+",
        metavar="WAV",
        help="in the voice of this recording, or of these recordings of one speaker, their voices averaged "
        "(--count N > 1: N takes around it, with generate.temperature)",
    )
    chosen.add_argument(
        "--speaker", metavar="NAME", help="in the voice of a training speaker (data/model/speakers.json lists them)"
    )
    chosen.add_argument(
        "--between", type=Path, nargs=2, metavar=("A", "B"), help="voices moving from A's to B's, in --steps clips"
    )
    voice.add_argument(
        "--like-digit",
        type=int,
        choices=range(10),
        metavar="0-9",
        help="the digit the --like or --between recordings say (default: from their names, as 3_george_5.wav)",
    )
    voice.add_argument("--steps", type=int, default=5, help="clips from A to B with --between, both ends included")


@entry_point(tensorflow=True, arguments=arguments)
def main(args: argparse.Namespace) -> None:
    from speakdigits.generation import generate_clips

    params = load_params()
    gen = params.generate
    conditional = model.read_model_info(model.DIR)["conditional"]
    geometry = model.read_geometry(model.DIR)
    check_geometry(geometry, params.mel, model.DIR)
    digits, takes = asked_digits(args, per_digit=gen.per_digit, n_samples=gen.n_samples, conditional=conditional)
    voice_asked = args.like is not None or args.speaker is not None or args.between is not None
    if args.out is not None:
        check_user_folder(args.out, generated.output_names(digits))  # before any work
    out = args.out or generated.DIR
    seed = params.seed if args.seed is None else args.seed
    z, voices, detail = None, None, None
    if voice_asked:
        from speakdigits.model import saying
        from speakdigits.voices import chosen_voice

        # The same voices (one per take) say each digit asked for; a training speaker's, as they say it.
        voice, voices, detail = chosen_voice(
            model.DIR,
            normalized.DIR,
            takes,
            digits=digits,
            like=args.like,
            speaker=args.speaker,
            between=args.between,
            like_digit=args.like_digit,
            mel=geometry,
            temperature=gen.temperature,
            latent_voice=gen.latent_voice,
            seed=seed,
        )
        z = saying(voice, digits, model.read_latents(model.DIR))
    records = generate_clips(
        model.DIR,
        normalized.DIR,
        out,
        mel=geometry,
        generate=gen,
        digits=digits,
        seed=seed,
        z=z,
        voices=voices,
        detail=detail,
        replace=args.out is None,
        progress=report_progress,
    )
    print(f"generate: {len(records)} clips and a mel grid in {out.resolve()}")


def asked_digits(
    args: argparse.Namespace, *, per_digit: int, n_samples: int, conditional: bool
) -> tuple[list[int | None], int]:
    """The digit of every clip the command line asks for, and how many takes of each digit (one voice per
    take); a wrong combination of options is refused in one line, before any work."""
    from speakdigits.generation import requested_digits

    takes = 1
    if args.count is not None and args.count < 1:
        raise PipelineError(f"--count {args.count}: expected a positive number of clips")
    if args.seed is not None and not 0 <= args.seed < 2**31:
        raise PipelineError(f"--seed {args.seed}: expected a whole number from 0 to 2**31 - 1")
    voice_asked = args.like is not None or args.speaker is not None or args.between is not None
    if args.like_digit is not None and args.like is None and args.between is None:
        raise PipelineError("--like-digit: says which digit the --like or --between recordings say; give one of those")
    if voice_asked:
        if not conditional:
            raise PipelineError(
                "--like/--speaker/--between: the trained model is unconditional (vae.conditional: false), so its "
                "latent vector holds the digit as well as the voice; retrain with vae.conditional=true"
            )
        if args.between is not None and args.count is not None:
            raise PipelineError("--count: with --between, --steps says how many clips go from A to B")
        if not 1 <= args.steps <= MOST_CLIPS // 10:
            raise PipelineError(f"--steps {args.steps}: expected 1 to {MOST_CLIPS // 10} clips from A to B")
        takes = args.steps if args.between is not None else args.count or 1
        digits = [d for d in ([args.digit] if args.digit is not None else range(10)) for _ in range(takes)]
    elif args.digit is not None:
        if not conditional:
            raise PipelineError(
                "--digit: the trained model is unconditional (vae.conditional: false); "
                "it cannot be asked for a digit. Leave out --digit, or retrain with vae.conditional=true"
            )
        digits = [args.digit] * (args.count or per_digit)
    elif args.count is not None:
        digits = requested_digits(conditional=conditional, per_digit=args.count, n_samples=args.count)
    else:
        digits = requested_digits(conditional=conditional, per_digit=per_digit, n_samples=n_samples)
    if len(digits) > MOST_CLIPS:
        raise PipelineError(
            f"--count {args.count}: asks for {len(digits)} clips; at most {MOST_CLIPS} in one call"
            + ("" if args.digit is not None or not conditional else " (without --digit, --count clips of each digit)")
        )
    return digits, takes


def report_progress(done: int, total: int) -> None:
    """A line at every tenth of the clips (from 50 clips), so that a long run is seen to move."""
    step = -(-total // 10)
    if total >= 50 and (done % step == 0 or done == total):
        print(f"generate: {done} of {total} clips", flush=True)


if __name__ == "__main__":
    main()
