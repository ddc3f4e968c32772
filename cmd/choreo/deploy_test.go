package main

// Static tests of deploy/: the Kubernetes manifests (each kustomize overlay
// built by a small resolver of the kustomization features deploy/k8s uses),
// the Dockerfile and the CI workflows. Docker and Kubernetes need not be
// present; what is checked against is the real thing where the repository
// has it: the flags and environment variables `choreo serve <service> -h`
// prints, the paths system.go serves, nats-server's own configuration
// parser, the directories the workflows filter on.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"go.yaml.in/yaml/v3"
)

const deployDir = "../../deploy"

// externalSecrets are the Secrets an overlay expects the operator to have
// created (README, "Deploying to Kubernetes"): keys never live in git.
var externalSecrets = map[string][]string{
	"base":       {"choreo-nats-creds", "choreo-nats-operator", "nats-nkeys", "choreo-db"},
	"local":      {"choreo-nats-creds", "choreo-nats-operator", "nats-nkeys"},
	"production": {"choreo-nats-creds", "choreo-nats-operator", "nats-nkeys", "choreo-db"},
}

var serviceNames = []string{"orders", "inventory", "payments", "notifications"}

type obj = map[string]any

func TestDeployKustomizeOverlays(t *testing.T) {
	for _, name := range []string{"base", "local", "production"} {
		dir := filepath.Join(deployDir, "k8s", "overlays", name)
		if name == "base" {
			dir = filepath.Join(deployDir, "k8s", "base")
		}
		t.Run(name, func(t *testing.T) {
			objs, err := kustomize(dir)
			if err != nil {
				t.Fatal(err)
			}
			b := bundle{t: t, name: name, objs: objs}
			b.checkUniqueNames()
			b.checkServices()
			b.checkChoreoArgs()
			b.checkStreamsJob()
			b.checkReferences()
			b.checkPodSecurity()
			b.checkHTTPRoute()
			b.checkNATS()
			if name != "base" {
				b.checkNetworkPolicies()
			}
			auth := b.configValue("choreo-config", "CHOREO_AUTH_JWKS_URL")
			if name == "local" {
				if auth != "" {
					t.Errorf("local: HTTP auth is on (CHOREO_AUTH_JWKS_URL=%q); a laptop has no identity provider", auth)
				}
			} else if !strings.HasPrefix(auth, "https://") {
				t.Errorf("%s: HTTP auth must be on: CHOREO_AUTH_JWKS_URL=%q", name, auth)
			}
			if name == "production" {
				if v := b.configValue("choreo-config", "CHOREO_DURABLE"); v != "1" {
					t.Errorf("production: CHOREO_DURABLE=%q, want 1", v)
				}
				for _, svc := range serviceNames {
					if r := b.get("Deployment", svc)["spec"].(obj)["replicas"]; r != 3 {
						t.Errorf("production: %s has %v replicas, want 3", svc, r)
					}
				}
			}
		})
	}
}

// --- a kustomize resolver for what deploy/k8s uses -----------------------

type kustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Namespace  string   `yaml:"namespace"`
	Resources  []string `yaml:"resources"`
	Labels     []struct {
		Pairs map[string]string `yaml:"pairs"`
	} `yaml:"labels"`
	ConfigMapGenerator []generator `yaml:"configMapGenerator"`
	SecretGenerator    []generator `yaml:"secretGenerator"`
	Images             []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
	Replicas []struct {
		Name  string
		Count int
	} `yaml:"replicas"`
	Patches []struct {
		Target struct{ Kind, Name string }
		Patch  string
	} `yaml:"patches"`
}

type generator struct {
	Name     string   `yaml:"name"`
	Behavior string   `yaml:"behavior"`
	Literals []string `yaml:"literals"`
	Files    []string `yaml:"files"`
}

// kustomize builds the kustomization in dir. Generated objects keep their
// names (kustomize adds a hash suffix and rewrites references to match).
func kustomize(dir string) ([]obj, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k kustomization
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	var objs []obj
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %w", dir, r, err)
		}
		if st.IsDir() {
			sub, err := kustomize(p)
			if err != nil {
				return nil, err
			}
			objs = append(objs, sub...)
			continue
		}
		docs, err := readYAMLDocs(p)
		if err != nil {
			return nil, err
		}
		objs = append(objs, docs...)
	}
	for kind, gens := range map[string][]generator{"ConfigMap": k.ConfigMapGenerator, "Secret": k.SecretGenerator} {
		for _, g := range gens {
			data := map[string]any{}
			for _, l := range g.Literals {
				key, val, ok := strings.Cut(l, "=")
				if !ok {
					return nil, fmt.Errorf("%s: %s %s: literal %q is not key=value", dir, kind, g.Name, l)
				}
				data[key] = val
			}
			for _, f := range g.Files {
				b, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil {
					return nil, fmt.Errorf("%s: %s %s: %w", dir, kind, g.Name, err)
				}
				data[filepath.Base(f)] = string(b)
			}
			switch g.Behavior {
			case "", "create":
				objs = append(objs, obj{"apiVersion": "v1", "kind": kind, "metadata": obj{"name": g.Name}, "data": data})
			case "merge", "replace":
				o := find(objs, kind, g.Name)
				if o == nil {
					return nil, fmt.Errorf("%s: %s %s: behavior %s but no such %s in the resources", dir, kind, g.Name, g.Behavior, kind)
				}
				if g.Behavior == "replace" {
					o["data"] = obj{}
				}
				for key, val := range data {
					o["data"].(obj)[key] = val
				}
			default:
				return nil, fmt.Errorf("%s: %s %s: unknown behavior %q", dir, kind, g.Name, g.Behavior)
			}
		}
	}
	for _, p := range k.Patches {
		o := find(objs, p.Target.Kind, p.Target.Name)
		if o == nil {
			return nil, fmt.Errorf("%s: patch targets %s %s, which does not exist", dir, p.Target.Kind, p.Target.Name)
		}
		var ops []struct {
			Op, Path string
			Value    any
		}
		if err := yaml.Unmarshal([]byte(p.Patch), &ops); err != nil {
			return nil, fmt.Errorf("%s: patch of %s %s: %w", dir, p.Target.Kind, p.Target.Name, err)
		}
		for _, op := range ops {
			if op.Op != "replace" {
				return nil, fmt.Errorf("%s: patch op %q: this resolver knows replace only", dir, op.Op)
			}
			if err := replaceAt(o, op.Path, op.Value); err != nil {
				return nil, fmt.Errorf("%s: patch of %s %s: %w", dir, p.Target.Kind, p.Target.Name, err)
			}
		}
	}
	for _, r := range k.Replicas {
		o := find(objs, "Deployment", r.Name)
		if o == nil {
			return nil, fmt.Errorf("%s: replicas of Deployment %s, which does not exist", dir, r.Name)
		}
		o["spec"].(obj)["replicas"] = r.Count
	}
	for _, o := range objs {
		md := o["metadata"].(obj)
		if k.Namespace != "" && o["kind"] != "Namespace" {
			md["namespace"] = k.Namespace
		}
		for _, l := range k.Labels {
			labels, _ := md["labels"].(obj)
			if labels == nil {
				labels = obj{}
				md["labels"] = labels
			}
			for key, val := range l.Pairs {
				labels[key] = val
			}
		}
		for _, c := range containers(o) {
			image, _ := c["image"].(string)
			for _, im := range k.Images {
				if image == im.Name || strings.HasPrefix(image, im.Name+":") {
					c["image"] = im.NewName + ":" + im.NewTag
				}
			}
		}
	}
	return objs, nil
}

