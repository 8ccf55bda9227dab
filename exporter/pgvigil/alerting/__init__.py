"""Alerting: thresholds rendered into Prometheus rules, the Alertmanager client, `alerts`,
`status`."""
