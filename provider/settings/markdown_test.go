package settings

import (
	"os"
	"strings"
	"testing"
)

// configurationDoc holds the generated settings table; `make docs` regenerates it.
const configurationDoc = "../../docs/configuration.md"

// TestConfigurationDocListsEverySetting keeps the table in docs/configuration.md equal to the code's.
func TestConfigurationDocListsEverySetting(t *testing.T) {
	raw, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	want, err := ReplaceTable(doc)
	if err != nil {
		t.Fatal(err)
	}
	if want != doc {
		t.Fatal("docs/configuration.md's settings table differs from settings.Specs(): run `make docs`")
	}
	for _, s := range Specs() {
		if !strings.Contains(doc, "`"+s.Name+"`") {
			t.Errorf("docs/configuration.md does not mention %s", s.Name)
		}
	}
}
