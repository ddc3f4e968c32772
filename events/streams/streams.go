// Package streams declares JetStream streams and creates or updates them.
package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Spec names a stream and the subjects it captures.
type Spec struct {
	Name        string
	Subjects    []string
	Description string
	// Schedules enables the server's message scheduler on the stream
	// (Nats-Schedule headers), used for saga deadlines.
	Schedules bool
	// Limits bound what the stream keeps (zero: no bound).
	Limits Limits
}

// Limits bound what a stream keeps: once one is reached, the oldest
// messages are removed. A stream without limits grows for ever, and so does
// the server's memory: it keeps an index entry for every subject the
// stream holds, and choreo's subjects carry an order id each.
type Limits struct {
	// MaxAge removes messages older than this (0: no age limit).
	MaxAge time.Duration
	// MaxMsgs keeps at most this many messages (0: no count limit). It
	// bounds the server's memory whatever the rate.
	MaxMsgs int64
	// MaxBytes keeps at most this many bytes (0: no size limit).
	MaxBytes int64
}

// Options apply to every stream Ensure creates.
type Options struct {
	// Replicas is 1 for a single server and 3 in a cluster (default 1).
	Replicas int
	// DuplicateWindow is how long the server remembers Nats-Msg-Id values
	// to drop re-published copies (default DefaultDuplicateWindow). It
	// must outlast the outbox relay's retry horizon (ack timeout plus
	// back-off, seconds) and a typical restart of a crashed publisher; the
	// inbox catches what arrives later still. The server holds every id
	// of the window in memory (about 100 bytes each), so a longer window
	// costs memory in proportion to the publish rate.
	DuplicateWindow time.Duration
	// Logger is told the settings Ensure kept because an existing
	// stream's are stronger (default: discard).
	Logger *slog.Logger
}

// DefaultDuplicateWindow is the duplicate window used when none is set.
const DefaultDuplicateWindow = time.Minute

// Config returns the JetStream configuration of spec under opts: file
// storage, limits retention, the duplicate window.
func Config(spec Spec, opts Options) jetstream.StreamConfig {
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.DuplicateWindow == 0 {
		opts.DuplicateWindow = DefaultDuplicateWindow
	}
	cfg := jetstream.StreamConfig{
		Name:              spec.Name,
		Description:       spec.Description,
		Subjects:          spec.Subjects,
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Replicas:          opts.Replicas,
		Duplicates:        opts.DuplicateWindow,
		AllowMsgSchedules: spec.Schedules,
		AllowDirect:       true,
		MaxAge:            spec.Limits.MaxAge,
		MaxMsgs:           orUnlimited(spec.Limits.MaxMsgs),
		MaxBytes:          orUnlimited(spec.Limits.MaxBytes),
		Discard:           jetstream.DiscardOld,
	}
	if cfg.MaxAge > 0 && cfg.Duplicates > cfg.MaxAge {
		cfg.Duplicates = cfg.MaxAge // the server refuses a window longer than the age
	}
	return cfg
}

// Ensure creates each stream that is missing. A stream that exists is
// brought to the declared configuration except that its replicas, its
// duplicate window and its limits (age, messages, bytes) are never
// lowered: a process started without a cluster's settings (one replica,
// default retention) must not weaken streams an operator set up, so where
// the stream's setting is the stronger one it is kept, and opts.Logger is
// told. Lowering one is an operator's deliberate act, made with a plan
// that allows it (Plan with AllowLower, which choreo streams apply
// --allow-lower makes), or with the nats CLI. A stream already as wanted
// is not touched, so a process whose NATS user may read streams but not
// change them can call Ensure too. It is safe to call from every process
// at start.
func Ensure(ctx context.Context, js jetstream.JetStream, specs []Spec, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	plans, err := Plan(ctx, js, specs, opts, KeepStronger)
	if err != nil {
		return err
	}
	for _, p := range plans {
		for _, k := range p.Kept {
			log.Warn("stream keeps a stronger setting than this process declares; lower it only on purpose, with `choreo streams apply --allow-lower` or `nats stream edit "+p.Stream+"`",
				"stream", p.Stream, "setting", k.Setting, "kept", k.Kept, "declared", k.Declared)
		}
	}
	return Apply(ctx, js, plans)
}

// Lowering says whether a plan may weaken an existing stream.
type Lowering bool

const (
	// KeepStronger keeps an existing stream's replicas, duplicate window
	// and limits where they are stronger than declared.
	KeepStronger Lowering = false
	// AllowLower brings every setting to the declared one, lowering
	// those that are stronger; each such change is marked Lowers.
	AllowLower Lowering = true
)

// Action is what a plan does to a stream.
type Action string

const (
	Create    Action = "create"
	Update    Action = "update"
	Unchanged Action = "unchanged"
)

// StreamPlan is what bringing one stream to its declared configuration
// takes.
type StreamPlan struct {
	Stream string
	Action Action
	// Config is the stream's configuration once the plan is applied.
	Config jetstream.StreamConfig
	// Changes are the settings an update changes, or those a create
	// sets (From empty).
	Changes []Change
	// Kept are the settings stronger than declared that the plan keeps
	// (none with AllowLower).
	Kept []Kept
}

