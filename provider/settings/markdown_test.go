package settings

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEListsEverySetting keeps the README's table equal to the code's; `make docs` regenerates it.
func TestREADMEListsEverySetting(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	want, err := ReplaceTable(doc)
	if err != nil {
		t.Fatal(err)
	}
	if want != doc {
		t.Fatal("README.md's settings table differs from settings.Specs(): run `make docs`")
	}
	for _, s := range Specs() {
		if !strings.Contains(doc, "`"+s.Name+"`") {
			t.Errorf("README.md does not mention %s", s.Name)
		}
	}
}
