#!/usr/bin/env python3
"""Regenerate the files derived from the code, or check that the committed ones are current.

    python -P hack/generate.py           # (re)writes all of them
    python -P hack/generate.py --check   # exit 1 naming each file that drifted

- charts/logdistill/crds/distilledmodels.logdistill.io.yaml: the CRD, from the pydantic spec (operator/crd.py)
- charts/logdistill/templates/_rules.tpl: the chart's RBAC rules, from operator/rbac.py
- charts/logdistill/templates/admission-policy.yaml: the ValidatingAdmissionPolicy, from src/logdistill/policy.py
"""

import sys
from pathlib import Path

from logdistill.operator import admission, crd, rbac

ROOT = Path(__file__).resolve().parent.parent
GENERATED = {
    crd.CRD_PATH: crd.render_crd,
    rbac.RULES_TEMPLATE_PATH: rbac.render_chart_rules,
    admission.TEMPLATE_PATH: admission.render_template,
}


def main(check: bool) -> int:
    stale = []
    for relative, render in GENERATED.items():
        target, text = ROOT / relative, render()
        if check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(str(relative))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {relative}")
    for relative in stale:
        print(f"{relative} is out of date: run python -P hack/generate.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
