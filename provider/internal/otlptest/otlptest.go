// Package otlptest is an in-process OTLP/HTTP collector for tests: it accepts traces and metrics (protobuf or
// JSON, optionally gzip-compressed) on 127.0.0.1 and keeps them in flattened, easy-to-assert form.
package otlptest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxBody bounds one request; real exporters send far less.
const maxBody = 32 << 20

// Span is one received span, flattened.
type Span struct {
	Name                       string
	Scope                      string // instrumentation scope name
	TraceID, SpanID            string // lowercase hex
	ParentSpanID               string // "" for a root span
	Kind                       string // "server", "client", "internal", "producer", "consumer" or "unspecified"
	Attributes                 map[string]string
	Events                     []Event
	ResourceAttributes         map[string]string
	Status                     Status
	StartUnixNano, EndUnixNano uint64
}

// Event is a span event (e.g. "exception") with its attributes.
type Event struct {
	Name       string
	Attributes map[string]string
}

// Status is a span's status: Code is "unset", "ok" or "error".
type Status struct {
	Code, Message string
}

// Metric is one received metric from one export, with its data points.
type Metric struct {
	Name, Unit, Description string
	Kind                    string // "sum", "gauge", "histogram", "exponential_histogram" or "summary"
	Monotonic               bool   // a sum that only grows (a counter); Prometheus names it with _total
	Points                  []Point
	ResourceAttributes      map[string]string
}

// Point is a data point. Value is the sum or gauge value (the sum of observations for histograms); Count is the
// number of observations for histograms.
type Point struct {
	Attributes map[string]string
	Value      float64
	Count      uint64
}

// Receiver is the fake collector.
type Receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	spans    []Span
	metrics  []Metric
	text     []string
	requests map[string]int
	failWith int
	changed  chan struct{} // closed and replaced whenever something arrives
}

// NewReceiver starts a receiver on 127.0.0.1; it is closed when the test ends.
func NewReceiver(tb testing.TB) *Receiver {
	tb.Helper()
	r := &Receiver{requests: map[string]int{}, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.handleTraces)
	mux.HandleFunc("POST /v1/metrics", r.handleMetrics)
	mux.HandleFunc("POST /v1/logs", func(w http.ResponseWriter, _ *http.Request) { r.count("/v1/logs") })
	r.srv = httptest.NewServer(mux)
	tb.Cleanup(r.Close)
	return r
}

// URL is the base URL, e.g. http://127.0.0.1:1234, as OTEL_EXPORTER_OTLP_ENDPOINT or observability_endpoint.
func (r *Receiver) URL() string { return r.srv.URL }

// TracesURL is the full traces endpoint.
func (r *Receiver) TracesURL() string { return r.srv.URL + "/v1/traces" }

// MetricsURL is the full metrics endpoint.
func (r *Receiver) MetricsURL() string { return r.srv.URL + "/v1/metrics" }

// Close stops the receiver; it may be called more than once.
func (r *Receiver) Close() { r.srv.Close() }

// FailWith makes every following export fail with the given HTTP status (0 accepts again), to exercise exporters'
// error handling. Failed exports are counted but their content is not kept.
func (r *Receiver) FailWith(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failWith = status
}

// Requests counts export requests received on path ("/v1/traces", "/v1/metrics"), failed ones included.
func (r *Receiver) Requests(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests[path]
}

// Spans returns a copy of every span received so far, in arrival order.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

// SpansNamed returns the received spans called name.
func (r *Receiver) SpansNamed(name string) []Span {
	var out []Span
	for _, s := range r.Spans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// Metrics returns every metric received so far, one entry per metric per export.
func (r *Receiver) Metrics() []Metric {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.metrics)
}

// MetricNames returns the sorted, distinct names of the metrics received so far.
func (r *Receiver) MetricNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for _, m := range r.metrics {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// AllText joins every string and bytes value of every request received (names, attribute keys and values,
// event attributes, status messages, resource and scope data, metric point attributes, ...), so that a test can
// assert that a secret never left the process.
func (r *Receiver) AllText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.text, "\n")
}

// WaitForSpans waits until at least n spans have arrived.
func (r *Receiver) WaitForSpans(ctx context.Context, n int) error {
	return r.waitFor(ctx, func() bool { return len(r.spans) >= n }, func() string {
		return fmt.Sprintf("%d of %d spans", len(r.spans), n)
	})
}