// Plan reads each declared stream's configuration from the server and
// says what bringing it to spec under opts would change, changing
// nothing.
func Plan(ctx context.Context, js jetstream.JetStream, specs []Spec, opts Options, lowering Lowering) ([]StreamPlan, error) {
	plans := make([]StreamPlan, 0, len(specs))
	for _, spec := range specs {
		want := Config(spec, opts)
		s, err := js.Stream(ctx, spec.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			changes := Diff(jetstream.StreamConfig{}, want)
			for i := range changes {
				changes[i].From = ""
			}
			plans = append(plans, StreamPlan{Stream: spec.Name, Action: Create, Config: want, Changes: changes})
			continue
		case err != nil:
			return nil, fmt.Errorf("streams: read %s: %w", spec.Name, err)
		}
		have := s.CachedInfo().Config
		merged, kept := Merge(have, want)
		p := StreamPlan{Stream: spec.Name, Action: Update, Config: merged, Kept: kept}
		if lowering == AllowLower {
			p.Config, p.Kept = want, nil
		}
		p.Changes = Diff(have, p.Config)
		for i, c := range p.Changes {
			p.Changes[i].Lowers = slices.ContainsFunc(kept, func(k Kept) bool { return k.Setting == c.Setting })
		}
		if len(p.Changes) == 0 {
			p.Action = Unchanged
		}
		plans = append(plans, p)
	}
	return plans, nil
}

// Apply creates or updates each stream as its plan says, in order, and
// stops at the first error.
func Apply(ctx context.Context, js jetstream.JetStream, plans []StreamPlan) error {
	for _, p := range plans {
		var err error
		switch p.Action {
		case Create:
			_, err = js.CreateStream(ctx, p.Config)
		case Update:
			_, err = js.UpdateStream(ctx, p.Config)
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("streams: %s %s: %w", p.Action, p.Stream, err)
		}
	}
	return nil
}

// Change is one setting a plan changes.
type Change struct {
	Setting  string
	From, To string
	// Lowers is true for a change that weakens the stream: fewer
	// replicas, a shorter duplicate window, a tighter limit.
	Lowers bool
}

// Diff lists the settings Config declares in which have and want differ,
// in words: "unlimited" for no limit.
func Diff(have, want jetstream.StreamConfig) []Change {
	var out []Change
	diff := func(setting, from, to string) {
		if from != to {
			out = append(out, Change{Setting: setting, From: from, To: to})
		}
	}
	diff("description", have.Description, want.Description)
	diff("subjects", strings.Join(have.Subjects, " "), strings.Join(want.Subjects, " "))
	diff("storage", have.Storage.String(), want.Storage.String())
	diff("retention", have.Retention.String(), want.Retention.String())
	diff("replicas", strconv.Itoa(have.Replicas), strconv.Itoa(want.Replicas))
	diff("duplicate window", have.Duplicates.String(), want.Duplicates.String())
	diff("message schedules", strconv.FormatBool(have.AllowMsgSchedules), strconv.FormatBool(want.AllowMsgSchedules))
	diff("direct get", strconv.FormatBool(have.AllowDirect), strconv.FormatBool(want.AllowDirect))
	diff("max age", ageLimit(have.MaxAge), ageLimit(want.MaxAge))
	diff("max messages", limit(have.MaxMsgs), limit(want.MaxMsgs))
	diff("max bytes", limit(have.MaxBytes), limit(want.MaxBytes))
	diff("discard", have.Discard.String(), want.Discard.String())
	return out
}

func ageLimit(d time.Duration) string {
	if d <= 0 {
		return "unlimited"
	}
	return d.String()
}

func limit(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return strconv.FormatInt(n, 10)
}

// Kept is a setting of an existing stream that Ensure kept because it is
// stronger than the one declared.
type Kept struct {
	Setting        string
	Kept, Declared string
}

// Merge returns want with the stronger of have's and want's replicas,
// duplicate window and limits (an unlimited one is the strongest), and the
// settings where have's was kept.
func Merge(have, want jetstream.StreamConfig) (jetstream.StreamConfig, []Kept) {
	var kept []Kept
	// Shown as Diff shows them: an unlimited setting is "unlimited".
	keep := func(setting, h, w string) {
		kept = append(kept, Kept{Setting: setting, Kept: h, Declared: w})
	}
	out := want
	if have.Replicas > want.Replicas {
		out.Replicas = have.Replicas
		keep("replicas", strconv.Itoa(have.Replicas), strconv.Itoa(want.Replicas))
	}
	if have.Duplicates > want.Duplicates {
		out.Duplicates = have.Duplicates
		keep("duplicate window", have.Duplicates.String(), want.Duplicates.String())
	}
	// 0 is no age limit: the longest.
	if want.MaxAge > 0 && (have.MaxAge == 0 || have.MaxAge > want.MaxAge) {
		out.MaxAge = have.MaxAge
		keep("max age", ageLimit(have.MaxAge), ageLimit(want.MaxAge))
	}
	// -1 (or 0) is no limit: the largest.
	looser := func(setting string, h, w int64, set *int64) {
		if w > 0 && (h <= 0 || h > w) {
			*set = h
			keep(setting, limit(h), limit(w))
		}
	}
	looser("max messages", have.MaxMsgs, want.MaxMsgs, &out.MaxMsgs)
	looser("max bytes", have.MaxBytes, want.MaxBytes, &out.MaxBytes)
	if out.MaxAge > 0 && out.Duplicates > out.MaxAge {
		out.Duplicates = out.MaxAge // the server refuses a window longer than the age
	}
	return out, kept
}

// Same reports whether the server's configuration of a stream has every
// setting Config declares.
func Same(have, want jetstream.StreamConfig) bool { return len(Diff(have, want)) == 0 }

// orUnlimited maps 0 (no limit) to the server's -1.
func orUnlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}
