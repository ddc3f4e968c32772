package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The first `go tool task up` downloads every module the task runner's
// build needs before choreo can say anything (README, "Two commands": 56
// modules with task v3.45.5, 123 with v3.54, whose remote Taskfiles bring
// the AWS and Google Cloud SDKs). An upgrade of the task runner that
// brings them back fails here, so that the figure in the README is
// measured again before it changes.
func TestTaskRunnerBuildStaysSmall(t *testing.T) {
	const task = "github.com/go-task/task/v3/cmd/task"
	// Standard output only: with an empty module cache, go list also
	// says "go: downloading …" on standard error, which is not a module.
	cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", task)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", task, err, stderr.String())
	}
	modules := map[string]bool{}
	for _, m := range strings.Fields(string(out)) {
		modules[m] = true
	}
	for m := range modules {
		for _, heavy := range []string{"github.com/aws/", "cloud.google.com/", "google.golang.org/api", "github.com/hashicorp/go-getter"} {
			if strings.HasPrefix(m, heavy) {
				t.Errorf("the task runner's build needs %s: a first go tool task up downloads a cloud SDK before choreo starts", m)
			}
		}
	}
	const most = 60
	if len(modules) > most {
		t.Errorf("the task runner's build needs %d modules, more than %d: measure the first go tool task up again (README, Two commands)", len(modules), most)
	}
}
