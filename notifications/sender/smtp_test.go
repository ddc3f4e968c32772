package sender_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/notifications"
	"github.com/choreo-dev/choreo/notifications/sender"
)

// mailServer is a real SMTP server (emersion/go-smtp) on 127.0.0.1:0 that
// keeps what it is given and can refuse or stall on demand.
type mailServer struct {
	Addr string

	mu         sync.Mutex
	deliveries []delivery
	failRcpt   int // refuse the next n RCPTs with 451
	failData   int // refuse the next n DATAs with 451
	stall      bool
	users      map[string]string // AUTH PLAIN accounts; non-nil: auth required

	stalled chan struct{} // receives when a DATA starts stalling
	release chan struct{} // closed at cleanup: stalled DATAs return
}

// delivery is one message the server accepted.
type delivery struct {
	From string
	To   []string
	Data []byte
	User string // the authenticated user, if any
	TLS  bool
}

type serverOption func(*smtp.Server, *mailServer)

// withTLS offers STARTTLS with cert.
func withTLS(cert tls.Certificate) serverOption {
	return func(s *smtp.Server, _ *mailServer) {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
}

// withUsers requires AUTH PLAIN as one of users.
func withUsers(users map[string]string) serverOption {
	return func(_ *smtp.Server, m *mailServer) { m.users = users }
}

func startServer(t testing.TB, opts ...serverOption) *mailServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, l, opts...)
}

func serve(t testing.TB, l net.Listener, opts ...serverOption) *mailServer {
	t.Helper()
	m := &mailServer{Addr: l.Addr().String(), stalled: make(chan struct{}, 16), release: make(chan struct{})}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{srv: m, conn: c}, nil
	}))
	s.Domain = "localhost"
	s.AllowInsecureAuth = true // PLAIN over plain text to 127.0.0.1, as net/smtp allows
	s.ErrorLog = log.New(io.Discard, "", 0)
	s.ReadTimeout, s.WriteTimeout = 5*time.Second, 5*time.Second
	for _, o := range opts {
		o(s, m)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(l)
	}()
	t.Cleanup(func() {
		close(m.release)
		_ = s.Close()
		// Close closes only the listeners Serve has registered: close l
		// too, in case the test ended before Serve started.
		_ = l.Close()
		<-done
	})
	return m
}

func (m *mailServer) Deliveries() []delivery {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.deliveries)
}

func (m *mailServer) set(f func(m *mailServer)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

var errTemporary = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}