func readYAMLDocs(p string) ([]obj, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var objs []obj
	dec := yaml.NewDecoder(f)
	for {
		var o obj
		if err := dec.Decode(&o); err != nil {
			if err.Error() == "EOF" {
				return objs, nil
			}
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if o == nil {
			continue
		}
		if o["kind"] == nil || o["apiVersion"] == nil || o["metadata"] == nil {
			return nil, fmt.Errorf("%s: a document without kind, apiVersion or metadata", p)
		}
		objs = append(objs, o)
	}
}

// replaceAt sets the value at a JSON pointer that must exist.
func replaceAt(o obj, pointer string, value any) error {
	parts := strings.Split(strings.TrimPrefix(pointer, "/"), "/")
	var cur any = o
	for i, part := range parts {
		last := i == len(parts)-1
		switch c := cur.(type) {
		case obj:
			if _, ok := c[part]; !ok {
				return fmt.Errorf("path %s: no %q", pointer, part)
			}
			if last {
				c[part] = value
				return nil
			}
			cur = c[part]
		case []any:
			n, err := strconv.Atoi(part)
			if err != nil || n < 0 || n >= len(c) {
				return fmt.Errorf("path %s: no index %q", pointer, part)
			}
			if last {
				c[n] = value
				return nil
			}
			cur = c[n]
		default:
			return fmt.Errorf("path %s: %q is not inside an object or a list", pointer, part)
		}
	}
	return nil
}

func find(objs []obj, kind, name string) obj {
	for _, o := range objs {
		if o["kind"] == kind && o["metadata"].(obj)["name"] == name {
			return o
		}
	}
	return nil
}

// podSpec returns the pod template's spec of a workload, or nil.
func podSpec(o obj) obj {
	switch o["kind"] {
	case "Deployment", "StatefulSet", "Job", "DaemonSet":
		return dig(o, "spec", "template", "spec")
	}
	return nil
}

func podLabels(o obj) map[string]string {
	labels := map[string]string{}
	switch o["kind"] {
	case "Deployment", "StatefulSet", "Job", "DaemonSet":
		for k, v := range dig(o, "spec", "template", "metadata", "labels") {
			labels[k] = fmt.Sprint(v)
		}
	case "Cluster": // CloudNativePG: its pods carry these
		for k, v := range dig(o, "spec", "inheritedMetadata", "labels") {
			labels[k] = fmt.Sprint(v)
		}
		labels["cnpg.io/cluster"] = o["metadata"].(obj)["name"].(string)
	default:
		return nil
	}
	return labels
}

func containers(o obj) []obj {
	spec := podSpec(o)
	if spec == nil {
		return nil
	}
	var cs []obj
	for _, key := range []string{"initContainers", "containers"} {
		list, _ := spec[key].([]any)
		for _, c := range list {
			cs = append(cs, c.(obj))
		}
	}
	return cs
}

func dig(o obj, keys ...string) obj {
	cur := o
	for _, k := range keys {
		next, _ := cur[k].(obj)
		if next == nil {
			return nil
		}
		cur = next
	}
	return cur
}

func list(o obj, key string) []obj {
	l, _ := o[key].([]any)
	out := make([]obj, 0, len(l))
	for _, v := range l {
		if m, ok := v.(obj); ok {
			out = append(out, m)
		}
	}
	return out
}

func str(o obj, key string) string {
	s, _ := o[key].(string)
	return s
}

func selects(selector obj, labels map[string]string) bool {
	if labels == nil {
		return false
	}
	match := dig(selector, "matchLabels")
	if len(match) == 0 || len(selector) != 1 {
		return false // this resolver knows matchLabels only; an empty one is handled by the caller
	}
	for k, v := range match {
		if labels[k] != fmt.Sprint(v) {
			return false
		}
	}
	return true
}

// --- checks -----------------------------------------------------------------

type bundle struct {
	t    *testing.T
	name string
	objs []obj
}

func (b bundle) get(kind, name string) obj {
	b.t.Helper()
	o := find(b.objs, kind, name)
	if o == nil {
		b.t.Fatalf("%s: no %s %s", b.name, kind, name)
	}
	return o
}

func (b bundle) kind(kind string) []obj {
	var out []obj
	for _, o := range b.objs {
		if o["kind"] == kind {
			out = append(out, o)
		}
	}
	return out
}

func (b bundle) configValue(configMap, key string) string {
	v, _ := dig(b.get("ConfigMap", configMap), "data")[key].(string)
	return v
}

func (b bundle) checkUniqueNames() {
	seen := map[string]bool{}
	for _, o := range b.objs {
		id := fmt.Sprint(o["kind"], "/", o["metadata"].(obj)["name"])
		if seen[id] {
			b.t.Errorf("%s: %s defined twice", b.name, id)
		}
		seen[id] = true
	}
}

// serveFlags is the flag set `choreo serve <service>` really has, read from
// its -h output (types and the environment variable each flag reads).
type serveFlags struct {
	fs  *flag.FlagSet
	env map[string]string // env var -> flag name
}

var (
	helpFlag = regexp.MustCompile(`^  -(\S+)(?: (\S+))?$`)
	helpEnv  = regexp.MustCompile(`\(env ([A-Z0-9_]+)`)
)

func serveFlagsOf(t *testing.T, args ...string) serveFlags {
	t.Helper()
	var stdout, stderr bytes.Buffer
	run(context.Background(), append(slices.Clip(args), "-h"), &stdout, &stderr, func(string) string { return "" })
	sf := serveFlags{fs: flag.NewFlagSet(strings.Join(args, " "), flag.ContinueOnError), env: map[string]string{}}
	sf.fs.SetOutput(&bytes.Buffer{})
	current := ""
	for _, line := range strings.Split(stderr.String(), "\n") {
		if m := helpFlag.FindStringSubmatch(line); m != nil {
			current = m[1]
			switch m[2] {
			case "":
				sf.fs.Bool(current, false, "")
			case "duration":
				sf.fs.Duration(current, 0, "")
			case "int":
				sf.fs.Int(current, 0, "")
			case "float":
				sf.fs.Float64(current, 0, "")
			default: // string, value: any text
				sf.fs.String(current, "", "")
			}
			continue
		}
		for _, m := range helpEnv.FindAllStringSubmatch(line, -1) {
			if current != "" {
				sf.env[m[1]] = current
			}
		}
	}
	if len(sf.env) == 0 {
		t.Fatalf("choreo %s -h printed no flags:\n%s", strings.Join(args, " "), stderr.String())
	}
	return sf
}

// envAllowed are variables read by the Go runtime or the OpenTelemetry SDK
// rather than by choreo's flags.
func envAllowed(name string) bool {
	return strings.HasPrefix(name, "OTEL_") || name == "GOMEMLIMIT" || name == "GOMAXPROCS" || name == "GOGC"
}

func (b bundle) checkServices() {
	t := b.t
	for _, svc := range serviceNames {
		d := b.get("Deployment", svc)
		if r, _ := dig(d, "spec")["replicas"].(int); r < 2 {
			t.Errorf("%s: Deployment %s has %d replicas, want at least 2", b.name, svc, r)
		}
		cs := containers(d)
		if len(cs) != 1 {
			t.Fatalf("%s: Deployment %s has %d containers, want 1", b.name, svc, len(cs))
		}
		c := cs[0]
		args := anyStrings(c["args"])
		if len(args) < 2 || args[0] != "serve" || args[1] != svc {
			t.Errorf("%s: %s runs %q, want serve %s", b.name, svc, args, svc)
			continue
		}
		sf := serveFlagsOf(t, "serve", svc)
		if err := sf.fs.Parse(args[2:]); err != nil {
			t.Errorf("%s: %s: choreo serve refuses its args %q: %v", b.name, svc, args, err)
		}
		if sf.fs.NArg() != 0 {
			t.Errorf("%s: %s: arguments left after the flags: %q", b.name, svc, sf.fs.Args())
		}
		if b.name == "production" || b.name == "base" {
			if v := sf.fs.Lookup("stream-replicas").Value.String(); v != "3" {
				t.Errorf("%s: %s: --stream-replicas %s, want 3 (the cluster's streams)", b.name, svc, v)
			}
		}
		// Every variable in its environment is one choreo serve reads, with
		// a value its flag accepts.
		env := b.containerEnv(c)
		for _, ef := range list(c, "envFrom") {
			if dig(ef, "secretRef") != nil {
				t.Errorf("%s: %s: envFrom a Secret: name the variables one by one", b.name, svc)
			}
		}
		for name, value := range env {
			if envAllowed(name) {
				continue
			}
			f, ok := sf.env[name]
			if !ok {
				t.Errorf("%s: %s: env %s is read by no flag of choreo serve %s", b.name, svc, name, svc)
				continue
			}
			if value == "" {
				continue // from a Secret, or empty: the flag's default
			}
			if err := sf.fs.Set(f, value); err != nil {
				t.Errorf("%s: %s: env %s=%q: --%s refuses it: %v", b.name, svc, name, value, f, err)
			}
		}
		// NATS_URL names the client Service of the NATS pods.
		natsHost, natsPort, _ := strings.Cut(strings.TrimPrefix(env["NATS_URL"], "nats://"), ":")
		if s := find(b.objs, "Service", natsHost); s == nil || !selects(obj{"matchLabels": dig(s, "spec", "selector")}, podLabels(b.get("StatefulSet", "nats"))) ||
			!slices.ContainsFunc(list(dig(s, "spec"), "ports"), func(p obj) bool { return fmt.Sprint(p["port"]) == natsPort }) {
			t.Errorf("%s: %s: NATS_URL %q names no Service of the NATS pods with that port", b.name, svc, env["NATS_URL"])
		}
		for _, want := range []string{"NATS_CREDS", "CHOREO_DB_URL", "GOMEMLIMIT", "OTEL_EXPORTER_OTLP_ENDPOINT", "NATS_URL", "CHOREO_HTTP"} {
			if _, ok := env[want]; !ok {
				t.Errorf("%s: %s: no %s in its environment", b.name, svc, want)
			}
		}
		// Probes: the paths system.go serves, on the HTTP port it listens on.
		_, port, _ := strings.Cut(env["CHOREO_HTTP"], ":")
		for _, probe := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
			get := dig(c, probe, "httpGet")
			if get == nil {
				t.Errorf("%s: %s: no HTTP %s", b.name, svc, probe)
				continue
			}
			if p := str(get, "path"); !slices.Contains(servedPaths(t), p) {
				t.Errorf("%s: %s: %s on %s, which choreo does not serve (it serves %v)", b.name, svc, probe, p, servedPaths(t))
			}
			if got := containerPort(c, get["port"]); strconv.Itoa(got) != port {
				t.Errorf("%s: %s: %s on port %v (%d), but choreo listens on %q", b.name, svc, probe, get["port"], got, env["CHOREO_HTTP"])
			}
		}
		if p := str(dig(c, "readinessProbe", "httpGet"), "path"); p != "/readyz" {
			t.Errorf("%s: %s: readiness on %s, want /readyz", b.name, svc, p)
		}
		if dig(c, "resources", "requests") == nil || dig(c, "resources", "limits")["memory"] == nil {
			t.Errorf("%s: %s: requests and a memory limit are required", b.name, svc)
		}
		// The Service and the PDB select its pods.
		s := b.get("Service", svc)
		if !selects(obj{"matchLabels": dig(s, "spec", "selector")}, podLabels(d)) {
			t.Errorf("%s: Service %s selects no pod of Deployment %s", b.name, svc, svc)
		}
		pdb := 0
		for _, p := range b.kind("PodDisruptionBudget") {
			if selects(dig(p, "spec", "selector"), podLabels(d)) {
				pdb++
			}
		}
		if pdb != 1 {
			t.Errorf("%s: %d PodDisruptionBudgets select %s, want 1", b.name, pdb, svc)
		}
	}
}