// WaitForMetric waits until a metric called name has arrived.
func (r *Receiver) WaitForMetric(ctx context.Context, name string) error {
	return r.waitFor(ctx, func() bool {
		return slices.ContainsFunc(r.metrics, func(m Metric) bool { return m.Name == name })
	}, func() string { return fmt.Sprintf("no metric %q among %d received", name, len(r.metrics)) })
}

// waitFor polls cond (called with r.mu held) each time something arrives.
func (r *Receiver) waitFor(ctx context.Context, cond func() bool, describe func() string) error {
	for {
		r.mu.Lock()
		if cond() {
			r.mu.Unlock()
			return nil
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			r.mu.Lock()
			defer r.mu.Unlock()
			return fmt.Errorf("otlptest: %s: %w", describe(), ctx.Err())
		}
	}
}

func (r *Receiver) count(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests[path]++
	return r.failWith
}

func (r *Receiver) handleTraces(w http.ResponseWriter, req *http.Request) {
	var in coltracepb.ExportTraceServiceRequest
	if !r.decode(w, req, &in) {
		return
	}
	var spans []Span
	for _, rs := range in.GetResourceSpans() {
		res := attrMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				spans = append(spans, flattenSpan(s, ss.GetScope().GetName(), res))
			}
		}
	}
	r.store(&in, spans, nil)
	r.reply(w, req, &coltracepb.ExportTraceServiceResponse{})
}

func (r *Receiver) handleMetrics(w http.ResponseWriter, req *http.Request) {
	var in colmetricpb.ExportMetricsServiceRequest
	if !r.decode(w, req, &in) {
		return
	}
	var metrics []Metric
	for _, rm := range in.GetResourceMetrics() {
		res := attrMap(rm.GetResource().GetAttributes())
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				metrics = append(metrics, flattenMetric(m, res))
			}
		}
	}
	r.store(&in, nil, metrics)
	r.reply(w, req, &colmetricpb.ExportMetricsServiceResponse{})
}

// decode reads one export request; on failure (or when told to fail) it answers and returns false.
func (r *Receiver) decode(w http.ResponseWriter, req *http.Request, into proto.Message) bool {
	if status := r.count(req.URL.Path); status != 0 {
		http.Error(w, "otlptest: failing on request", status)
		return false
	}
	var body io.Reader = http.MaxBytesReader(w, req.Body, maxBody)
	if strings.EqualFold(req.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, "bad gzip body: "+err.Error(), http.StatusBadRequest)
			return false
		}
		defer func() { _ = zr.Close() }()
		body = io.LimitReader(zr, maxBody)
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return false
	}
	if isJSON(req) {
		if raw, err = hexIDsToBase64(raw); err == nil {
			err = protojson.Unmarshal(raw, into)
		}
	} else {
		err = proto.Unmarshal(raw, into)
	}
	if err != nil {
		http.Error(w, "decode body: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func (r *Receiver) reply(w http.ResponseWriter, req *http.Request, resp proto.Message) {
	var (
		out []byte
		err error
	)
	if isJSON(req) {
		w.Header().Set("Content-Type", "application/json")
		out, err = protojson.Marshal(resp)
	} else {
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, err = proto.Marshal(resp)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(out)
}

// hexIDsToBase64 adapts OTLP/JSON, which writes trace and span ids in hex, to protojson, which expects base64
// for bytes fields.
func hexIDsToBase64(raw []byte) ([]byte, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return raw, nil
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep 64-bit timestamps exact
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && (k == "traceId" || k == "spanId" || k == "parentSpanId") {
					if b, err := hex.DecodeString(s); err == nil {
						x[k] = base64.StdEncoding.EncodeToString(b)
					}
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(doc)
	return json.Marshal(doc)
}

func isJSON(req *http.Request) bool {
	return strings.HasPrefix(req.Header.Get("Content-Type"), "application/json")
}

func (r *Receiver) store(msg proto.Message, spans []Span, metrics []Metric) {
	var text []string
	collectText(msg.ProtoReflect(), &text)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = append(r.spans, spans...)
	r.metrics = append(r.metrics, metrics...)
	r.text = append(r.text, text...)
	close(r.changed)
	r.changed = make(chan struct{})
}

// collectText appends every string and bytes field of m, recursively; a generic walk cannot forget a field.
func collectText(m protoreflect.Message, out *[]string) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				collectValue(fd, l.Get(i), out)
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				*out = append(*out, k.String())
				collectValue(fd.MapValue(), mv, out)
				return true
			})
		default:
			collectValue(fd, v, out)
		}
		return true
	})
}

func collectValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, out *[]string) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		*out = append(*out, v.String())
	case protoreflect.BytesKind:
		*out = append(*out, string(v.Bytes()))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		collectText(v.Message(), out)
	}
}

func flattenSpan(s *tracepb.Span, scope string, res map[string]string) Span {
	out := Span{
		Name:               s.GetName(),
		Scope:              scope,
		TraceID:            hex.EncodeToString(s.GetTraceId()),
		SpanID:             hex.EncodeToString(s.GetSpanId()),
		ParentSpanID:       hex.EncodeToString(s.GetParentSpanId()),
		Kind:               strings.ToLower(strings.TrimPrefix(s.GetKind().String(), "SPAN_KIND_")),
		Attributes:         attrMap(s.GetAttributes()),
		ResourceAttributes: res,
		Status: Status{
			Code:    strings.ToLower(strings.TrimPrefix(s.GetStatus().GetCode().String(), "STATUS_CODE_")),
			Message: s.GetStatus().GetMessage(),
		},
		StartUnixNano: s.GetStartTimeUnixNano(),
		EndUnixNano:   s.GetEndTimeUnixNano(),
	}
	for _, e := range s.GetEvents() {
		out.Events = append(out.Events, Event{Name: e.GetName(), Attributes: attrMap(e.GetAttributes())})
	}
	return out
}

func flattenMetric(m *metricpb.Metric, res map[string]string) Metric {
	out := Metric{Name: m.GetName(), Unit: m.GetUnit(), Description: m.GetDescription(), ResourceAttributes: res}
	number := func(p *metricpb.NumberDataPoint) Point {
		v := p.GetAsDouble()
		if _, ok := p.GetValue().(*metricpb.NumberDataPoint_AsInt); ok {
			v = float64(p.GetAsInt())
		}
		return Point{Attributes: attrMap(p.GetAttributes()), Value: v}
	}
	switch d := m.GetData().(type) {
	case *metricpb.Metric_Sum:
		out.Kind, out.Monotonic = "sum", d.Sum.GetIsMonotonic()
		for _, p := range d.Sum.GetDataPoints() {
			out.Points = append(out.Points, number(p))
		}
	case *metricpb.Metric_Gauge:
		out.Kind = "gauge"
		for _, p := range d.Gauge.GetDataPoints() {
			out.Points = append(out.Points, number(p))
		}
	case *metricpb.Metric_Histogram:
		out.Kind = "histogram"
		for _, p := range d.Histogram.GetDataPoints() {
			out.Points = append(out.Points, Point{Attributes: attrMap(p.GetAttributes()), Value: p.GetSum(), Count: p.GetCount()})
		}
	case *metricpb.Metric_ExponentialHistogram:
		out.Kind = "exponential_histogram"
		for _, p := range d.ExponentialHistogram.GetDataPoints() {
			out.Points = append(out.Points, Point{Attributes: attrMap(p.GetAttributes()), Value: p.GetSum(), Count: p.GetCount()})
		}
	case *metricpb.Metric_Summary:
		out.Kind = "summary"
		for _, p := range d.Summary.GetDataPoints() {
			out.Points = append(out.Points, Point{Attributes: attrMap(p.GetAttributes()), Value: p.GetSum(), Count: p.GetCount()})
		}
	}
	return out
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[kv.GetKey()] = anyString(kv.GetValue())
	}
	return out
}

// anyString renders an attribute value; arrays become "[a,b]" and maps "{k=v,...}".
func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return string(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		var b bytes.Buffer
		b.WriteByte('[')
		for i, e := range x.ArrayValue.GetValues() {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(anyString(e))
		}
		b.WriteByte(']')
		return b.String()
	case *commonpb.AnyValue_KvlistValue:
		var parts []string
		for _, kv := range x.KvlistValue.GetValues() {
			parts = append(parts, kv.GetKey()+"="+anyString(kv.GetValue()))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	return ""
}
