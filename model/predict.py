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
    parser.add_argument("--model", required=True, help="artifact directory (teacher or student)")
    parser.add_argument("--data", required=True, help="log file or directory (labels, if any, are ignored)")
    parser.add_argument("--format", default="loghub", choices=("loghub", "csv", "jsonl"))
    parser.add_argument("--text-column", default="Content", help="csv: column of the message")
    parser.add_argument("--label-column", default="EventId", help="csv: column of the label")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")


def main(args: argparse.Namespace) -> int:
    from logdistill.model.artifact import ArtifactError
    from logdistill.model.data import DataError, read_logs
    from logdistill.model.evaluate import predict_texts
    from logdistill.model.runtime import OnnxClassifier
    from logdistill.model.templates import mask

    try:
        classifier = OnnxClassifier(args.model, threads=args.threads)
        read = read_logs(args.data, args.format, text_column=args.text_column, label_column=args.label_column)
    except (ArtifactError, DataError) as err:
        print(f"logdistill predict: {err}", file=sys.stderr)
        return 2
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