// containerEnv is a container's environment: its ConfigMaps' variables,
// then its own (a variable from a Secret has an empty value).
func (b bundle) containerEnv(c obj) map[string]string {
	env := map[string]string{}
	for _, ef := range list(c, "envFrom") {
		if ref := dig(ef, "configMapRef"); ref != nil {
			for k, v := range dig(b.get("ConfigMap", str(ref, "name")), "data") {
				env[k] = fmt.Sprint(v)
			}
		}
	}
	for _, e := range list(c, "env") {
		env[str(e, "name")] = str(e, "value")
	}
	return env
}

// streamSettings are the values a choreo container runs with (its
// environment, then its arguments) of the flags that declare the streams.
func (b bundle) streamSettings(c obj, cmd ...string) map[string]string {
	b.t.Helper()
	sf := serveFlagsOf(b.t, cmd...)
	for name, value := range b.containerEnv(c) {
		if f, ok := sf.env[name]; ok && value != "" {
			if err := sf.fs.Set(f, value); err != nil {
				b.t.Errorf("%s: choreo %s: env %s=%q: --%s refuses it: %v", b.name, strings.Join(cmd, " "), name, value, f, err)
			}
		}
	}
	if err := sf.fs.Parse(anyStrings(c["args"])[len(cmd):]); err != nil {
		b.t.Errorf("%s: choreo %s refuses its args: %v", b.name, strings.Join(cmd, " "), err)
	}
	declared := flag.NewFlagSet("streams", flag.ContinueOnError)
	addStreamFlags(&envFlags{fs: declared, getenv: func(string) string { return "" }}, &streamFlags{})
	settings := map[string]string{}
	declared.VisitAll(func(f *flag.Flag) {
		if got := sf.fs.Lookup(f.Name); got == nil {
			b.t.Errorf("%s: choreo %s has no --%s", b.name, strings.Join(cmd, " "), f.Name)
		} else {
			settings[f.Name] = got.Value.String()
		}
	})
	return settings
}