type session struct {
	srv  *mailServer
	conn *smtp.Conn
	user string
	from string
	to   []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		s.srv.mu.Lock()
		defer s.srv.mu.Unlock()
		if want, ok := s.srv.users[user]; !ok || want != pass {
			return smtp.ErrAuthFailed
		}
		s.user = user
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if s.srv.users != nil && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if s.srv.failRcpt > 0 {
		s.srv.failRcpt--
		return errTemporary
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.srv.mu.Lock()
	stall := s.srv.stall
	s.srv.mu.Unlock()
	if stall {
		s.srv.stalled <- struct{}{}
		<-s.srv.release
		return errTemporary
	}
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if s.srv.failData > 0 {
		s.srv.failData--
		return errTemporary
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.srv.deliveries = append(s.srv.deliveries, delivery{From: s.from, To: slices.Clone(s.to), Data: data, User: s.user, TLS: isTLS})
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

var created = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func confirmed() notifications.Notification {
	items := []catalog.LineItem{{SKU: "SKU-1", Quantity: 2, UnitPrice: 1299}}
	return *notifications.ForConfirmed(catalog.OrderConfirmed{OrderID: "order-1", CustomerID: "cust-1",
		Items: items, Total: catalog.Money{Amount: 2598, Currency: "EUR"}}, created)
}

func cancelled() notifications.Notification {
	items := []catalog.LineItem{{SKU: "SKU-9", Quantity: 3, UnitPrice: 500}}
	return *notifications.ForCancelled(catalog.OrderCancelled{OrderID: "order-2", CustomerID: "cust-2",
		Reason: catalog.ReasonPaymentDeclined, Items: items, Total: catalog.Money{Amount: 1500, Currency: "JPY"}}, created)
}

func mustSMTP(t testing.TB, cfg sender.SMTPConfig) *sender.SMTP {
	t.Helper()
	if cfg.From == "" {
		cfg.From = "choreo <orders@shop.example>"
	}
	s, err := sender.NewSMTP(cfg)
	if err != nil {
		t.Fatalf("NewSMTP: %v", err)
	}
	return s
}

func mustSend(t testing.TB, s *sender.SMTP, n notifications.Notification) {
	t.Helper()
	res, err := s.Send(context.Background(), n)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if res.Channel != sender.ChannelEmail {
		t.Fatalf("channel: got %q, want %q", res.Channel, sender.ChannelEmail)
	}
}

// parse reads a delivered message, failing the test if it is not RFC 5322.
func parse(t testing.TB, d delivery) (*mail.Message, string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(d.Data))
	if err != nil {
		t.Fatalf("delivered message does not parse: %v\n%s", err, d.Data)
	}
	body, err := io.ReadAll(msg.Body)
	if err != nil {
		t.Fatal(err)
	}
	return msg, string(body)
}

func TestSMTPDeliversNotification(t *testing.T) {
	tests := []struct {
		name        string
		n           notifications.Notification
		wantTo      string
		wantSubject string
		wantBody    []string
	}{
		{
			name: "Confirmed", n: confirmed(), wantTo: "cust-1@customers.invalid",
			wantSubject: "Your order order-1 is confirmed",
			wantBody: []string{"order order-1 is confirmed", "Status:   CONFIRMED", "Total:    EUR 25.98",
				"2 x SKU-1 at EUR 12.99 = EUR 25.98"},
		},
		{
			name: "Cancelled", n: cancelled(), wantTo: "cust-2@customers.invalid",
			wantSubject: "Your order order-2 was cancelled (payment declined)",
			wantBody: []string{"order order-2 was cancelled (payment declined)", "Status:   CANCELLED",
				"Reason:   payment_declined", "Total:    JPY 1500", "3 x SKU-9 at JPY 500 = JPY 1500"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t)
			mustSend(t, mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr}), tt.n)

			ds := srv.Deliveries()
			if len(ds) != 1 {
				t.Fatalf("deliveries: got %d, want 1", len(ds))
			}
			d := ds[0]
			if d.From != "orders@shop.example" || !slices.Equal(d.To, []string{tt.wantTo}) {
				t.Errorf("envelope: got %s -> %v, want orders@shop.example -> %s", d.From, d.To, tt.wantTo)
			}
			msg, body := parse(t, d)
			want := map[string]string{
				"From":                      `"choreo" <orders@shop.example>`,
				"To":                        "<" + tt.wantTo + ">",
				"Subject":                   tt.wantSubject,
				"Message-Id":                "<" + tt.n.ID + "@choreo>",
				"Mime-Version":              "1.0",
				"Content-Type":              "text/plain; charset=utf-8",
				"Content-Transfer-Encoding": "7bit",
				"Auto-Submitted":            "auto-generated",
			}
			for k, v := range want {
				if got := msg.Header.Get(k); got != v {
					t.Errorf("%s: got %q, want %q", k, got, v)
				}
			}
			if date, err := msg.Header.Date(); err != nil || !date.Equal(created) {
				t.Errorf("Date: got %v (%v), want the notification's %v", date, err, created)
			}
			for _, w := range tt.wantBody {
				if !strings.Contains(body, w) {
					t.Errorf("body lacks %q:\n%s", w, body)
				}
			}
		})
	}
}

func TestSMTPResendIsTheSameMessage(t *testing.T) {
	srv := startServer(t)
	s := mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr})
	n := confirmed()
	mustSend(t, s, n)
	mustSend(t, s, n)

	ds := srv.Deliveries()
	if len(ds) != 2 {
		t.Fatalf("deliveries: got %d, want 2 (SMTP does not deduplicate)", len(ds))
	}
	first, _ := parse(t, ds[0])
	second, _ := parse(t, ds[1])
	if id := first.Header.Get("Message-ID"); id != "<"+n.ID+"@choreo>" || second.Header.Get("Message-ID") != id {
		t.Errorf("Message-ID: got %q and %q, want <%s@choreo> twice", id, second.Header.Get("Message-ID"), n.ID)
	}
	if !bytes.Equal(ds[0].Data, ds[1].Data) {
		t.Errorf("a resend differs from the first send:\n%s\n---\n%s", ds[0].Data, ds[1].Data)
	}
}

