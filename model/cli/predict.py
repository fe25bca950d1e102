"""``logdistill predict``: one JSON object per input line, in input order.

Each object: ``{"source", "line", "label", "score", "template"}`` where ``label`` is spelled
exactly as in the training data (BGL's normal label is ``-``) and ``score`` is its
probability. Scored with the artifact's int8 ONNX model, one call per distinct template.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from logdistill.model.engine.evaluate import add_model_and_data_arguments

    add_model_and_data_arguments(parser, "log file or directory (labels, if any, are ignored)")


def main(args: argparse.Namespace) -> int:
    from logdistill.model.engine.evaluate import load_model_and_data, predict_texts
    from logdistill.model.runtime.templates import mask

    loaded = load_model_and_data(args, "predict")
    if loaded is None:
        return 2
    classifier, read = loaded
    texts = [r.text for r in read.records]
    out = sys.stdout
    try:
        for record, (label, score) in zip(read.records, predict_texts(classifier, texts)):
            body = {"source": record.source, "line": record.line, "label": label, "score": round(score, 6),
                    "template": mask(record.text)}
            out.write(json.dumps(body) + "\n")
        out.flush()
    except BrokenPipeError:  # `logdistill predict ... | head`: the reader is gone, stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if read.malformed:
        print(f"logdistill predict: {len(read.malformed)} malformed line(s) skipped", file=sys.stderr)
    return 0