// checkStreamsJob: a Job sets the streams up before the services use them,
// as `choreo streams apply --yes` (never --allow-lower: lowering is done by
// hand), with the operator's credentials from their own Secret, and with
// every stream setting the services declare.
func (b bundle) checkStreamsJob() {
	t := b.t
	job := b.get("Job", "choreo-streams")
	cs := containers(job)
	if len(cs) != 1 {
		t.Fatalf("%s: Job choreo-streams has %d containers, want 1", b.name, len(cs))
	}
	c := cs[0]
	args := anyStrings(c["args"])
	if len(args) < 2 || args[0] != "streams" || args[1] != "apply" {
		t.Fatalf("%s: Job choreo-streams runs %q, want streams apply", b.name, args)
	}
	sf := serveFlagsOf(t, "streams", "apply")
	if err := sf.fs.Parse(args[2:]); err != nil {
		t.Fatalf("%s: choreo streams apply refuses %q: %v", b.name, args, err)
	}
	if sf.fs.Lookup("yes").Value.String() != "true" || sf.fs.Lookup("allow-lower").Value.String() != "false" {
		t.Errorf("%s: Job choreo-streams runs %q: want --yes and never --allow-lower", b.name, args)
	}
	// Its own variables are all read by choreo streams apply (those of
	// choreo-config it shares with the services, which streamSettings
	// checks where it reads them).
	for _, e := range list(c, "env") {
		if _, ok := sf.env[str(e, "name")]; !ok {
			t.Errorf("%s: Job choreo-streams: env %s is read by no flag of choreo streams apply", b.name, str(e, "name"))
		}
	}
	env := b.containerEnv(c)
	// Its credentials: the operator's seed, mounted from the Secret that
	// holds it alone.
	creds := env["NATS_CREDS"]
	mounted := false
	for _, m := range list(c, "volumeMounts") {
		for _, v := range list(podSpec(job), "volumes") {
			if str(v, "name") != str(m, "name") || str(dig(v, "secret"), "secretName") != "choreo-nats-operator" {
				continue
			}
			for _, item := range list(dig(v, "secret"), "items") {
				if path.Join(str(m, "mountPath"), str(item, "path")) == creds && str(item, "key") == "operator.nk" {
					mounted = true
				}
			}
		}
	}
	if !mounted {
		t.Errorf("%s: Job choreo-streams: NATS_CREDS %q is not operator.nk of the Secret choreo-nats-operator", b.name, creds)
	}
	if str(podSpec(job), "restartPolicy") == "Always" {
		t.Errorf("%s: Job choreo-streams: restartPolicy Always", b.name)
	}
	// The streams it applies are the ones every service declares: a
	// service declaring more would try to raise them with a user that may
	// not, one declaring less is told its streams are stronger.
	want := b.streamSettings(c, "streams", "apply")
	for _, svc := range serviceNames {
		d := b.get("Deployment", svc)
		if got := b.streamSettings(containers(d)[0], "serve", svc); !maps.Equal(got, want) {
			t.Errorf("%s: %s declares the streams %v, the Job applies %v", b.name, svc, got, want)
		}
	}
}

