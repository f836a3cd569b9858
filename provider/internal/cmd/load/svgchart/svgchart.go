// Package svgchart draws small line and bar charts as standalone SVG, with nothing but the standard library, for the
// load tool's results in the performance docs.
package svgchart

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// Kind is how a chart draws its series.
type Kind int

const (
	Lines Kind = iota // one polyline with a marker per category, for each series
	Bars              // one bar per series in each category's group
)

// Series is one named line or set of bars: a value for each of the chart's categories.
type Series struct {
	Name   string
	Values []float64
}

// Chart is a chart over categories along the x axis, with a y axis from 0.
type Chart struct {
	Kind           Kind
	Title          string
	Subtitle       string // a second, smaller line under the title; optional
	XLabel, YLabel string
	Categories     []string
	Series         []Series
}

// Layout, in SVG user units (pixels).
const (
	width      = 900
	height     = 440
	plotLeft   = 80
	plotRight  = 580 // the legend is to the right of the plot
	plotTop    = 70
	plotBottom = 370
	legendLeft = plotRight + 20
)

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}

func (c Chart) validate() error {
	if c.Title == "" || c.XLabel == "" || c.YLabel == "" {
		return errors.New("svgchart: a chart needs a title and both axis labels")
	}
	if len(c.Categories) == 0 || len(c.Series) == 0 {
		return errors.New("svgchart: a chart needs categories and series")
	}
	if len(c.Series) > len(palette) {
		return fmt.Errorf("svgchart: at most %d series", len(palette))
	}
	for _, s := range c.Series {
		if len(s.Values) != len(c.Categories) {
			return fmt.Errorf("svgchart: series %q has %d values for %d categories", s.Name, len(s.Values), len(c.Categories))
		}
		for _, v := range s.Values {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return fmt.Errorf("svgchart: series %q has the value %v; values must be finite and not negative", s.Name, v)
			}
		}
	}
	return nil
}

// WriteSVG writes the chart as a standalone SVG document. Each series is a <g class="series" data-series="name">
// holding one marker (circle or rect) per category, each with a <title> that names its exact value.
func (c Chart) WriteSVG(w io.Writer) error {
	if err := c.validate(); err != nil {
		return err
	}
	top, step := yScale(c.max())
	y := func(v float64) float64 { return plotBottom - v/top*(plotBottom-plotTop) }
	slot := float64(plotRight-plotLeft) / float64(len(c.Categories))
	x := func(i int) float64 { return plotLeft + (float64(i)+0.5)*slot }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, "<title>%s</title>\n", esc(c.Title))
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text class="title" x="%d" y="28" font-size="16" font-weight="bold">%s</text>`+"\n", plotLeft-60, esc(c.Title))
	if c.Subtitle != "" {
		fmt.Fprintf(&b, `<text class="subtitle" x="%d" y="48" fill="#555555">%s</text>`+"\n", plotLeft-60, esc(c.Subtitle))
	}

	b.WriteString(`<g class="axes" stroke="#333333">` + "\n")
	decimals := max(0, int(-math.Floor(math.Log10(step))))
	for v := 0.0; v <= top+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#dddddd"/>`+"\n", plotLeft, y(v), plotRight, y(v))
		fmt.Fprintf(&b, `<text class="tick y" x="%d" y="%.1f" text-anchor="end" stroke="none">%s</text>`+"\n",
			plotLeft-6, y(v)+4, fmt.Sprintf("%.*f", decimals, v))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n", plotLeft, plotTop, plotLeft, plotBottom)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n", plotLeft, plotBottom, plotRight, plotBottom)
	for i, cat := range c.Categories {
		fmt.Fprintf(&b, `<text class="tick x" x="%.1f" y="%d" text-anchor="middle" stroke="none">%s</text>`+"\n",
			x(i), plotBottom+18, esc(cat))
	}
	b.WriteString("</g>\n")
	fmt.Fprintf(&b, `<text class="axis-label x" x="%d" y="%d" text-anchor="middle">%s</text>`+"\n",
		(plotLeft+plotRight)/2, plotBottom+44, esc(c.XLabel))
	fmt.Fprintf(&b, `<text class="axis-label y" x="%d" y="%d" text-anchor="middle" transform="rotate(-90 %d %d)">%s</text>`+"\n",
		20, (plotTop+plotBottom)/2, 20, (plotTop+plotBottom)/2, esc(c.YLabel))

	barW := slot * 0.8 / float64(len(c.Series))
	for si, s := range c.Series {
		color := palette[si]
		fmt.Fprintf(&b, `<g class="series" data-series="%s" fill="%s" stroke="%s">`+"\n", esc(s.Name), color, color)
		if c.Kind == Lines {
			pts := make([]string, len(s.Values))
			for i, v := range s.Values {
				pts[i] = fmt.Sprintf("%.1f,%.1f", x(i), y(v))
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke-width="2"/>`+"\n", strings.Join(pts, " "))
		}
		for i, v := range s.Values {
			label := fmt.Sprintf("%s, %s: %s", s.Name, c.Categories[i], number(v))
			switch c.Kind {
			case Lines:
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4"><title>%s</title></circle>`+"\n", x(i), y(v), esc(label))
			case Bars:
				left := x(i) - slot*0.4 + float64(si)*barW
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" stroke="none"><title>%s</title></rect>`+"\n",
					left, y(v), barW-2, plotBottom-y(v), esc(label))
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" fill="#333333" stroke="none">%s</text>`+"\n",
					left+(barW-2)/2, y(v)-3, number(v))
			}
		}
		b.WriteString("</g>\n")
	}

	b.WriteString(`<g class="legend">` + "\n")
	for si, s := range c.Series {
		ly := plotTop + 10 + si*22
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="14" fill="%s"/>`+"\n", legendLeft, ly-11, palette[si])
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", legendLeft+20, ly, esc(s.Name))
	}
	b.WriteString("</g>\n</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

func (c Chart) max() float64 {
	m := 0.0
	for _, s := range c.Series {
		for _, v := range s.Values {
			m = max(m, v)
		}
	}
	return m
}

// yScale picks the top of the y axis and a tick step of 1, 2 or 5 times a power of ten, for about five ticks.
func yScale(maxValue float64) (top, step float64) {
	if maxValue <= 0 {
		return 1, 0.2
	}
	raw := maxValue / 5
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * pow
	for _, m := range []float64{1, 2, 5} {
		if m*pow >= raw {
			step = m * pow
			break
		}
	}
	return math.Ceil(maxValue/step) * step, step
}

// number formats a value with about three significant digits.
func number(v float64) string {
	switch {
	case v == math.Trunc(v) || v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