func TestSMTPTemporaryRefusalFailsThenRetrySucceeds(t *testing.T) {
	for _, step := range []string{"RCPT", "DATA"} {
		t.Run(step, func(t *testing.T) {
			srv := startServer(t)
			srv.set(func(m *mailServer) {
				if step == "RCPT" {
					m.failRcpt = 1
				} else {
					m.failData = 1
				}
			})
			s := mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr})
			n := confirmed()

			_, err := s.Send(context.Background(), n)
			var reply *textproto.Error
			if !errors.As(err, &reply) || reply.Code != 451 {
				t.Fatalf("first Send: got %v, want a 451 reply in the chain", err)
			}
			if got := len(srv.Deliveries()); got != 0 {
				t.Fatalf("deliveries after refusal: got %d, want 0", got)
			}
			mustSend(t, s, n)
			if got := len(srv.Deliveries()); got != 1 {
				t.Errorf("deliveries after retry: got %d, want 1", got)
			}
		})
	}
}

func TestSMTPServerDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := mustSMTP(t, sender.SMTPConfig{Addr: addr})
	if _, err := s.Send(context.Background(), confirmed()); err == nil {
		t.Fatal("Send to a closed port: got nil error")
	}
}

// TestSMTPStalledServer checks that a server that stops answering cannot
// hold Send: the context's deadline, its cancellation and the configured
// Timeout each end it with an error.
func TestSMTPStalledServer(t *testing.T) {
	stallInData := func(t *testing.T) *mailServer {
		srv := startServer(t)
		srv.set(func(m *mailServer) { m.stall = true })
		return srv
	}
	t.Run("ContextDeadlineInData", func(t *testing.T) {
		srv := stallInData(t)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr}).Send(ctx, confirmed())
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("ContextCancelledInData", func(t *testing.T) {
		srv := stallInData(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			<-srv.stalled
			cancel()
		}()
		_, err := mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr}).Send(ctx, confirmed())
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})
	t.Run("TimeoutBeforeGreeting", func(t *testing.T) {
		// A listener that accepts and never says a word.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				conns = append(conns, c)
			}
		})
		t.Cleanup(func() { l.Close(); wg.Wait() })
		s := mustSMTP(t, sender.SMTPConfig{Addr: l.Addr().String(), Timeout: 200 * time.Millisecond})
		if _, err := s.Send(context.Background(), confirmed()); err == nil {
			t.Error("got nil error from a server that never greets")
		}
	})
	t.Run("ContextAlreadyDone", func(t *testing.T) {
		srv := startServer(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr}).Send(ctx, confirmed()); !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
		if got := len(srv.Deliveries()); got != 0 {
			t.Errorf("deliveries: got %d, want 0", got)
		}
	})
}

func TestSMTPLineBreaksDoNotInjectHeaders(t *testing.T) {
	srv := startServer(t)
	s := mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr})
	n := cancelled()
	n.CustomerID = "cust-1\r\nBcc: victim@example.com"
	n.Reason = "out_of_stock\r\nX-Injected: yes\n\r\nbody"
	n.OrderID = "order-2\nCc: other@example.com"
	mustSend(t, s, n)

	ds := srv.Deliveries()
	if len(ds) != 1 {
		t.Fatalf("deliveries: got %d, want 1", len(ds))
	}
	if len(ds[0].To) != 1 || strings.Contains(ds[0].To[0], "example.com") {
		t.Errorf("recipients: got %v, want the one placeholder address", ds[0].To)
	}
	msg, _ := parse(t, ds[0])
	var keys []string
	for k := range msg.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"Auto-Submitted", "Content-Transfer-Encoding", "Content-Type", "Date", "From",
		"Message-Id", "Mime-Version", "Subject", "To"}
	if !slices.Equal(keys, want) {
		t.Errorf("header fields: got %v, want %v", keys, want)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || strings.ContainsAny(subject, "\r\n") {
		t.Errorf("Subject: got %q (%v), want one line", subject, err)
	}

	t.Run("RecipientWithLineBreakFails", func(t *testing.T) {
		s := mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr, Recipient: func(id string) string {
			return id + "@shop.example\r\nBcc: victim@example.com"
		}})
		if _, err := s.Send(context.Background(), confirmed()); err == nil {
			t.Error("got nil error for a recipient address with a line break")
		}
		if got := len(srv.Deliveries()); got != 1 {
			t.Errorf("deliveries: got %d, want still 1", got)
		}
	})
}

