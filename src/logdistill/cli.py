"""The ``logdistill`` console script.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``. Those modules import torch or onnxruntime inside functions, so
``logdistill operator`` and ``logdistill classify`` never pay for (or need) torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Iterable

from logdistill import __version__

# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("logdistill.model.cli.demo", "train a teacher, distil a student and compare them on the bundled BGL sample"),
    "teacher": ("logdistill.model.engine.teacher", "teacher commands (train)"),
    "distill": ("logdistill.model.cli.distill", "distil a student from a teacher as a config file describes"),
    "label": ("logdistill.model.cli.label", "compute one shard of the teacher's soft targets (scale-out labelling)"),
    "evaluate": ("logdistill.model.engine.evaluate", "score an artifact on labelled logs and print a JSON report"),
    "predict": ("logdistill.model.cli.predict", "print a JSON label and score per input line"),
    "classify": ("logdistill.edge.main", "run the edge classifier: tail logs, classify, export metrics"),
    "serve-teacher": ("logdistill.model.services.serve_teacher", "serve the teacher over HTTP for the edge's escalations"),
    "operator": ("logdistill.operator.main", "run the DistilledModel operator"),
    "bench": ("logdistill.bench", "benchmarks (distill, classify, cascade, scaleout, techniques)"),
}


# Top-level modules of the optional extras -> the extra that installs them, for a clear error when a
# command runs in an install without it (the slim edge image has the base dependencies only).
EXTRA_OF_MODULE: dict[str, str] = {
    "kopf": "operator",
    "kubernetes": "operator",
    "aiohttp": "operator",
    "torch": "train",
    "transformers": "train",
    "safetensors": "train",
    "onnx": "train",
    "onnxscript": "train",
    "sklearn": "train",
    "tqdm": "train",
    # The typed spec's: in both extras; which one to name depends on the command (see missing_extra).
    "pydantic": "train",
    "yaml": "train",
}


def missing_extra(err: ModuleNotFoundError, command: str | None = None) -> str | None:
    """The extra whose absence caused ``err`` when running ``command``, if it is one of ours."""
    top = (err.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if command == "operator" and top in ("pydantic", "yaml"):
        return "operator"
    return extra


def build_parser(load: Iterable[str] = ()) -> argparse.ArgumentParser:
    """The whole command tree; only the subcommands named in ``load`` import their modules."""
    parser = argparse.ArgumentParser(
        prog="logdistill",
        description="Distil a large log classifier into a small one and run it on every edge node.",
    )
    parser.add_argument("--version", action="version", version=f"logdistill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name in load:
            module = importlib.import_module(module_name)
            module.add_arguments(command)
            command.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Import only the chosen subcommand's module: keeps start-up light and torch-free.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    try:
        args = build_parser(load=[chosen] if chosen in COMMANDS else []).parse_args(argv)
        return int(args._main(args) or 0)
    except ModuleNotFoundError as err:
        extra = missing_extra(err, chosen)
        if extra is None:
            raise
        print(f"logdistill {chosen}: this install lacks the '{extra}' extra ({err}); pip install"
              f" 'logdistill[{extra}]', or run the full image", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
