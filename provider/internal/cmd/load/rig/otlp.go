package rig

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
)

// OTLPSink is a collector that accepts OTLP/HTTP exports and discards them, so that the backend's telemetry can be
// measured switched on without a real collector.
type OTLPSink struct {
	URL     string
	Exports atomic.Int64 // requests received
	srv     *httptest.Server
}

// StartOTLPSink starts a sink on loopback; give its URL to the backend as OTEL_EXPORTER_OTLP_ENDPOINT.
func StartOTLPSink() *OTLPSink {
	s := &OTLPSink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.Exports.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK) // an empty body is an empty Export*ServiceResponse
	}))
	s.URL = s.srv.URL
	return s
}

// Close stops the sink.
func (s *OTLPSink) Close() { s.srv.Close() }
