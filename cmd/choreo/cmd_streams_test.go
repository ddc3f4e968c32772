package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/natsauth"
	"github.com/choreo-dev/choreo/events/natstest"
	"github.com/choreo-dev/choreo/events/streams"
)

// streamPlans runs a choreo streams command with --json and decodes its
// plans, one per declared stream.
func streamPlans(t *testing.T, args ...string) map[string]streamPlanJSON {
	t.Helper()
	stdout, stderr, code := runTool(t, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("choreo %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	plans := map[string]streamPlanJSON{}
	dec := json.NewDecoder(strings.NewReader(stdout))
	for dec.More() {
		var p streamPlanJSON
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("choreo %s: %v\n%s", strings.Join(args, " "), err, stdout)
		}
		plans[p.Stream] = p
	}
	if len(plans) != len(catalog.Streams) {
		t.Fatalf("choreo %s: %d plans, want one per stream (%d):\n%s", strings.Join(args, " "), len(plans), len(catalog.Streams), stdout)
	}
	return plans
}

// waitReplicas waits until every stream of choreo has n current replicas.
func waitReplicas(t *testing.T, ctx context.Context, js jetstream.JetStream, n int) {
	t.Helper()
	for _, s := range catalog.Streams {
		waitFor(t, ctx, s.Name+" on current replicas", func() (bool, string) {
			info, err := streamInfo(ctx, js, s.Name)
			if err != nil {
				return false, err.Error()
			}
			return replicatedOnAll(info, n)
		})
	}
}

// choreo streams plan changes nothing; apply needs --yes; a service
// started with fewer replicas than the streams have leaves them as they
// are, even with the operator's rights, and so does apply unless
// --allow-lower says otherwise, each lowering shown before it is made.
func TestStreamsPlanAndApplyOnACluster(t *testing.T) {
	cluster, keys := startAuthCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, js := natstest.Connect(t, cluster.URLs())
	conn := []string{"--nats-url", cluster.URLs(), "--nats-creds", natsauth.KeyFile(keys, catalog.RoleOperator)}
	streamsCmd := func(args ...string) []string { return append(append([]string{"streams"}, args...), conn...) }

	for name, p := range streamPlans(t, streamsCmd("plan", "--stream-replicas", "3")...) {
		if p.Action != streams.Create || !hasChangeJSON(p.Changes, "replicas", "", "3") {
			t.Errorf("plan of %s on an empty cluster: %+v, want create with 3 replicas", name, p)
		}
	}
	if _, err := js.Stream(ctx, catalog.StreamOrders); err == nil {
		t.Fatal("choreo streams plan created a stream")
	}
	stdout, stderr, code := runTool(t, streamsCmd("apply", "--stream-replicas", "3")...)
	if code != 2 || !strings.Contains(stderr, "--yes") || !strings.Contains(stdout, "ORDERS: create") {
		t.Errorf("apply without --yes: exit %d, stdout\n%s\nstderr %s; want the plan and exit 2 asking for --yes", code, stdout, stderr)
	}
	if _, err := js.Stream(ctx, catalog.StreamOrders); err == nil {
		t.Fatal("choreo streams apply without --yes created a stream")
	}
	if _, stderr, code := runTool(t, streamsCmd("apply", "--stream-replicas", "3", "--yes")...); code != 0 {
		t.Fatalf("apply --yes: exit %d: %s", code, stderr)
	}
	waitReplicas(t, ctx, js, 3)

	// The four services, declaring one replica, set up by the operator's
	// user (--nats-creds-dir holds operator.nk): nothing is lowered, and
	// each kept setting is logged.
	c := startUp(t, "--nats-url", cluster.URLs(), "--nats-creds-dir", keys, "--stream-replicas", "1")
	c.stop()
	waitReplicas(t, ctx, js, 3)
	if !strings.Contains(c.stderr.String(), `"setting":"replicas","kept":"3","declared":"1"`) {
		t.Errorf("choreo up did not log the replicas it kept:\n%s", c.stderr.String())
	}

	// Apply with one replica keeps three and says so.
	stdout, stderr, code = runTool(t, streamsCmd("apply", "--stream-replicas", "1", "--yes")...)
	if code != 0 || !strings.Contains(stdout, "replicas") || !strings.Contains(stdout, "3 kept") || !strings.Contains(stdout, "Nothing to change") {
		t.Errorf("apply of fewer replicas: exit %d, stdout\n%s\nstderr %s; want the replicas kept and nothing changed", code, stdout, stderr)
	}
	waitReplicas(t, ctx, js, 3)

	// --allow-lower shows each lowering, then makes it.
	for name, p := range streamPlans(t, streamsCmd("plan", "--stream-replicas", "1", "--allow-lower")...) {
		if p.Action != streams.Update || len(p.Changes) != 1 || p.Changes[0] != (changeJSON{Setting: "replicas", From: "3", To: "1", Lowers: true}) {
			t.Errorf("plan of %s lowering replicas: %+v, want only replicas 3 -> 1, marked as lowering", name, p)
		}
	}
	stdout, stderr, code = runTool(t, streamsCmd("apply", "--stream-replicas", "1", "--allow-lower", "--yes")...)
	if code != 0 || !strings.Contains(stdout, "3 -> 1   (lowers it)") {
		t.Errorf("apply --allow-lower: exit %d, stdout\n%s\nstderr %s; want each lowering shown", code, stdout, stderr)
	}
	waitReplicas(t, ctx, js, 1)

	// Anyone else (here the anonymous client user) may not change a
	// stream: apply fails and says why.
	_, stderr, code = runTool(t, "streams", "apply", "--stream-replicas", "3", "--yes", "--nats-url", cluster.URLs())
	if code != 1 || !strings.Contains(stderr, "update ORDERS") {
		t.Errorf("apply as the client user: exit %d, stderr %s; want exit 1 naming the refused update", code, stderr)
	}
}

func hasChangeJSON(changes []changeJSON, setting, from, to string) bool {
	for _, c := range changes {
		if c.Setting == setting && c.From == from && c.To == to {
			return true
		}
	}
	return false
}
