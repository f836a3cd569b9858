// Package dashboards holds only tests: they check that the Grafana dashboard and the Prometheus alert rules in
// docs/dashboards name metrics and labels the provider really emits, under the names Prometheus gives them after an
// OpenTelemetry Collector's Prometheus exporter (or Prometheus's own OTLP receiver) converts them.
package dashboards