// checkChoreoArgs: every container of the choreo image runs a subcommand
// with flags that subcommand accepts (choreo provider in local, too).
func (b bundle) checkChoreoArgs() {
	for _, o := range b.objs {
		for _, c := range containers(o) {
			if !strings.Contains(str(c, "image"), "choreo") {
				continue
			}
			args := anyStrings(c["args"])
			if len(args) == 0 {
				b.t.Errorf("%s: %s %s runs choreo without a command", b.name, o["kind"], o["metadata"].(obj)["name"])
				continue
			}
			cmd := args[:1]
			if (args[0] == "serve" || args[0] == "streams") && len(args) > 1 {
				cmd = args[:2]
			}
			sf := serveFlagsOf(b.t, cmd...)
			if err := sf.fs.Parse(args[len(cmd):]); err != nil || sf.fs.NArg() != 0 {
				b.t.Errorf("%s: %s %s: choreo %s refuses %q: %v", b.name, o["kind"], o["metadata"].(obj)["name"], strings.Join(cmd, " "), args, err)
			}
		}
	}
}

// servedPaths are the health paths system.go registers.
func servedPaths(t *testing.T) []string {
	src, err := os.ReadFile("system.go")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, m := range regexp.MustCompile(`HandleFunc\("GET (/[a-z]+)"`).FindAllStringSubmatch(string(src), -1) {
		paths = append(paths, m[1])
	}
	return paths
}

func containerPort(c obj, port any) int {
	if n, ok := port.(int); ok {
		return n
	}
	for _, p := range list(c, "ports") {
		if str(p, "name") == port {
			n, _ := p["containerPort"].(int)
			return n
		}
	}
	return -1
}

func anyStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = fmt.Sprint(s)
	}
	return out
}

// checkReferences: every ConfigMap and Secret a pod names exists in the
// build (with the key asked for), or is one of the overlay's Secrets the
// README tells the operator to create.
func (b bundle) checkReferences() {
	t := b.t
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range externalSecrets[b.name] {
		if !bytes.Contains(readme, []byte("create secret generic "+s)) {
			t.Errorf("%s: the README does not say how to create the Secret %s", b.name, s)
		}
	}
	check := func(owner, kind, name, key string) {
		o := find(b.objs, kind, name)
		if o == nil {
			if kind == "Secret" && slices.Contains(externalSecrets[b.name], name) {
				return
			}
			t.Errorf("%s: %s refers to %s %s, which does not exist", b.name, owner, kind, name)
			return
		}
		if key != "" {
			if _, ok := dig(o, "data")[key]; !ok {
				t.Errorf("%s: %s refers to key %s of %s %s, which has no such key", b.name, owner, key, kind, name)
			}
		}
	}
	for _, o := range b.objs {
		spec := podSpec(o)
		if spec == nil {
			continue
		}
		owner := fmt.Sprint(o["kind"], " ", o["metadata"].(obj)["name"])
		for _, c := range containers(o) {
			for _, ef := range list(c, "envFrom") {
				if r := dig(ef, "configMapRef"); r != nil {
					check(owner, "ConfigMap", str(r, "name"), "")
				}
				if r := dig(ef, "secretRef"); r != nil {
					check(owner, "Secret", str(r, "name"), "")
				}
			}
			for _, e := range list(c, "env") {
				if r := dig(e, "valueFrom", "configMapKeyRef"); r != nil {
					check(owner, "ConfigMap", str(r, "name"), str(r, "key"))
				}
				if r := dig(e, "valueFrom", "secretKeyRef"); r != nil {
					check(owner, "Secret", str(r, "name"), str(r, "key"))
				}
			}
			mounted := map[string]bool{}
			for _, m := range list(c, "volumeMounts") {
				mounted[str(m, "name")] = true
			}
			for name := range mounted {
				found := slices.ContainsFunc(list(spec, "volumes"), func(v obj) bool { return str(v, "name") == name })
				if !found && !slices.ContainsFunc(list(dig(o, "spec"), "volumeClaimTemplates"), func(v obj) bool { return dig(v, "metadata")["name"] == name }) {
					t.Errorf("%s: %s mounts volume %s, which it does not define", b.name, owner, name)
				}
			}
		}
		for _, v := range list(spec, "volumes") {
			for kind, key := range map[string]string{"ConfigMap": "configMap", "Secret": "secret"} {
				src := dig(v, key)
				if src == nil {
					continue
				}
				name := str(src, "name")
				if kind == "Secret" {
					name = str(src, "secretName")
				}
				check(owner, kind, name, "")
				for _, item := range list(src, "items") {
					check(owner, kind, name, str(item, "key"))
				}
			}
		}
	}
}

// checkPodSecurity: every pod runs as a non-root user on a read-only root
// file system without capabilities or privilege escalation.
func (b bundle) checkPodSecurity() {
	t := b.t
	for _, o := range b.objs {
		spec := podSpec(o)
		if spec == nil {
			continue
		}
		owner := fmt.Sprint(o["kind"], " ", o["metadata"].(obj)["name"])
		psc := dig(spec, "securityContext")
		if psc["runAsNonRoot"] != true {
			t.Errorf("%s: %s: runAsNonRoot is not set", b.name, owner)
		}
		if uid, _ := psc["runAsUser"].(int); uid <= 0 {
			t.Errorf("%s: %s: runAsUser %v, want a numeric non-root user", b.name, owner, psc["runAsUser"])
		}
		for _, c := range containers(o) {
			sc := dig(c, "securityContext")
			if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false {
				t.Errorf("%s: %s/%s: want readOnlyRootFilesystem and no privilege escalation", b.name, owner, str(c, "name"))
			}
			if drop := anyStrings(dig(sc, "capabilities")["drop"]); !slices.Equal(drop, []string{"ALL"}) {
				t.Errorf("%s: %s/%s: capabilities drop %v, want [ALL]", b.name, owner, str(c, "name"), drop)
			}
			if dig(c, "resources", "limits")["memory"] == nil {
				t.Errorf("%s: %s/%s: no memory limit", b.name, owner, str(c, "name"))
			}
		}
	}
}

