#!/usr/bin/env python3
"""Regenerate charts/logdistill/templates/_rules.tpl (the chart's RBAC rules) from operator/rbac.py.

Run from anywhere with the project's venv:  python -P hack/gen-rbac.py  (or `--check` to fail on drift).
"""

import sys
from pathlib import Path

from logdistill.operator.rbac import render_chart_rules

target = Path(__file__).resolve().parent.parent / "charts" / "logdistill" / "templates" / "_rules.tpl"
text = render_chart_rules()
if "--check" in sys.argv[1:]:
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        sys.exit(f"{target} is out of date: run python -P hack/gen-rbac.py")
    print(f"{target} is up to date")
else:
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
