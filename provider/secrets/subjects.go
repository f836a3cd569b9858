package secrets

// Operations a backend answers, the last token of its subjects.
const (
	OpGet        = "get"
	OpServerXKey = "server_xkey"
)

// Subjects names one backend's NATS subjects, {prefix}.{version}.{backend}.{operation}: the one place they are
// spelled, for the server, the host-side client and the operator tools.
type Subjects struct{ base string }

// NewSubjects returns the subjects of backend under prefix and API version; "" means DefaultPrefix and
// DefaultAPIVersion.
func NewSubjects(prefix, version, backend string) Subjects {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if version == "" {
		version = DefaultAPIVersion
	}
	return Subjects{base: prefix + "." + version + "." + backend}
}

// Get is the subject hosts send secret requests to.
func (s Subjects) Get() string { return s.base + "." + OpGet }

// ServerXKey is the subject hosts ask the backend's public xkey on.
func (s Subjects) ServerXKey() string { return s.base + "." + OpServerXKey }

// All matches every operation of the backend; the server subscribes to it.
func (s Subjects) All() string { return s.base + ".>" }