// checkHTTPRoute: one route, the single entry, sends each API prefix to the
// Service of that name, which exists and has the port.
func (b bundle) checkHTTPRoute() {
	t := b.t
	routes := b.kind("HTTPRoute")
	if len(routes) != 1 {
		t.Fatalf("%s: %d HTTPRoutes, want one", b.name, len(routes))
	}
	r := routes[0]
	for _, p := range list(dig(r, "spec"), "parentRefs") {
		if find(b.objs, "Gateway", str(p, "name")) == nil {
			t.Errorf("%s: the HTTPRoute's parent Gateway %s does not exist", b.name, str(p, "name"))
		}
	}
	got := map[string]string{}
	for _, rule := range list(dig(r, "spec"), "rules") {
		backends := list(rule, "backendRefs")
		if len(backends) != 1 {
			t.Errorf("%s: a rule with %d backends", b.name, len(backends))
			continue
		}
		be := backends[0]
		s := find(b.objs, "Service", str(be, "name"))
		if s == nil {
			t.Errorf("%s: the HTTPRoute sends to Service %s, which does not exist", b.name, str(be, "name"))
			continue
		}
		if !slices.ContainsFunc(list(dig(s, "spec"), "ports"), func(p obj) bool { return p["port"] == be["port"] }) {
			t.Errorf("%s: Service %s has no port %v", b.name, str(be, "name"), be["port"])
		}
		for _, m := range list(rule, "matches") {
			if p := dig(m, "path"); str(p, "type") == "PathPrefix" {
				got[str(p, "value")] = str(be, "name")
			}
		}
	}
	for _, svc := range serviceNames {
		if got["/"+svc] != svc {
			t.Errorf("%s: /%s is routed to %q, want Service %s", b.name, svc, got["/"+svc], svc)
		}
	}
}

// checkNetworkPolicies: each policy and each of its pod selectors picks
// pods that exist; the NATS cluster port is open to NATS pods alone, the
// services' HTTP port to the gateway (and Prometheus) alone.
func (b bundle) checkNetworkPolicies() {
	t := b.t
	var pods []map[string]string
	for _, o := range b.objs {
		if l := podLabels(o); l != nil {
			pods = append(pods, l)
		}
	}
	exists := func(sel obj) bool {
		if len(sel) == 0 {
			return true // every pod of the namespace
		}
		return slices.ContainsFunc(pods, func(l map[string]string) bool { return selects(sel, l) })
	}
	natsLabels := podLabels(b.get("StatefulSet", "nats"))
	for _, np := range b.kind("NetworkPolicy") {
		name := np["metadata"].(obj)["name"]
		spec := dig(np, "spec")
		sel := dig(spec, "podSelector")
		if sel == nil {
			t.Errorf("%s: NetworkPolicy %s has no podSelector", b.name, name)
			continue
		}
		if len(sel) > 0 && !exists(sel) {
			t.Errorf("%s: NetworkPolicy %s selects no pod: %v", b.name, name, sel)
		}
		for _, dir := range []string{"ingress", "egress"} {
			for _, rule := range list(spec, dir) {
				peers := list(rule, map[string]string{"ingress": "from", "egress": "to"}[dir])
				for _, peer := range peers {
					if ps := dig(peer, "podSelector"); ps != nil && dig(peer, "namespaceSelector") == nil && !exists(ps) {
						t.Errorf("%s: NetworkPolicy %s: %s peer selects no pod: %v", b.name, name, dir, ps)
					}
				}
				if dir != "ingress" || !selects(sel, natsLabels) {
					continue
				}
				ports := list(rule, "ports")
				if len(ports) == 0 {
					t.Errorf("%s: NetworkPolicy %s opens every port of NATS", b.name, name)
				}
				for _, p := range ports {
					if p["port"] != 6222 {
						continue
					}
					if len(peers) != 1 || !selects(dig(peers[0], "podSelector"), natsLabels) || dig(peers[0], "namespaceSelector") != nil {
						t.Errorf("%s: NetworkPolicy %s opens the NATS cluster port 6222 to more than the NATS pods", b.name, name)
					}
				}
			}
		}
	}
	if np := b.get("NetworkPolicy", "default-deny"); len(dig(np, "spec", "podSelector")) != 0 {
		t.Errorf("%s: default-deny must select every pod", b.name)
	}
	for _, rule := range list(dig(b.get("NetworkPolicy", "services-http"), "spec"), "ingress") {
		for _, peer := range list(rule, "from") {
			if dig(peer, "namespaceSelector") == nil {
				t.Errorf("%s: services-http lets pods other than the gateway's reach the services: %v", b.name, peer)
			}
		}
	}
}

