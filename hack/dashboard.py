"""Builds the logdistill Grafana dashboard as code (grafana-foundation-sdk) and writes it as JSON.

    python -P hack/dashboard.py            # (re)writes charts/logdistill/dashboards/logdistill.json
    python -P hack/dashboard.py --check    # exit 1 when the committed JSON drifts from this code

The panels are data (``PANELS``): one place names every query. tests/test_dashboard.py checks the
committed JSON against this code; tests/test_prometheus_e2e.py runs every query of the JSON against a
real Prometheus scraping a real classifier. Metric names are those of ``logdistill.edge.metrics``
(classifier) and the operator's ``logdistill_operator_*``.

Dashboard variables used in queries: ``$namespace`` and ``$distilledmodel`` (regex matchers, "All" is
``.*``), ``$normal`` (the model's normal label, BGL's ``-``), and Grafana's ``$__rate_interval``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as mdash

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "charts" / "logdistill" / "dashboards" / "logdistill.json"
UID = "logdistill-overview"
DATASOURCE = mdash.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Every classifier series filtered by the dashboard's selectors.
SEL = 'namespace=~"$namespace", distilledmodel=~"$distilledmodel"'
C = "logdistill_classifier"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    instant: bool = False


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    kind: str  # "timeseries" | "stat" | "table"
    unit: str
    queries: tuple[Query, ...]
    width: int = 12
    height: int = 8
    min_max: tuple[float, float] | None = None
    # Metrics this panel needs that no component exports yet; the e2e test skips the panel's
    # non-empty check for them only, by name (see tests/test_prometheus_e2e.py).
    future_metrics: tuple[str, ...] = field(default=())


PANELS: tuple[PanelSpec, ...] = (
    PanelSpec(
        "Lines classified per second by label",
        "Rate of lines the edge classifiers label, by predicted label, summed over nodes.",
        "timeseries",
        "ops",
        (Query(f"sum by (label) (rate({C}_lines_classified_total{{{SEL}}}[$__rate_interval]))", "{{label}}"),),
    ),
    PanelSpec(
        "Anomaly rate",
        "Share of lines classified as anything but the normal label ($normal), per DistilledModel.",
        "timeseries",
        "percentunit",
        (
            Query(
                f'sum by (distilledmodel) (rate({C}_lines_classified_total{{{SEL}, label!="$normal"}}[$__rate_interval]))'
                f" / sum by (distilledmodel) (rate({C}_lines_classified_total{{{SEL}}}[$__rate_interval]))",
                "{{distilledmodel}}",
            ),
        ),
        min_max=(0, 1),
    ),
    PanelSpec(
        "Latency per line (p50 / p99)",
        "Classification time per line, template cache included (classify call time / lines): what a node pays "
        "per log line, cached or not.",
        "timeseries",
        "s",
        tuple(
            Query(
                f"histogram_quantile({q}, sum by (le) (rate({C}_classify_line_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                f"p{int(q * 100)}",
            )
            for q in (0.5, 0.99)
        ),
    ),
    PanelSpec(
        "Model inference per cache-missed line (p50 / p99)",
        "Model time per cache-missed line (batch time / batch size). Moves only when new templates arrive: "
        "a node whose templates are all cached shows no data here.",
        "timeseries",
        "s",
        tuple(
            Query(
                f"histogram_quantile({q}, sum by (le) (rate({C}_inference_line_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                f"p{int(q * 100)}",
            )
            for q in (0.5, 0.99)
        ),
    ),
    PanelSpec(
        "Template cache hit ratio",
        "Lines answered from the per-template cache over all lines that reached the cache.",
        "timeseries",
        "percentunit",
        (
            Query(
                f"sum(rate({C}_cache_hits_total{{{SEL}}}[$__rate_interval]))"
                f" / (sum(rate({C}_cache_hits_total{{{SEL}}}[$__rate_interval]))"
                f" + sum(rate({C}_cache_misses_total{{{SEL}}}[$__rate_interval])))",
                "hit ratio",
            ),
        ),
        min_max=(0, 1),
    ),
    PanelSpec(
        "New templates per minute",
        "Never-seen masked templates per minute, per node: the drift signal.",
        "timeseries",
        "short",
        (Query(f"sum by (node) (rate({C}_new_templates_total{{{SEL}}}[$__rate_interval])) * 60", "{{node}}"),),
    ),
    PanelSpec(
        "Escalation to the teacher",
        "Lines sent to the teacher service per second by result; teacher answers refused before use (unknown "
        "label, bad score, oversized or malformed) by reason; teacher downgrades of an alert to normal by action "
        "(refused: the alert stands). All zero without escalation.",
        "timeseries",
        "ops",
        (
            Query(f"sum by (result) (rate({C}_escalations_total{{{SEL}}}[$__rate_interval]))", "{{result}}"),
            Query(f"sum by (reason) (rate({C}_teacher_answers_rejected_total{{{SEL}}}[$__rate_interval]))",
                  "refused: {{reason}}"),
            Query(f"sum by (action) (rate({C}_teacher_downgrades_total{{{SEL}}}[$__rate_interval]))",
                  "downgrade {{action}}"),
        ),
    ),
    PanelSpec(
        "Model version per node",
        "The artifact version each node's classifier serves (a rollout shows two versions).",
        "table",
        "none",
        (
            Query(
                f"max by (node, distilledmodel, version, kind, student) ({C}_model_info{{{SEL}}})",
                "{{node}} {{version}}",
                instant=True,
            ),
        ),
        width=12,
    ),
    PanelSpec(
        "Student accuracy: offline report and online estimate",
        "Accuracy and macro-F1 from the served artifact's evaluation report, and the online accuracy: the "
        "teacher-agreement estimate where the classifiers export it (a teacher answers), else the offline "
        "accuracy, as the accuracy alert reads it.",
        "timeseries",
        "percentunit",
        (
            Query(f'max by (distilledmodel) ({C}_model_accuracy_ratio{{{SEL}, model="student"}})', "offline accuracy {{distilledmodel}}"),
            Query(f'max by (distilledmodel) ({C}_model_macro_f1_ratio{{{SEL}, model="student"}})', "offline macro-F1 {{distilledmodel}}"),
            # `or` per distilledmodel: models without an agreement series fall back to the offline accuracy
            # (as the LogdistillStudentAccuracyBelowGate alert does), so the panel never shows a gap for them.
            Query(
                f"avg by (distilledmodel) ({C}_teacher_agreement_ratio{{{SEL}}})"
                f' or max by (distilledmodel) ({C}_model_accuracy_ratio{{{SEL}, model="student"}})',
                "online accuracy {{distilledmodel}}",
            ),
        ),
        min_max=(0, 1),
    ),
    PanelSpec(
        "Distillation runs by phase",
        "DistilledModels per phase, from the operator.",
        "stat",
        "none",
        (Query('sum by (phase) (logdistill_operator_distilledmodels{namespace=~"$namespace"})', "{{phase}}", instant=True),),
        future_metrics=("logdistill_operator_distilledmodels",),
    ),
)


def _target(query: Query, ref: str) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref).datasource(DATASOURCE)
    return target.instant() if query.instant else target.range()


def _panel(spec: PanelSpec):
    builder = {"timeseries": timeseries.Panel, "stat": stat.Panel, "table": table.Panel}[spec.kind]()
    panel = builder.title(spec.title).description(spec.description).unit(spec.unit).datasource(DATASOURCE)
    panel = panel.span(spec.width).height(spec.height)
    if spec.min_max is not None:
        panel = panel.min(spec.min_max[0]).max(spec.min_max[1])
    if spec.kind == "timeseries":
        panel = panel.line_width(1).fill_opacity(10)
    for index, query in enumerate(spec.queries):
        panel = panel.with_target(_target(query, chr(ord("A") + index)))
    return panel


def _regex_variable(name: str, label: str, query: str) -> gdash.QueryVariable:
    return (
        gdash.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .refresh(mdash.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(mdash.VariableSort.ALPHABETICAL_ASC)
        .current(mdash.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def build() -> dict:
    """The dashboard as the JSON object Grafana imports."""
    board = (
        gdash.Dashboard("logdistill")
        .uid(UID)
        .description("Edge log classifiers distilled by logdistill: throughput, anomalies, latency, cache, drift, rollout, accuracy.")
        .tags(["logdistill", "aiops", "logs"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(mdash.DashboardCursorSync.CROSSHAIR)
        .with_variable(gdash.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(_regex_variable("namespace", "Namespace", f"label_values({C}_model_info, namespace)"))
        .with_variable(
            _regex_variable("distilledmodel", "DistilledModel", f'label_values({C}_model_info{{namespace=~"$namespace"}}, distilledmodel)')
        )
        .with_variable(
            gdash.TextBoxVariable("normal").label("Normal label").default_value("-")
            .current(mdash.VariableOption(selected=True, text="-", value="-"))
            .description("The label the model gives normal lines (BGL: -); every other label counts as an anomaly.")
        )
    )
    for spec in PANELS:
        board = board.with_panel(_panel(spec))
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed JSON differs from the code")
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"output file (default {OUTPUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python -P hack/dashboard.py", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(PANELS)} panels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
