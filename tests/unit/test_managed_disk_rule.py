"""The recording rule docs/managed-databases.md tells users to load feeds the real disk alert:
taken from the page as a user copies it, run by promtool beside pgvigil's rendered rules."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from pgvigil.alerting import rules
from pgvigil.config.thresholds import load_thresholds

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "managed-databases.md"


def documented_node_exporter_rule() -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(), flags=re.S)
    return next(b for b in blocks if "pgvigil-disk-from-node-exporter" in b)


def test_documented_rule_fires_the_disk_alert_from_node_exporter(tmp_path: Path) -> None:
    (tmp_path / "node-disk.yml").write_text(documented_node_exporter_rule())
    rendered = rules.render(load_thresholds())
    for name, text in rendered.items():
        (tmp_path / name).write_text(text)
    order = ["pgvigil-disk-from-node-exporter"] + [
        g for groups in rules.group_names(rendered).values() for g in groups
    ]
    node = 'instance="db1:9100", job="node", mountpoint="/var/lib/postgresql"'
    test = {
        "rule_files": ["node-disk.yml", *rendered],
        "evaluation_interval": "1m",
        "group_eval_order": order,
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"node_filesystem_size_bytes{{{node}}}", "values": "100x30"},
                    {"series": f"node_filesystem_avail_bytes{{{node}}}", "values": "10x30"},
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "PgvigilDiskUsageHigh", "exp_alerts": []},
                    {
                        "eval_time": "15m",
                        "alertname": "PgvigilDiskUsageHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "instance": "db1:9100",
                                    "job": "node",
                                    "path": "/var/lib/postgresql",
                                },
                                "exp_annotations": {
                                    "summary": "The filesystem of the data directory is fuller "
                                    "than its warning threshold.",
                                    "description": "Filesystem /var/lib/postgresql on db1:9100 "
                                    "is 90% used, above the warning threshold of 80%.",
                                    "runbook_url": "https://github.com/pgvigil/pgvigil/blob/main/"
                                    "rules/RUNBOOK.md#pgvigildiskusagehigh",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    result = subprocess.run(
        ["promtool", "test", "rules", "test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