// checkNATS: the StatefulSet of the Helm chart's practice, running the
// configuration deploy/nats holds, which nats-server's parser accepts.
func (b bundle) checkNATS() {
	t := b.t
	ss := b.get("StatefulSet", "nats")
	spec := dig(ss, "spec")
	if spec["replicas"] != 3 {
		t.Errorf("%s: NATS has %v replicas, want 3", b.name, spec["replicas"])
	}
	if headless := b.get("Service", str(spec, "serviceName")); str(dig(headless, "spec"), "clusterIP") != "None" {
		t.Errorf("%s: NATS' serviceName %s is not headless", b.name, str(spec, "serviceName"))
	}
	if len(list(spec, "volumeClaimTemplates")) == 0 {
		t.Errorf("%s: NATS has no persistent volumes", b.name)
	}
	if len(list(dig(spec, "template", "spec"), "topologySpreadConstraints")) == 0 {
		t.Errorf("%s: NATS nodes are not spread", b.name)
	}
	pdb := false
	for _, p := range b.kind("PodDisruptionBudget") {
		if selects(dig(p, "spec", "selector"), podLabels(ss)) {
			pdb = dig(p, "spec")["maxUnavailable"] == 1
		}
	}
	if !pdb {
		t.Errorf("%s: no PodDisruptionBudget with maxUnavailable 1 for NATS", b.name)
	}
	c := containers(ss)[0]
	// The server that runs is the one whose parser these tests use.
	if want := "nats:" + strings.TrimPrefix(goModVersion(t, "github.com/nats-io/nats-server/v2"), "v") + "-alpine"; str(c, "image") != want {
		t.Errorf("%s: NATS image %s, want %s (go.mod's nats-server)", b.name, str(c, "image"), want)
	}
	pre := strings.Join(anyStrings(dig(c, "lifecycle", "preStop", "exec")["command"]), " ")
	if !strings.Contains(pre, "nats-server") || !strings.Contains(pre, "ldm") {
		t.Errorf("%s: NATS preStop is %q, want nats-server --signal ldm", b.name, pre)
	}
	args := anyStrings(c["args"])
	if !slices.Contains(args, "--pid") || !strings.Contains(pre, args[slices.Index(args, "--pid")+1]) {
		t.Errorf("%s: the preStop signals a pid file the server does not write: args %q", b.name, args)
	}
	for _, probe := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
		get := dig(c, probe, "httpGet")
		if !strings.HasPrefix(str(get, "path"), "/healthz") || containerPort(c, get["port"]) != 8222 {
			t.Errorf("%s: NATS %s is %v, want /healthz on 8222", b.name, probe, get)
		}
	}
	if i := slices.Index(args, "--http_port"); i < 0 || args[i+1] != "8222" {
		t.Errorf("%s: NATS does not serve monitoring on 8222: %q", b.name, args)
	}
	env := map[string]bool{}
	for _, e := range list(c, "env") {
		env[str(e, "name")] = true
	}
	if !env["NATS_SERVER_NAME"] {
		t.Errorf("%s: NATS has no NATS_SERVER_NAME, which cluster.conf reads", b.name)
	}
	// The config file it runs, from the ConfigMap, parsed by nats-server.
	conf := args[slices.Index(args, "--config")+1]
	dir := t.TempDir()
	for k, v := range dig(b.get("ConfigMap", "nats-config"), "data") {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v.(string)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"cluster.conf", "auth.conf"} {
		want, err := os.ReadFile(filepath.Join(deployDir, "nats", f))
		if err != nil {
			t.Fatal(err)
		}
		if got := dig(b.get("ConfigMap", "nats-config"), "data")[f]; got != string(want) {
			t.Errorf("%s: the ConfigMap's %s differs from deploy/nats/%s", b.name, f, f)
		}
	}
	for _, u := range []string{"ORDERS", "INVENTORY", "PAYMENTS", "NOTIFICATIONS", "CLIENT", "OPERATOR"} {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		t.Setenv("CHOREO_NKEY_"+u, pub)
	}
	t.Setenv("NATS_SERVER_NAME", "nats-0")
	// nats-server's own command line parser, on the container's args with
	// the config file's directory moved here.
	local := slices.Clone(args)
	local[slices.Index(args, "--config")+1] = filepath.Join(dir, path.Base(conf))
	fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	opts, err := server.ConfigureOptions(fs, local, func() {}, func() {}, func() {})
	if err != nil {
		t.Fatalf("%s: nats-server refuses %q: %v", b.name, args, err)
	}
	if opts.HTTPPort != 8222 || opts.PidFile != "/var/run/nats/nats.pid" {
		t.Errorf("%s: nats-server runs with monitoring port %d and pid file %q", b.name, opts.HTTPPort, opts.PidFile)
	}
	if pre := anyStrings(dig(c, "lifecycle", "preStop", "exec")["command"]); len(pre) != 3 || pre[0] != "nats-server" || fs.Lookup(strings.TrimPrefix(pre[1], "--")) == nil || pre[2] != "ldm="+opts.PidFile {
		t.Errorf("%s: preStop %q is not nats-server --signal ldm=<its pid file>", b.name, pre)
	}
	if !opts.JetStream || opts.StoreDir == "" || len(opts.Routes) != 3 || len(opts.Nkeys) != 6 {
		t.Errorf("%s: %s: jetstream %v (store %q), %d routes, %d nkey users; want jetstream, 3 routes, 6 users", b.name, conf, opts.JetStream, opts.StoreDir, len(opts.Routes), len(opts.Nkeys))
	}
	mountsData := slices.ContainsFunc(list(c, "volumeMounts"), func(m obj) bool {
		return str(m, "name") == "data" && strings.HasPrefix(opts.StoreDir, str(m, "mountPath"))
	})
	if !mountsData {
		t.Errorf("%s: JetStream stores in %s, which is not on the persistent volume", b.name, opts.StoreDir)
	}
	if b.name == "production" && !opts.SyncAlways {
		t.Errorf("production: NATS does not fsync every write")
	}
}

// --- the Dockerfile ---------------------------------------------------------

func TestDeployDockerfile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, drop comments.
	text := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(string(raw), " ")
	type stage struct {
		from, name string
		lines      []string
	}
	var stages []*stage
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		if strings.EqualFold(instr, "FROM") {
			f := strings.Fields(rest)
			s := &stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("%q before the first FROM", line)
		}
		stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, strings.ToUpper(instr)+" "+rest)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a final one", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	all := strings.Join(build.lines, "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-ldflags", "./cmd/choreo"} {
		if !strings.Contains(all, want) {
			t.Errorf("the build stage has no %s", want)
		}
	}
	goVersion := goModVersion(t, "go")
	if mm := strings.Join(strings.SplitN(goVersion, ".", 3)[:2], "."); !strings.HasPrefix(build.from, "golang:"+mm) {
		t.Errorf("build stage from %s, want golang:%s (go.mod's go %s)", build.from, mm, goVersion)
	}
	if st, err := os.Stat("../../cmd/choreo"); err != nil || !st.IsDir() {
		t.Errorf("the Dockerfile builds ./cmd/choreo, which is not there")
	}
	if !(strings.HasPrefix(final.from, "gcr.io/distroless/static") || final.from == "scratch") {
		t.Errorf("final image from %s, want distroless static or scratch", final.from)
	}
	var user, entry string
	for _, l := range final.lines {
		if strings.HasPrefix(l, "USER ") {
			user = strings.TrimPrefix(l, "USER ")
		}
		if strings.HasPrefix(l, "ENTRYPOINT ") {
			entry = l
		}
		if strings.HasPrefix(l, "COPY ") && !strings.Contains(l, "--from="+build.name) {
			t.Errorf("the final stage copies from outside the build stage: %s", l)
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("final USER %q, want a numeric non-root user", user)
	}
	if !strings.Contains(entry, "choreo") {
		t.Errorf("final ENTRYPOINT %q does not run choreo", entry)
	}
	// The user the image runs as is the one the manifests ask for.
	if !strings.Contains(string(mustRead(t, filepath.Join(deployDir, "k8s/base/orders.yaml"))), "runAsUser: "+uid) {
		t.Errorf("the manifests do not run choreo as the image's user %s", uid)
	}
	ignore := string(mustRead(t, filepath.Join(deployDir, "Dockerfile.dockerignore")))
	for _, line := range strings.Split(ignore, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, needed := range []string{"go.mod", "go.sum", "cmd", "events", "orders", "inventory", "payments", "notifications"} {
			if ok, _ := filepath.Match(line, needed); ok || line == needed {
				t.Errorf("Dockerfile.dockerignore excludes %s, which the build needs", needed)
			}
		}
	}
}

