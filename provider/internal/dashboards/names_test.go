package dashboards

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/otlptest"
)

// The OpenTelemetry to Prometheus naming rules, as the Collector's Prometheus exporter and Prometheus's OTLP receiver
// apply them with their defaults (suffixes added, names escaped to the classic character set; see the OpenTelemetry
// specification's "Prometheus and OpenMetrics compatibility"):
//
//   - the name is cut into tokens at every character outside [a-zA-Z0-9:], joined again with "_";
//   - the unit's Prometheus name is appended unless already a token: s -> seconds, ms -> milliseconds, By -> bytes,
//     ...; a unit in braces ({call}) and the unit 1 add nothing; "X/Y" adds X's name, then per_Y;
//   - a monotonic sum (a counter) ends in _total; a gauge with unit 1 ends in _ratio;
//   - a histogram becomes the series _bucket (with the label le), _sum and _count;
//   - attribute keys become labels with every character outside [a-zA-Z0-9_] replaced by "_";
//   - the resource becomes the labels job (service.namespace/service.name) and instance (service.instance.id) on
//     every series, and the series target_info carries the other resource attributes as labels.
//
// Units this table does not know make promName fail rather than guess.
var unitNames = map[string]string{
	"d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds", "us": "microseconds",
	"ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
	"KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "%": "percent", "1": "",
}

var perUnitNames = map[string]string{"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}

func validNameChar(r rune) bool {
	return r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == ':')
}

// promName is the Prometheus name of an OTLP metric (for a histogram, the name its _bucket, _sum and _count extend).
func promName(name, unit, kind string, monotonic bool) (string, error) {
	tokens := strings.FieldsFunc(name, func(r rune) bool { return !validNameChar(r) })
	main, per, _ := strings.Cut(unit, "/")
	add := func(suffix string) {
		if suffix != "" && !slices.Contains(tokens, suffix) {
			tokens = append(tokens, suffix)
		}
	}
	if main = strings.TrimSpace(main); main != "" && !strings.ContainsAny(main, "{}") {
		n, ok := unitNames[main]
		if !ok {
			return "", fmt.Errorf("%s: unit %q has no Prometheus name in this test's table", name, unit)
		}
		add(n)
	}
	if per = strings.TrimSpace(per); per != "" && !strings.ContainsAny(per, "{}") {
		n, ok := perUnitNames[per]
		if !ok {
			return "", fmt.Errorf("%s: unit %q has no Prometheus name in this test's table", name, unit)
		}
		add("per_" + n)
	}
	switch {
	case kind == "sum" && monotonic:
		tokens = append(slices.DeleteFunc(tokens, func(s string) bool { return s == "total" }), "total")
	case (kind == "gauge" || kind == "sum") && unit == "1":
		tokens = append(slices.DeleteFunc(tokens, func(s string) bool { return s == "ratio" }), "ratio")
	case kind == "sum", kind == "gauge", kind == "histogram":
	default:
		return "", fmt.Errorf("%s: a %s has no classic Prometheus series", name, kind)
	}
	out := strings.Join(tokens, "_")
	if out != "" && unicode.IsDigit(rune(out[0])) {
		out = "_" + out
	}
	return out, nil
}

// labelName is the Prometheus label an attribute key becomes.
func labelName(key string) string {
	l := strings.Map(func(r rune) rune {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_') {
			return r
		}
		return '_'
	}, key)
	switch {
	case l != "" && unicode.IsDigit(rune(l[0])):
		l = "key_" + l
	case strings.HasPrefix(l, "_") && !strings.HasPrefix(l, "__"):
		l = "key" + l
	}
	return l
}

// series is one Prometheus series name the provider's metrics become, with every label seen on it and the values
// each label took.
type series struct {
	otel   string // the OpenTelemetry instrument it comes from
	labels map[string]map[string]bool
}

func (s *series) see(label, value string) {
	if s.labels[label] == nil {
		s.labels[label] = map[string]bool{}
	}
	s.labels[label][value] = true
}

func (s *series) labelNames() []string {
	var out []string
	for l := range s.labels {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// catalog maps Prometheus series names to what was emitted under them.
type catalog map[string]*series

func (c catalog) add(name, otel string) *series {
	if c[name] == nil {
		c[name] = &series{otel: otel, labels: map[string]map[string]bool{}}
	}
	return c[name]
}

func (c catalog) names() []string {
	var out []string
	for n := range c {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// newCatalog converts what a collector received into the series Prometheus would hold.
func newCatalog(metrics []otlptest.Metric) (catalog, error) {
	c := catalog{}
	for _, m := range metrics {
		base, err := promName(m.Name, m.Unit, m.Kind, m.Monotonic)
		if err != nil {
			return nil, err
		}
		names := []string{base}
		if m.Kind == "histogram" {
			names = []string{base + "_bucket", base + "_sum", base + "_count"}
		}
		res := m.ResourceAttributes
		job := res["service.name"]
		if ns := res["service.namespace"]; ns != "" && job != "" {
			job = ns + "/" + job
		}
		target := c.add("target_info", "(resource)")
		for k, v := range res {
			if k != "service.name" && k != "service.namespace" && k != "service.instance.id" {
				target.see(labelName(k), v)
			}
		}
		for _, name := range names {
			s := c.add(name, m.Name)
			for _, into := range []*series{s, target} {
				if job != "" {
					into.see("job", job)
				}
				if id := res["service.instance.id"]; id != "" {
					into.see("instance", id)
				}
			}
			if strings.HasSuffix(name, "_bucket") {
				s.see("le", "") // bucket bounds: any value
			}
			for _, p := range m.Points {
				for k, v := range p.Attributes {
					s.see(labelName(k), v)
				}
			}
		}
	}
	return c, nil
}
