"""Draws the pictures of docs/quickstart-cluster.md from a real Prometheus run (matplotlib, not a test dependency).

    LOGDISTILL_E2E_DUMP=/tmp/e2e.json pytest tests/test_prometheus_e2e.py   # records every panel's range data
    python -P hack/plot_metrics.py /tmp/e2e.json                             # writes docs/img/*.png

No Grafana server runs here: ``dashboard-panels.png`` plots each panel's PromQL result, laid out as the
dashboard's grid (charts/logdistill/dashboards/logdistill.json), and ``prometheus-metrics.png`` four key series.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "charts" / "logdistill" / "dashboards" / "logdistill.json"
OUT = ROOT / "docs" / "img"


def _series(panel: dict):
    """(legend, seconds since start, values) for each series of a recorded query."""
    for result in panel["result"]:
        values = result["values"]
        if not values:
            continue
        t0 = values[0][0]
        legend = ", ".join(f"{k}={v}" for k, v in sorted(result["metric"].items())) or "value"
        yield legend, [t - t0 for t, _ in values], [float(v) for _, v in values]


def _legend_for(panel: dict, metric: dict, template: str) -> str:
    text = template
    for key, value in metric.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def plot_panel(ax, title: str, unit: str, targets: list[dict], recorded: list[dict], kind: str) -> None:
    ax.set_title(title, fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    if kind == "table":
        rows = [r["metric"] for rec in recorded for r in rec["result"]]
        ax.axis("off")
        if rows:
            columns = ["node", "distilledmodel", "version", "kind"]
            ax.table(cellText=[[row.get(c, "") for c in columns] for row in rows], colLabels=columns,
                     loc="center", fontsize=8)
        return
    drawn = False
    for target, rec in zip(targets, recorded):
        for result in rec["result"]:
            values = result["values"]
            t0 = values[0][0]
            ax.plot([t - t0 for t, _ in values], [float(v) for _, v in values], lw=1.2,
                    label=_legend_for(rec, result["metric"], target.get("legendFormat", "")))
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no data: metric not exported yet", ha="center", va="center", transform=ax.transAxes,
                fontsize=8, color="grey")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if unit == "percentunit":
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    elif unit == "s":
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v * 1000:.2f} ms"))
    ax.set_xlabel("seconds", fontsize=7)
    ax.legend(fontsize=6, loc="best")
    ax.grid(alpha=0.3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", type=Path, help="JSON written by tests/test_prometheus_e2e.py (LOGDISTILL_E2E_DUMP)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    data = json.loads(args.dump.read_text())
    board = json.loads(DASHBOARD.read_text())
    recorded = iter(data["panels"])
    args.out.mkdir(parents=True, exist_ok=True)

    # The dashboard, panel by panel, on its grid (24 columns; one figure row per 8 grid rows).
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"]) // 8
    fig = plt.figure(figsize=(13, 3.2 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, 24)
    by_title = {}
    for panel in board["panels"]:
        recs = [next(recorded) for _ in panel["targets"]]
        assert all(r["title"] == panel["title"] for r in recs), "dump and dashboard disagree: re-run the e2e test"
        by_title[panel["title"]] = (panel, recs)
        g = panel["gridPos"]
        ax = fig.add_subplot(grid[g["y"] // 8:(g["y"] + g["h"]) // 8, g["x"]:g["x"] + g["w"]])
        plot_panel(ax, panel["title"], panel["fieldConfig"]["defaults"].get("unit", ""), panel["targets"], recs,
                   panel["type"])
    fig.suptitle(f"logdistill dashboard queries on a real Prometheus scraping a real classifier "
                 f"({data['lines_written']:,} Loghub lines fed)", fontsize=10)
    fig.savefig(args.out / "dashboard-panels.png", dpi=90)
    plt.close(fig)

    # Four key series, larger.
    keys = ["Lines classified per second by label", "Inference latency per line (p50 / p99)",
            "Template cache hit ratio", "New templates per minute"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5))
    for ax, title in zip(axes.flat, keys):
        panel, recs = by_title[title]
        plot_panel(ax, title, panel["fieldConfig"]["defaults"].get("unit", ""), panel["targets"], recs, panel["type"])
    fig.suptitle("logdistill classify on BGL + HDFS logs, scraped every second by Prometheus 2.42", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out / "prometheus-metrics.png", dpi=90)
    plt.close(fig)
    print(f"wrote {args.out / 'dashboard-panels.png'} and {args.out / 'prometheus-metrics.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
