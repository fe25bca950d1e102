#!/usr/bin/env python3
"""Regenerate charts/logdistill/crds/distilledmodels.logdistill.io.yaml from the pydantic models.

Run from anywhere with the project's venv:  python -P hack/gen-crd.py  (or `--check` to fail on drift).
"""

import sys
from pathlib import Path

from logdistill.operator.crd import CRD_PATH, render_crd

root = Path(__file__).resolve().parent.parent
target = root / CRD_PATH
text = render_crd()
if "--check" in sys.argv[1:]:
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        sys.exit(f"{target} is out of date: run python -P hack/gen-crd.py")
    print(f"{target} is up to date")
else:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
