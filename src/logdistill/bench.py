"""``logdistill bench <name>``: dispatch to the benchmark modules (imported only when chosen).

* ``distill``  -> :mod:`logdistill.model.bench.distill` (teacher vs distilled vs hard-label student vs TF-IDF)
* ``classify`` -> :mod:`logdistill.edge.bench` (edge classifier throughput and memory)
* ``quality`` -> :mod:`logdistill.model.bench.quality` (the quality protocol: k-fold, leave-one-category-out,
  chronological)
* ``techniques`` -> :mod:`logdistill.model.bench.techniques` (one row per distillation technique)
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS: dict[str, tuple[str, str]] = {
    "distill": ("logdistill.model.bench.distill", "teacher vs distilled student vs baselines on BGL"),
    "classify": ("logdistill.edge.bench", "edge classifier throughput, latency and memory"),
    "cascade": ("logdistill.model.bench.cascade", "leave-one-category-out recall with and without the teacher cascade"),
    "scaleout": ("logdistill.model.bench.scaleout", "sharded labelling and torchrun training for 1 and 2 workers"),
    "quality": ("logdistill.model.bench.quality", "k-fold, leave-one-category-out and chronological quality of"
                " teacher, students and baselines (issue 16)"),
    "techniques": ("logdistill.model.bench.techniques", "student macro-F1 and distillation time per technique (issue 4)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS), help="which benchmark to run")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="options of that benchmark (see its --help)")


def main(args: argparse.Namespace) -> int:
    module_name, help_text = BENCHMARKS[args.benchmark]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        print(f"logdistill bench {args.benchmark}: cannot import {module_name}: {err}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"logdistill bench {args.benchmark}", description=help_text)
    module.add_arguments(parser)
    return int(module.main(parser.parse_args(args.rest)) or 0)
