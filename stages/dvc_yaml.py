"""Write dvc.yaml from the stage modules: ``python -m stages.dvc_yaml`` (``--check``: only compare).

Each stage module declares its entry (``DVC_STAGE``, a
:class:`stages.common.Stage`: the data it reads, its params, what it writes);
its code dependencies are the repository modules it imports, found by reading
the import statements (:func:`local_closure`), so that an edit to any code a
stage runs reruns that stage, and an edit to code it does not run does not.
Run this after changing imports or a declaration; ``tests/test_dvc_yaml.py``
fails while dvc.yaml is out of date.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DVC_YAML = REPO / "dvc.yaml"
PACKAGES = ("speakdigits", "stages")
#: The stages, in the order they run; ``cmd`` of each is ``python -m stages.<name>``.
STAGES = (
    "check_params",
    "download",
    "extract",
    "normalize",
    "train",
    "generate",
    "classify",
    "mfcc_judge",
    "evaluate",
    "plots_page",
)


# ----------------------------------------------------------------- the import closure


def module_file(module: str, repo: Path = REPO) -> Path | None:
    """The repository file of a dotted module name, or None when it is not ours."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = repo.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def has_code(init: Path) -> bool:
    """Whether a package's ``__init__.py`` holds more than a docstring (then importing a module below runs it)."""
    body = ast.parse(init.read_text(encoding="utf-8")).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return any(not (isinstance(node, ast.ImportFrom) and node.module == "__future__") for node in body)


def package_inits(module: str, repo: Path = REPO) -> list[Path]:
    """``__init__.py`` of every package above ``module`` that holds code."""
    parts = module.split(".")
    inits = [repo.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts))]
    return [init for init in inits if init.is_file() and has_code(init)]


def _is_type_checking_guard(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imported_modules(path: Path, repo: Path = REPO) -> set[str]:
    """Dotted names of the modules ``path`` imports, wherever in the file (a function's import too,
    but not one guarded by ``if TYPE_CHECKING:``, which never runs), relative imports resolved."""
    module = ".".join(path.relative_to(repo).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _is_type_checking_guard(node):
            for child in node.orelse:  # only the else branch runs
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # ``from pkg import name``: name may be a submodule.
            found.update(f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}", repo))
        elif (
            isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


def local_closure(entry: Path, repo: Path = REPO) -> set[str]:
    """Repository-relative paths of every local module ``entry`` runs, itself and its packages'
    ``__init__.py`` (where they hold code) included."""
    module = ".".join(entry.relative_to(repo).with_suffix("").parts)
    seen: set[Path] = set()
    pending = [entry, *package_inits(module, repo)]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for imported in imported_modules(path, repo):
            target = module_file(imported, repo)
            if target is not None and (target.name != "__init__.py" or has_code(target)):
                pending.append(target)
                pending.extend(package_inits(imported, repo))
    return {path.relative_to(repo).as_posix() for path in seen}


def code_deps(stage: str) -> list[str]:
    """The code a stage runs: its module's import closure, the stage's own module first."""
    own = f"stages/{stage}.py"
    return [own] + sorted(local_closure(REPO / own) - {own}, key=lambda p: (not p.startswith("stages/"), p))


# ----------------------------------------------------------------- dvc.yaml


def _entry(stage: str) -> list[str]:
    module = importlib.import_module(f"stages.{stage}")
    declared = module.DVC_STAGE
    checked = importlib.import_module("stages.check_params").PARAMS_CHECKED
    lines = [""]
    lines += [f"  # {line}" for line in _wrap(declared.note, 100)]
    lines += [f"  {stage}:", f"    cmd: python -m stages.{stage}", "    deps:"]
    if declared.checked_params:
        lines.append(f"      - {checked.as_posix()}")
    lines += [f"      - {dep}" for dep in code_deps(stage)]
    lines += [f"      - {dep.as_posix()}" for dep in declared.deps]
    if declared.params:
        lines.append("    params:")
        lines += [f"      - {key}" for key in declared.params]
    lines.append("    outs:")
    lines += [f"      - {out.as_posix()}" for out in declared.outs]
    for path in declared.metrics:
        lines += [f"      - {path.as_posix()}:", "          cache: false"]
    return lines


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def render() -> str:
    """dvc.yaml's text: the headline metrics, the plots, the model registry entries, the stages."""
    from speakdigits import listening
    from speakdigits.formats import classifiers, generated, model
    from stages import classify, evaluate, train

    live = train.LIVE_DIR.as_posix()
    curves = []
    for quantity, title in (
        ("loss", "VAE loss"),
        ("reconstruction", "VAE reconstruction MSE"),
        ("kl", "VAE KL divergence"),
    ):
        curves += [
            f"  - {title} (training and validation):",
            "      template: linear",
            "      x: step",
            "      y:",
            f"        {live}/plots/metrics/train/{quantity}.tsv: {quantity}",
            f"        {live}/plots/metrics/eval/{quantity}.tsv: {quantity}",
        ]
    head = f"""\
# Written by `python -m stages.dvc_yaml` from the stage modules (stages/*.py, DVC_STAGE) and
# the code each one imports; edit those, not this file (tests/test_dvc_yaml.py checks it).
# Each stage lists exactly the code it runs, the params.yaml keys it reads and what it
# writes, so that a change reruns only the stages it affects. README.md draws the DAG
# and explains every param.

# The headline numbers only, flat, so that `dvc exp show` and `dvc metrics show` fit a
# terminal; the detail stays in {evaluate.METRICS.as_posix()}, {classify.METRICS.as_posix()}, metrics/data.json
# and {live}/metrics.json (`dvc metrics show <file>`).
metrics:
  - {train.HEADLINE.as_posix()}
  - {evaluate.SUMMARY.as_posix()}

plots:
  # The VAE's curves, training and validation of each quantity in one plot, readable
  # while it trains (DVCLive writes each epoch into {live}).
{chr(10).join(curves)}
  # One confusion matrix per trained classifier (confusion_digit.json, ...): test clips, actual vs predicted.
  - {classify.CONFUSION_DIR.as_posix()}:
      template: confusion
      x: actual
      y: predicted
  # The generated clips' spectrograms, one row per digit.
  - {(generated.DIR / generated.GRID_PNG).as_posix()}
  # The test clips' latent vectors on a plane, by digit and by speaker (the voices: listening page).
  - {(listening.DIR / listening.LATENT_MAP_PNG).as_posix()}

# The trained models, for DVC's model registry (dvc artifacts, Studio).
artifacts:
  vae:
    path: {model.DIR.as_posix()}
    type: model
    desc: Conditional VAE over log-mel spectrograms (encoder.keras, decoder.keras, latents.json)
    labels: [vae, speech, digits]
  digit-judge:
    path: {classifiers.DIR.as_posix()}
    type: model
    desc: The digit classifier that judges the generated voices, with the gender and age classifiers beside it
    labels: [classifier, judge]

stages:"""
    lines = [head]
    for stage in STAGES:
        lines += _entry(stage)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stages.dvc_yaml", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is not what would be written")
    args = parser.parse_args(argv)
    text = render()
    current = DVC_YAML.read_text(encoding="utf-8") if DVC_YAML.exists() else ""
    if args.check:
        if current != text:
            print(f"{DVC_YAML.name} is out of date; run: python -m stages.dvc_yaml", file=sys.stderr)
            return 1
        print(f"{DVC_YAML.name} is up to date")
        return 0
    if current != text:
        tmp = DVC_YAML.with_name(f".{DVC_YAML.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(DVC_YAML)
    print(f"wrote {DVC_YAML.name}" if current != text else f"{DVC_YAML.name} was already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
