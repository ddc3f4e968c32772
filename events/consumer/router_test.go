package consumer_test

import (
	"context"
	"errors"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/consumer"
)

func TestMatchSubject(t *testing.T) {
	for _, c := range []struct {
		pattern, subject string
		want             bool
	}{
		{"orders.placed.*", "orders.placed.o-1", true},
		{"orders.placed.*", "orders.placed", false},
		{"orders.placed.*", "orders.placed.o-1.x", false},
		{"orders.*.o-1", "orders.confirmed.o-1", true},
		{"orders.>", "orders.placed.o-1", true},
		{"orders.>", "orders", false},
		{"cmd.orders.place", "cmd.orders.place", true},
		{"cmd.orders.place", "cmd.orders.placed", false},
		{">", "anything.at.all", true},
		{"*", "one", true},
		{"*", "one.two", false},
		{"a.b", "a", false},
	} {
		if got := consumer.MatchSubject(c.pattern, c.subject); got != c.want {
			t.Errorf("MatchSubject(%q, %q) = %v, want %v", c.pattern, c.subject, got, c.want)
		}
	}
}

func TestRouterSendsEachMessageToItsRoute(t *testing.T) {
	r := consumer.NewRouter("svc")
	var got []string
	asString := func(m *consumer.Message) (string, error) { return string(m.Data), nil }
	route := func(name string) func(context.Context, *consumer.Message, string) (consumer.Work, error) {
		return func(_ context.Context, _ *consumer.Message, v string) (consumer.Work, error) {
			got = append(got, name+":"+v)
			return consumer.Work{}, nil
		}
	}
	consumer.Route(r, "t.placed.*", asString, route("placed"))
	consumer.Route(r, "t.*.special", asString, route("special"))
	consumer.Route(r, "t.>", asString, route("rest"))
	ctx := context.Background()
	for _, subj := range []string{"t.placed.k", "t.placed.special", "t.other.special", "t.x.y.z"} {
		if _, err := r.Handle(ctx, &consumer.Message{Subject: subj, Data: []byte(subj)}); err != nil {
			t.Fatalf("%s: %v", subj, err)
		}
	}
	want := []string{"placed:t.placed.k", "placed:t.placed.special", "special:t.other.special", "rest:t.x.y.z"}
	if len(got) != len(want) {
		t.Fatalf("routed %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d: routed %q, want %q (the first matching route wins)", i, got[i], want[i])
		}
	}
	if got := r.Patterns(); len(got) != 3 || got[0] != "t.placed.*" || got[2] != "t.>" {
		t.Errorf("Patterns() = %v, want the three patterns in order", got)
	}
}

func TestRouterRejectsWhatItCannotHandle(t *testing.T) {
	r := consumer.NewRouter("svc")
	called := false
	bad := events.Permanent(errors.New("undecodable"))
	consumer.Route(r, "t.a.*", func(*consumer.Message) (int, error) { return 0, bad },
		func(context.Context, *consumer.Message, int) (consumer.Work, error) {
			called = true
			return consumer.Work{}, nil
		})
	ctx := context.Background()
	if _, err := r.Handle(ctx, &consumer.Message{Subject: "t.a.1"}); !errors.Is(err, bad) || called {
		t.Errorf("undecodable message: got %v (handler called %v), want the decoder's error and no call", err, called)
	}
	_, err := r.Handle(ctx, &consumer.Message{Subject: "t.b.1"})
	if !errors.Is(err, consumer.ErrUnknownSubject) || !events.IsPermanent(err) {
		t.Errorf("unrouted subject: got %v, want a permanent ErrUnknownSubject", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Route with pattern \"t.>.x\": no panic, want one")
		}
	}()
	consumer.Route(r, "t.>.x", func(*consumer.Message) (int, error) { return 0, nil },
		func(context.Context, *consumer.Message, int) (consumer.Work, error) { return consumer.Work{}, nil })
}
