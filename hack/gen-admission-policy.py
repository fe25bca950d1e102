#!/usr/bin/env python3
"""Regenerate charts/logdistill/templates/admission-policy.yaml from src/logdistill/policy.py.

Run from anywhere with the project's venv:  python -P hack/gen-admission-policy.py  (or `--check` to fail on drift).
"""

import sys
from pathlib import Path

from logdistill.operator.admission import TEMPLATE_PATH, render_template

root = Path(__file__).resolve().parent.parent
target = root / TEMPLATE_PATH
text = render_template()
if "--check" in sys.argv[1:]:
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        sys.exit(f"{target} is out of date: run python -P hack/gen-admission-policy.py")
    print(f"{target} is up to date")
else:
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
