package main

import (
	"context"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The README's table of choreo up's flags (in "Two commands") lists every
// flag `choreo up -h` shows, and no flag up does not have: a flag added
// without a row, or a row left behind by a removed flag, fails here.
func TestREADMEListsEveryUpFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section, ok := markdownSection(string(readme), "## Two commands")
	if !ok {
		t.Fatal(`README.md has no "## Two commands" section`)
	}
	flagName := regexp.MustCompile("`--([a-z0-9-]+)")
	var documented []string
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "| `--") || len(cells) < 2 {
			continue
		}
		for _, m := range flagName.FindAllStringSubmatch(cells[1], -1) {
			documented = append(documented, m[1])
		}
	}

	var help strings.Builder
	if code := run(context.Background(), []string{"up", "-h"}, io.Discard, &help, func(string) string { return "" }); code != 0 {
		t.Fatalf("choreo up -h: exit %d", code)
	}
	var shown []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(help.String(), -1) {
		shown = append(shown, m[1])
	}
	if len(shown) == 0 {
		t.Fatalf("choreo up -h lists no flags:\n%s", help.String())
	}
	for _, f := range shown {
		if !slices.Contains(documented, f) {
			t.Errorf("choreo up -h shows --%s; the README's flag table has no row for it", f)
		}
	}
	for _, f := range documented {
		if !slices.Contains(shown, f) {
			t.Errorf("the README's flag table lists --%s; choreo up -h does not show it", f)
		}
	}
}

// markdownSection returns the text under heading up to the next heading
// of the same level.
func markdownSection(doc, heading string) (string, bool) {
	_, rest, ok := strings.Cut(doc, "\n"+heading+"\n")
	if !ok {
		return "", false
	}
	level := heading[:strings.Index(heading, " ")+1]
	if i := strings.Index(rest, "\n"+level); i >= 0 {
		rest = rest[:i]
	}
	return rest, true
}
