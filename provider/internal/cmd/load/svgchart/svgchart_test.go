package svgchart

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
)

// node is a parsed SVG element.
type node struct {
	name     string
	attrs    map[string]string
	text     string
	children []*node
}

// parse decodes the whole document, failing on anything that is not well-formed XML.
func parse(t *testing.T, doc []byte) *node {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(doc))
	dec.Strict = true
	var stack []*node
	var root *node
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			n := &node{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				n.attrs[a.Name.Local] = a.Value
			}
			if tok.Name.Local == "svg" && tok.Name.Space != "http://www.w3.org/2000/svg" {
				t.Errorf("the svg element is in namespace %q", tok.Name.Space)
			}
			if len(stack) == 0 {
				if root != nil {
					t.Fatal("more than one root element")
				}
				root = n
			} else {
				top := stack[len(stack)-1]
				top.children = append(top.children, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(tok)
			}
		}
	}
	if root == nil || root.name != "svg" {
		t.Fatalf("root element is not svg:\n%s", doc)
	}
	return root
}

// find returns the elements under n (n included) whose class list holds every one of classes.
func (n *node) find(classes ...string) []*node {
	var out []*node
	have := strings.Fields(n.attrs["class"])
	match := true
	for _, c := range classes {
		match = match && slices.Contains(have, c)
	}
	if match {
		out = append(out, n)
	}
	for _, c := range n.children {
		out = append(out, c.find(classes...)...)
	}
	return out
}

func texts(nodes []*node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.text)
	}
	return out
}

func render(t *testing.T, c Chart) *node {
	t.Helper()
	var b bytes.Buffer
	if err := c.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	return parse(t, b.Bytes())
}

func TestLinesAndBars(t *testing.T) {
	for _, tt := range []struct {
		kind   Kind
		marker string
	}{{Lines, "circle"}, {Bars, "rect"}} {
		c := Chart{
			Kind: tt.kind, Title: "Throughput <by> clients", Subtitle: "go & NATS", XLabel: "concurrent clients",
			YLabel: "gets per second", Categories: []string{"1", "8", "64"},
			Series: []Series{
				{Name: "backend", Values: []float64{1200, 5400, 6100.5}},
				{Name: "baseline (protocol only)", Values: []float64{1300, 6000, 0}},
			},
		}
		svg := render(t, c)
		if svg.attrs["viewBox"] == "" || svg.attrs["width"] == "" {
			t.Errorf("svg attributes %v: no size", svg.attrs)
		}
		series := svg.find("series")
		if len(series) != 2 || series[0].attrs["data-series"] != "backend" || series[1].attrs["data-series"] != "baseline (protocol only)" {
			t.Fatalf("series groups: %d", len(series))
		}
		for i, s := range series {
			var marks []string
			for _, m := range s.children {
				if m.name == tt.marker {
					marks = append(marks, m.children[0].text)
				}
			}
			if len(marks) != 3 {
				t.Errorf("series %d: %d %s markers, want one per category", i, len(marks), tt.marker)
			}
			if tt.kind == Lines && s.children[0].name != "polyline" {
				t.Errorf("series %d: no line", i)
			}
			if i == 0 && (len(marks) == 0 || marks[2] != "backend, 64: 6100") {
				t.Errorf("marker titles %q", marks)
			}
		}
		if got := texts(svg.find("axis-label", "x")); !slices.Equal(got, []string{"concurrent clients"}) {
			t.Errorf("x axis label %q", got)
		}
		if got := texts(svg.find("axis-label", "y")); !slices.Equal(got, []string{"gets per second"}) {
			t.Errorf("y axis label %q", got)
		}
		if got := texts(svg.find("tick", "x")); !slices.Equal(got, []string{"1", "8", "64"}) {
			t.Errorf("x ticks %q", got)
		}
		ticks := texts(svg.find("tick", "y"))
		if len(ticks) < 3 || ticks[0] != "0" || ticks[len(ticks)-1] != "8000" {
			t.Errorf("y ticks %q: want 0 to 8000 (the maximum rounded up to a step)", ticks)
		}
		if got := texts(svg.find("title")); !slices.Equal(got, []string{"Throughput <by> clients"}) {
			t.Errorf("title %q", got)
		}
		legend := svg.find("legend")
		if len(legend) != 1 || len(legend[0].children) != 4 {
			t.Errorf("legend: want a swatch and a name for each series")
		}
	}
}

func TestYScale(t *testing.T) {
	for _, tt := range []struct{ max, top, step float64 }{
		{0, 1, 0.2}, {1, 1, 0.2}, {6100, 8000, 2000}, {138, 150, 50}, {0.7, 0.8, 0.2}, {10, 10, 2}, {12.5, 15, 5},
	} {
		top, step := yScale(tt.max)
		if math.Abs(top-tt.top) > 1e-9 || math.Abs(step-tt.step) > 1e-9 {
			t.Errorf("yScale(%v) = %v, %v; want %v, %v", tt.max, top, step, tt.top, tt.step)
		}
	}
}

func TestRefusesWhatItCannotDraw(t *testing.T) {
	good := Chart{Title: "t", XLabel: "x", YLabel: "y", Categories: []string{"a", "b"}, Series: []Series{{Name: "s", Values: []float64{1, 2}}}}
	for name, mutate := range map[string]func(*Chart){
		"no axis label":   func(c *Chart) { c.YLabel = "" },
		"no series":       func(c *Chart) { c.Series = nil },
		"missing value":   func(c *Chart) { c.Series[0].Values = []float64{1} },
		"NaN":             func(c *Chart) { c.Series[0].Values = []float64{1, math.NaN()} },
		"negative":        func(c *Chart) { c.Series[0].Values = []float64{-1, 2} },
		"too many series": func(c *Chart) { c.Series = slices.Repeat(c.Series, len(palette)+1) },
		"no categories":   func(c *Chart) { c.Categories = nil },
	} {
		c := good
		c.Series = slices.Clone(good.Series)
		mutate(&c)
		if err := c.WriteSVG(io.Discard); err == nil {
			t.Errorf("%s: drawn", name)
		}
	}
	if err := good.WriteSVG(io.Discard); err != nil {
		t.Fatal(err)
	}
}
