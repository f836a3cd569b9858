package dashboards

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// dir holds the dashboard and the rules, from this package's directory.
var dir = filepath.Join("..", "..", "..", "docs", "dashboards")

// checked is what an expression names, once checked.
type checked struct {
	metrics  []string
	labels   []string // every label of the series it selects
	grouping []string
}

// check parses expr and checks every metric, label and label value it names against what was emitted. A label
// value is checked where it is matched exactly (= and !=): it must be one the provider was seen to emit. Regular
// expressions and Grafana variables are not checked against values.
func (c catalog) check(expr string) (checked, error) {
	q, err := parsePromQL(expr)
	if err != nil {
		return checked{}, fmt.Errorf("%w in %q", err, expr)
	}
	var out checked
	var errs []error
	if len(q.selectors) == 0 {
		errs = append(errs, fmt.Errorf("%q names no metric", expr))
	}
	for _, s := range q.selectors {
		out.metrics = append(out.metrics, s.metric)
		series, ok := c[s.metric]
		if !ok {
			errs = append(errs, fmt.Errorf("metric %s is not emitted (emitted: %s)", s.metric, strings.Join(c.names(), ", ")))
			continue
		}
		out.labels = append(out.labels, series.labelNames()...)
		for _, m := range s.matchers {
			values, ok := series.labels[m.label]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%s has no label %s (it has %s)", s.metric, m.label,
					strings.Join(series.labelNames(), ", ")))
			case (m.op == "=" || m.op == "!=") && m.label != "le" && m.value != "" && !strings.Contains(m.value, "$") &&
				!values[m.value]:
				errs = append(errs, fmt.Errorf("%s{%s%s%q}: the provider was not seen to emit that value (seen: %s)",
					s.metric, m.label, m.op, m.value, strings.Join(sortedKeys(values), ", ")))
			}
		}
	}
	for _, l := range q.grouping {
		if !slices.Contains(out.labels, l) && len(out.labels) > 0 {
			errs = append(errs, fmt.Errorf("label %s in a by/on list is on none of %s", l, strings.Join(out.metrics, ", ")))
		}
	}
	out.grouping = q.grouping
	return out, errors.Join(errs...)
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// dashboardQuery is one PromQL expression of the dashboard and where it is.
type dashboardQuery struct {
	where, expr string
}

// labelValues matches Grafana's label_values(selector, label) and label_values(label) variable queries.
var labelValues = regexp.MustCompile(`^\s*label_values\((?:(.*),)?\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// dashboardQueries returns the expressions of every panel target and the queries of the template variables,
// label_values(sel, label) becoming "group by (label) (sel)".
func dashboardQueries(raw []byte) ([]dashboardQuery, error) {
	var d struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	var out []dashboardQuery
	var walk func(raw json.RawMessage) error
	walk = func(raw json.RawMessage) error {
		var p struct {
			Title   string            `json:"title"`
			Panels  []json.RawMessage `json:"panels"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return err
		}
		for _, t := range p.Targets {
			if strings.TrimSpace(t.Expr) == "" {
				return fmt.Errorf("panel %q target %s has no expr", p.Title, t.RefID)
			}
			out = append(out, dashboardQuery{fmt.Sprintf("panel %q %s", p.Title, t.RefID), t.Expr})
		}
		for _, c := range p.Panels {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range d.Panels {
		if err := walk(p); err != nil {
			return nil, err
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		lv := labelValues.FindStringSubmatch(q)
		if lv == nil {
			return nil, fmt.Errorf("variable %s: query %q is not label_values(...)", v.Name, q)
		}
		sel := lv[1]
		if strings.TrimSpace(sel) == "" {
			return nil, fmt.Errorf("variable %s: label_values without a metric ranges over every metric", v.Name)
		}
		out = append(out, dashboardQuery{"variable " + v.Name, fmt.Sprintf("group by (%s) (%s)", lv[2], sel)})
	}
	return out, nil
}

// ruleFile is a Prometheus rule file, decoded strictly.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

func readRules(raw []byte) (ruleFile, error) {
	var f ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("alerts: %w", err)
	}
	return f, nil
}

// templateLabels finds {{ $labels.x }} (and $labels.x anywhere in a template).
var templateLabels = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)

// checkRule checks a rule's expression and that its annotations name only labels the alert carries: the grouping
// labels when it aggregates, else those of the series it selects.
func (c catalog) checkRule(r rule) error {
	var errs []error
	if r.Alert == "" || r.Record != "" {
		errs = append(errs, fmt.Errorf("rule %q%q: only alerting rules are expected", r.Alert, r.Record))
	}
	got, err := c.check(r.Expr)
	if err != nil {
		errs = append(errs, err)
	}
	carried := got.labels
	if len(got.grouping) > 0 {
		carried = got.grouping
	}
	for _, text := range r.Annotations {
		for _, m := range templateLabels.FindAllStringSubmatch(text, -1) {
			if !slices.Contains(carried, m[1]) {
				errs = append(errs, fmt.Errorf("annotation names $labels.%s, which the alert does not carry (it has %s)",
					m[1], strings.Join(carried, ", ")))
			}
		}
	}
	if r.Labels["severity"] == "" {
		errs = append(errs, errors.New("no severity label"))
	}
	if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
		errs = append(errs, errors.New("no summary or description annotation"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("alert %s: %w", r.Alert, err)
	}
	return nil
}

func readFile(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
