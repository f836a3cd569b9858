package dashboards

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// A small reader of the PromQL the dashboard and the rules use: it finds every metric selector (name and label
// matchers) and every label named in by, without, on, ignoring, group_left and group_right, and rejects what it does
// not understand (unknown functions, unbalanced brackets, a selector without a metric name, Grafana variables
// outside strings and ranges), so that a typo cannot hide a metric from the check.

type matcher struct{ label, op, value string }

type selector struct {
	metric   string
	matchers []matcher
}

type query struct {
	selectors []selector
	grouping  []string // labels in by, without, on, ignoring, group_left and group_right
}

type token struct {
	kind string // "ident", "string", "number", "var", "punct"
	text string
}

// functions are the PromQL functions and aggregations the check accepts.
var functions = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`sum avg min max count group stddev stdvar topk bottomk quantile count_values
		rate irate increase delta idelta deriv predict_linear resets changes histogram_quantile histogram_count
		histogram_sum histogram_fraction absent absent_over_time present_over_time avg_over_time min_over_time
		max_over_time sum_over_time count_over_time last_over_time quantile_over_time clamp clamp_min clamp_max abs
		ceil floor round sqrt exp ln log2 log10 scalar vector time timestamp sort sort_desc`) {
		functions[f] = true
	}
}

var keywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true,
	"without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}

func lex(expr string) ([]token, error) {
	var out []token
	rs := []rune(expr)
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case unicode.IsSpace(r):
			i++
		case r == '#':
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
		case r == '"' || r == '\'' || r == '`':
			j := i + 1
			var b strings.Builder
			for ; j < len(rs) && rs[j] != r; j++ {
				if rs[j] == '\\' && r != '`' && j+1 < len(rs) {
					j++
				}
				b.WriteRune(rs[j])
			}
			if j >= len(rs) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			out = append(out, token{"string", b.String()})
			i = j + 1
		case unicode.IsLetter(r) || r == '_' || r == ':':
			j := i
			for j < len(rs) && (validNameChar(rs[j]) || rs[j] == '_') {
				j++
			}
			out = append(out, token{"ident", string(rs[i:j])})
			i = j
		case unicode.IsDigit(r) || (r == '.' && i+1 < len(rs) && unicode.IsDigit(rs[i+1])):
			j := i
			for j < len(rs) && (unicode.IsDigit(rs[j]) || unicode.IsLetter(rs[j]) || rs[j] == '.' ||
				((rs[j] == '+' || rs[j] == '-') && (rs[j-1] == 'e' || rs[j-1] == 'E'))) {
				j++
			}
			out = append(out, token{"number", string(rs[i:j])})
			i = j
		case r == '$':
			j := i + 1
			braced := j < len(rs) && rs[j] == '{'
			if braced {
				j++
			}
			for j < len(rs) && (validNameChar(rs[j]) || rs[j] == '_') {
				j++
			}
			if braced {
				if j >= len(rs) || rs[j] != '}' {
					return nil, fmt.Errorf("unterminated ${ at %d", i)
				}
				j++
			}
			out = append(out, token{"var", string(rs[i:j])})
			i = j
		default:
			two := ""
			if i+1 < len(rs) {
				two = string(rs[i : i+2])
			}
			switch two {
			case "==", "!=", "=~", "!~", ">=", "<=":
				out = append(out, token{"punct", two})
				i += 2
				continue
			}
			if !strings.ContainsRune("(){}[],=<>+-*/%^@:", r) {
				return nil, fmt.Errorf("unexpected %q at %d", r, i)
			}
			out = append(out, token{"punct", string(r)})
			i++
		}
	}
	return out, nil
}

// parsePromQL reads expr; see the comment at the top of this file for what it checks.
func parsePromQL(expr string) (query, error) {
	toks, err := lex(expr)
	if err != nil {
		return query{}, err
	}
	var q query
	depth := 0
	at := func(i int, kind, text string) bool {
		return i < len(toks) && toks[i].kind == kind && (text == "" || toks[i].text == text)
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.kind == "ident" && keywords[strings.ToLower(t.text)]:
			switch strings.ToLower(t.text) {
			case "by", "without", "on", "ignoring", "group_left", "group_right":
				if !at(i+1, "punct", "(") {
					if t.text == "group_left" || t.text == "group_right" {
						continue
					}
					return query{}, fmt.Errorf("%s without a label list", t.text)
				}
				i += 2
				for ; !at(i, "punct", ")"); i++ {
					switch {
					case at(i, "ident", ""):
						q.grouping = append(q.grouping, toks[i].text)
					case at(i, "punct", ","):
					default:
						return query{}, fmt.Errorf("unexpected %q in the label list of %s", tokText(toks, i), t.text)
					}
				}
			case "offset":
				if !at(i+1, "number", "") {
					return query{}, errors.New("offset without a duration")
				}
				i++
			}
		case t.kind == "ident" && (at(i+1, "punct", "(") || at(i+1, "ident", "by") || at(i+1, "ident", "without")):
			if !functions[t.text] {
				return query{}, fmt.Errorf("unknown function %s", t.text)
			}
		case t.kind == "ident":
			s := selector{metric: t.text}
			if at(i+1, "punct", "{") {
				i += 2
				for ; !at(i, "punct", "}"); i++ {
					if at(i, "punct", ",") {
						continue
					}
					if !at(i, "ident", "") || i+2 >= len(toks) || toks[i+1].kind != "punct" || !at(i+2, "string", "") {
						return query{}, fmt.Errorf("malformed matcher in the selector of %s", t.text)
					}
					op := toks[i+1].text
					if op != "=" && op != "!=" && op != "=~" && op != "!~" {
						return query{}, fmt.Errorf("unknown matcher operator %q", op)
					}
					s.matchers = append(s.matchers, matcher{toks[i].text, op, toks[i+2].text})
					i += 2
				}
			}
			q.selectors = append(q.selectors, s)
		case t.kind == "punct" && t.text == "{":
			return query{}, errors.New("a selector without a metric name")
		case t.kind == "punct" && t.text == "[":
			for i++; !at(i, "punct", "]"); i++ {
				if i >= len(toks) || !(toks[i].kind == "number" || toks[i].kind == "var" || at(i, "punct", ":")) {
					return query{}, fmt.Errorf("unexpected %q in a range", tokText(toks, i))
				}
			}
		case t.kind == "punct" && t.text == "(":
			depth++
		case t.kind == "punct" && t.text == ")":
			if depth--; depth < 0 {
				return query{}, errors.New("unbalanced )")
			}
		case t.kind == "punct" && (t.text == "}" || t.text == "]" || t.text == "="):
			return query{}, fmt.Errorf("unexpected %q", t.text)
		case t.kind == "var":
			return query{}, fmt.Errorf("Grafana variable %s outside a string or a range", t.text)
		}
	}
	if depth != 0 {
		return query{}, errors.New("unbalanced (")
	}
	return q, nil
}

func tokText(toks []token, i int) string {
	if i >= len(toks) {
		return "end of expression"
	}
	return toks[i].text
}
