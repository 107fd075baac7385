"""Checks monitoring/grafana-dashboard.json: it is JSON, and every kp_* metric
its queries use is one that shared/kp-http/src/metrics.rs registers."""

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

dashboard = json.loads((ROOT / "monitoring/grafana-dashboard.json").read_text())
registered = set(re.findall(r'"(kp_[a-z_]+)"', (ROOT / "shared/kp-http/src/metrics.rs").read_text()))
failures = []
queries = 0
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        queries += 1
        for metric in re.findall(r"\bkp_[a-z_]+", target["expr"]):
            base = re.sub(r"_(bucket|count|sum)$", "", metric)
            if base not in registered:
                failures.append(f"panel {panel['title']!r} uses {metric}, which metrics.rs does not register")
for failure in failures:
    print(failure, file=sys.stderr)
if failures:
    sys.exit(1)
print(f"grafana dashboard: {queries} queries use only registered metrics {sorted(registered)}")