func TestSMTPRecipient(t *testing.T) {
	srv := startServer(t)
	s := mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr, Recipient: func(id string) string {
		return "Customer " + id + " <" + id + "@shop.example>"
	}})
	mustSend(t, s, confirmed())
	d := srv.Deliveries()[0]
	msg, _ := parse(t, d)
	if !slices.Equal(d.To, []string{"cust-1@shop.example"}) || msg.Header.Get("To") != `"Customer cust-1" <cust-1@shop.example>` {
		t.Errorf("got envelope %v and To %q, want cust-1@shop.example", d.To, msg.Header.Get("To"))
	}
}

func TestSMTPAuthPlain(t *testing.T) {
	srv := startServer(t, withUsers(map[string]string{"choreo": "s3cret"}))

	t.Run("Accepted", func(t *testing.T) {
		mustSend(t, mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr, Username: "choreo", Password: "s3cret"}), confirmed())
		ds := srv.Deliveries()
		if len(ds) != 1 || ds[0].User != "choreo" {
			t.Fatalf("got %+v, want one delivery by user choreo", ds)
		}
	})
	t.Run("WrongPassword", func(t *testing.T) {
		s := mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr, Username: "choreo", Password: "guess"})
		_, err := s.Send(context.Background(), confirmed())
		var reply *textproto.Error
		if !errors.As(err, &reply) || reply.Code != 535 {
			t.Errorf("got %v, want a 535 reply", err)
		}
	})
	t.Run("NoCredentials", func(t *testing.T) {
		if _, err := mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr}).Send(context.Background(), confirmed()); err == nil {
			t.Error("got nil error from a server that requires auth")
		}
	})
}

func TestSMTPTLS(t *testing.T) {
	cert, roots := selfSigned(t)
	clientTLS := &tls.Config{RootCAs: roots}

	t.Run("AutoUpgradesWithSTARTTLS", func(t *testing.T) {
		srv := startServer(t, withTLS(cert), withUsers(map[string]string{"choreo": "s3cret"}))
		mustSend(t, mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr, TLSConfig: clientTLS, Username: "choreo", Password: "s3cret"}), confirmed())
		if ds := srv.Deliveries(); len(ds) != 1 || !ds[0].TLS || ds[0].User != "choreo" {
			t.Errorf("got %+v, want one delivery over TLS by choreo", ds)
		}
	})
	t.Run("AutoStaysPlainWithoutSTARTTLS", func(t *testing.T) {
		srv := startServer(t)
		mustSend(t, mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr, TLSConfig: clientTLS}), confirmed())
		if ds := srv.Deliveries(); len(ds) != 1 || ds[0].TLS {
			t.Errorf("got %+v, want one delivery in plain text", ds)
		}
	})
	t.Run("AutoFailsOnUntrustedCertificate", func(t *testing.T) {
		srv := startServer(t, withTLS(cert))
		if _, err := mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr}).Send(context.Background(), confirmed()); err == nil {
			t.Error("got nil error for a certificate the system roots do not trust")
		}
		if got := len(srv.Deliveries()); got != 0 {
			t.Errorf("deliveries: got %d, want 0 (no plain-text fallback)", got)
		}
	})
	t.Run("StartTLSRequired", func(t *testing.T) {
		srv := startServer(t)
		s := mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr, TLS: sender.TLSStartTLS, TLSConfig: clientTLS})
		if _, err := s.Send(context.Background(), confirmed()); err == nil {
			t.Error("got nil error from a server without STARTTLS")
		}
		if got := len(srv.Deliveries()); got != 0 {
			t.Errorf("deliveries: got %d, want 0", got)
		}
	})
	t.Run("NoneIgnoresSTARTTLS", func(t *testing.T) {
		srv := startServer(t, withTLS(cert))
		mustSend(t, mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr, TLS: sender.TLSNone}), confirmed())
		if ds := srv.Deliveries(); len(ds) != 1 || ds[0].TLS {
			t.Errorf("got %+v, want one delivery in plain text", ds)
		}
	})
	t.Run("Implicit", func(t *testing.T) {
		l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
		if err != nil {
			t.Fatal(err)
		}
		srv := serve(t, l)
		mustSend(t, mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr, TLS: sender.TLSImplicit, TLSConfig: clientTLS}), confirmed())
		if ds := srv.Deliveries(); len(ds) != 1 || !ds[0].TLS {
			t.Errorf("got %+v, want one delivery over TLS", ds)
		}
	})
}