// goModVersion is the version go.mod requires of a module, or its go
// directive's for "go".
func goModVersion(t *testing.T, module string) string {
	t.Helper()
	for _, line := range strings.Split(string(mustRead(t, "../../go.mod")), "\n") {
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) >= 2 && f[0] == module {
			return f[1]
		}
		if len(f) >= 3 && f[0] == "require" && f[1] == module {
			return f[2]
		}
	}
	t.Fatalf("go.mod does not name %s", module)
	return ""
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// --- the CI workflows -------------------------------------------------------

func TestDeployWorkflows(t *testing.T) {
	dir := "../../.github/workflows"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yml") {
			continue
		}
		name := strings.TrimSuffix(e.Name(), ".yml")
		seen[name] = true
		var wf struct {
			Name string
			On   map[string]struct {
				Paths    []string
				Branches []string
			}
			Jobs map[string]struct {
				RunsOn   string `yaml:"runs-on"`
				Services map[string]struct {
					Image string
				}
				Steps []struct {
					Uses string
					Run  string
					With map[string]any
				}
			}
		}
		raw := mustRead(t, filepath.Join(dir, e.Name()))
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		if err := dec.Decode(&wf); err != nil {
			t.Errorf("%s: %v", e.Name(), err)
			continue
		}
		if len(wf.Jobs) == 0 || len(wf.On) == 0 {
			t.Errorf("%s: no jobs or no triggers", e.Name())
		}
		var runs string
		for job, j := range wf.Jobs {
			if j.RunsOn == "" || len(j.Steps) == 0 {
				t.Errorf("%s: job %s has no runs-on or no steps", e.Name(), job)
			}
			for _, s := range j.Steps {
				runs += s.Run + "\n"
				if s.Uses == "actions/setup-go@v5" && s.With["go-version-file"] != "go.mod" {
					t.Errorf("%s: setup-go does not take Go's version from go.mod", e.Name())
				}
			}
		}
		if name == "test" {
			if !strings.Contains(runs, "go tool task test") {
				t.Errorf("test.yml does not run go tool task test")
			}
			if !strings.Contains(runs, "CHOREO_TEST_POSTGRES_URL") && !bytes.Contains(raw, []byte("CHOREO_TEST_POSTGRES_URL")) {
				t.Errorf("test.yml does not give the tests a PostgreSQL")
			}
			pg := false
			for _, j := range wf.Jobs {
				for _, s := range j.Services {
					pg = pg || strings.HasPrefix(s.Image, "postgres")
				}
			}
			if !pg {
				t.Errorf("test.yml has no PostgreSQL service container")
			}
			continue
		}
		if !slices.Contains(serviceNames, name) {
			t.Errorf("unexpected workflow %s", e.Name())
			continue
		}
		for trigger, on := range wf.On {
			if len(on.Paths) == 0 {
				t.Errorf("%s: trigger %s has no path filter", e.Name(), trigger)
			}
			for _, p := range on.Paths {
				fixed := p
				if i := strings.IndexAny(p, "*?["); i >= 0 {
					fixed = p[:i]
				}
				if _, err := os.Stat(filepath.Join("../..", fixed)); err != nil {
					t.Errorf("%s: path filter %s names nothing in the repository", e.Name(), p)
				}
			}
			for _, want := range []string{name + "/**", "events/**", "go.mod", "go.sum"} {
				if !slices.Contains(on.Paths, want) {
					t.Errorf("%s: %s paths lack %s", e.Name(), trigger, want)
				}
			}
		}
		if !strings.Contains(runs, "./"+name+"/...") {
			t.Errorf("%s: does not test ./%s/...", e.Name(), name)
		}
	}
	for _, want := range append([]string{"test"}, serviceNames...) {
		if !seen[want] {
			t.Errorf("no workflow %s.yml", want)
		}
	}
}

// TestDeployKubectlKustomize builds each overlay with the real kustomize
// (kubectl kustomize) where kubectl is installed, and checks that the
// resolver the other tests use agrees with it: the same objects (generated
// names without their hash suffix), namespaces, images and arguments.
func TestDeployKubectlKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: the overlays are checked by the resolver of TestDeployKustomizeOverlays only")
	}
	hash := regexp.MustCompile(`-[a-z0-9]{10}$`)
	summary := func(objs []obj) []string {
		var out []string
		for _, o := range objs {
			md := o["metadata"].(obj)
			name := str(md, "name")
			if o["kind"] == "ConfigMap" || o["kind"] == "Secret" {
				name = hash.ReplaceAllString(name, "")
			}
			line := fmt.Sprint(o["kind"], " ", md["namespace"], "/", name)
			for _, c := range containers(o) {
				line += fmt.Sprintf(" [%s %v]", c["image"], c["args"])
			}
			out = append(out, line)
		}
		slices.Sort(out)
		return out
	}
	for _, name := range []string{"base", "overlays/local", "overlays/production"} {
		t.Run(path.Base(name), func(t *testing.T) {
			dir := filepath.Join(deployDir, "k8s", name)
			out, err := exec.Command(kubectl, "kustomize", dir).Output()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v", dir, err)
			}
			var real []obj
			dec := yaml.NewDecoder(bytes.NewReader(out))
			for {
				var o obj
				if err := dec.Decode(&o); err != nil {
					break
				}
				if o != nil {
					real = append(real, o)
				}
			}
			ours, err := kustomize(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := summary(ours), summary(real); !slices.Equal(got, want) {
				t.Errorf("the resolver builds\n%s\nkubectl kustomize builds\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			for _, o := range real {
				if ns := o["metadata"].(obj)["namespace"]; o["kind"] != "Namespace" && ns != "choreo" {
					t.Errorf("%s %s is in namespace %v, want choreo", o["kind"], o["metadata"].(obj)["name"], ns)
				}
			}
		})
	}
}
