package settings

import (
	"fmt"
	"strings"
)

// MarkdownTable renders Specs as the settings table of docs/configuration.md, so the docs cannot drift from the code.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| Setting | Default | Meaning |\n|---|---|---|\n")
	for _, s := range Specs() {
		def := "-"
		if s.Default != "" {
			def = "`" + s.Default + "`"
		}
		help := s.Help
		switch s.Required {
		case "":
		case "yes":
			help += " **(required)**"
		default:
			help += " **(required " + s.Required + ")**"
		}
		if s.Secret {
			help += " *(secret)*"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", s.Name, def, strings.ReplaceAll(help, "|", `\|`))
	}
	return b.String()
}

// Markers delimit the generated table in docs/configuration.md.
const (
	TableStart = "<!-- settings-table:start -->"
	TableEnd   = "<!-- settings-table:end -->"
)

// ReplaceTable returns doc with the text between the markers replaced by MarkdownTable.
func ReplaceTable(doc string) (string, error) {
	i := strings.Index(doc, TableStart)
	j := strings.Index(doc, TableEnd)
	if i < 0 || j < i {
		return "", fmt.Errorf("markers %s and %s not found in order", TableStart, TableEnd)
	}
	return doc[:i+len(TableStart)] + "\n" + MarkdownTable() + doc[j:], nil
}