func TestSMTPConcurrentSends(t *testing.T) {
	srv := startServer(t)
	s := mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := s.Send(context.Background(), confirmed()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := len(srv.Deliveries()); got != 8 {
		t.Errorf("deliveries: got %d, want 8", got)
	}
}

func TestNewSMTPRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  sender.SMTPConfig
	}{
		{"NoAddr", sender.SMTPConfig{From: "orders@shop.example"}},
		{"AddrWithoutPort", sender.SMTPConfig{Addr: "smtp.example.com", From: "orders@shop.example"}},
		{"NoFrom", sender.SMTPConfig{Addr: "smtp.example.com:587"}},
		{"BadFrom", sender.SMTPConfig{Addr: "smtp.example.com:587", From: "orders"}},
		{"FromWithLineBreak", sender.SMTPConfig{Addr: "smtp.example.com:587", From: "orders@shop.example\r\nBcc: x@y.example"}},
		{"NegativeTimeout", sender.SMTPConfig{Addr: "smtp.example.com:587", From: "orders@shop.example", Timeout: -time.Second}},
		{"UnknownTLSMode", sender.SMTPConfig{Addr: "smtp.example.com:587", From: "orders@shop.example", TLS: "ssl"}},
		{"PasswordWithoutUsername", sender.SMTPConfig{Addr: "smtp.example.com:587", From: "orders@shop.example", Password: "x"}},
		{"CredentialsInClear", sender.SMTPConfig{Addr: "smtp.example.com:25", From: "orders@shop.example",
			Username: "u", Password: "p", TLS: sender.TLSNone}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := sender.NewSMTP(tt.cfg); !errors.Is(err, sender.ErrInvalidConfig) {
				t.Errorf("got %v, want ErrInvalidConfig", err)
			}
		})
	}
	t.Run("CredentialsInClearToLocalhost", func(t *testing.T) {
		if _, err := sender.NewSMTP(sender.SMTPConfig{Addr: "127.0.0.1:25", From: "orders@shop.example",
			Username: "u", Password: "p", TLS: sender.TLSNone}); err != nil {
			t.Errorf("got %v, want nil: localhost may see credentials", err)
		}
	})
}

func TestSMTPConfigLogValueMasksPassword(t *testing.T) {
	v := sender.SMTPConfig{Addr: "smtp.example.com:587", Username: "u", Password: "hunter2"}.LogValue()
	if s := v.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "***") {
		t.Errorf("got %s, want the password masked", s)
	}
}

// selfSigned returns a certificate for 127.0.0.1 and localhost and a pool
// that trusts it.
func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "choreo test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestSMTPNonASCII(t *testing.T) {
	srv := startServer(t)
	n := confirmed()
	n.OrderID = "commande-été-" + strings.Repeat("é", 80)
	n.Items[0].SKU = "SKU-ü"
	mustSend(t, mustSMTP(t, sender.SMTPConfig{Addr: srv.Addr}), n)

	d := srv.Deliveries()[0]
	for l := range strings.SplitSeq(string(d.Data), "\r\n") {
		if len(l) > 998 {
			t.Errorf("line of %d characters, RFC 5322 allows 998: %q", len(l), l)
		}
	}
	msg, raw := parse(t, d)
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if want := "Your order " + n.OrderID + " is confirmed"; err != nil || subject != want {
		t.Errorf("Subject: got %q (%v), want %q", subject, err, want)
	}
	if cte := msg.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
		t.Fatalf("Content-Transfer-Encoding: got %q, want quoted-printable", cte)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), "Order:    "+n.OrderID) || !strings.Contains(string(body), "2 x SKU-ü at EUR 12.99") {
		t.Errorf("decoded body lacks the order id or the line:\n%s", body)
	}
}
