"""Metric definitions, Prometheus configuration and alert rules, Grafana dashboards."""
