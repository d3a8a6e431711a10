#!/usr/bin/env bash
# Checks deploy/ with the tools Prometheus publishes: the alert rules (syntax, PromQL, and
# their unit tests in alerts.test.yml) with promtool, and the Grafana dashboard: JSON of the
# dashboard model's shape (unique panel ids and refIds, a datasource on every query), each
# panel's query parsed by promtool as a recording rule. Whether every metric named here is one
# the binary exposes is system/tests/deploy.rs. Installs the pinned promtool if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

promtool="$(go env GOPATH)/bin/promtool"
[ -x "$promtool" ] || go install github.com/prometheus/prometheus/cmd/promtool@v0.316.0

"$promtool" check rules deploy/prometheus/alerts.yml
"$promtool" test rules deploy/prometheus/alerts.test.yml

queries="$(mktemp --suffix=.yml)"
trap 'rm -f "$queries"' EXIT
python3 - deploy/grafana/*.json >"$queries" <<'PY'
import json, sys

rules = []
for path in sys.argv[1:]:
    with open(path) as f:
        d = json.load(f)
    for key in ("title", "uid", "panels", "schemaVersion"):
        assert key in d, f"{path}: no {key}"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), f"{path}: panel ids repeat: {ids}"
    for p in d["panels"]:
        assert p.get("title") and p.get("gridPos"), f"{path}: panel {p['id']} lacks a title or a place"
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), f"{path}: panel {p['id']}: refIds {refs}"
        for t in p["targets"]:
            assert t.get("datasource", p.get("datasource")), f"{path}: panel {p['id']} {t['refId']}: no datasource"
            assert t["expr"].strip(), f"{path}: panel {p['id']} {t['refId']}: empty query"
            rules.append({"record": f"dashboard:panel_{p['id']}_{t['refId']}", "expr": t["expr"]})
# JSON is YAML: promtool reads this as a rule file.
print(json.dumps({"groups": [{"name": "dashboard-queries", "rules": rules}]}))
PY
"$promtool" check rules "$queries"
echo "deploy/: alert rules, their tests and the dashboard's queries check"
