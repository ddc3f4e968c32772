package sender

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/notifications"
)

// ChannelEmail is the channel SMTP reports on notifications.sent.
const ChannelEmail = "email"

// ErrInvalidConfig is wrapped by the errors NewSMTP returns for an
// SMTPConfig it cannot work with.
var ErrInvalidConfig = errors.New("sender: invalid config")

// TLSMode says whether and how SMTP encrypts its connection to the server.
type TLSMode string

// The TLS modes. Whatever the mode, a certificate that does not verify
// against SMTPConfig.TLSConfig (by default: the system roots and the
// host of Addr) fails the send; there is no fallback to plain text once
// TLS was tried, which would give a man in the middle an easy downgrade.
const (
	// TLSAuto, the default, upgrades with STARTTLS when the server offers
	// it and stays in plain text when it does not.
	TLSAuto TLSMode = "auto"
	// TLSStartTLS requires STARTTLS: a server that does not offer it
	// fails the send.
	TLSStartTLS TLSMode = "starttls"
	// TLSImplicit speaks TLS from the first byte (RFC 8314 submission,
	// usually port 465).
	TLSImplicit TLSMode = "tls"
	// TLSNone never encrypts, even when the server offers STARTTLS. Only
	// for a relay on the same host or a trusted network.
	TLSNone TLSMode = "none"
)

// DefaultSMTPTimeout bounds one Send when SMTPConfig.Timeout is zero.
const DefaultSMTPTimeout = 10 * time.Second

// SMTPConfig configures an SMTP sender. Only Addr and From are required.
type SMTPConfig struct {
	// Addr is the mail server's host:port, e.g. "smtp.example.com:587".
	Addr string
	// From is the sender's address, with or without a display name:
	// "choreo <orders@shop.example>". It is the envelope sender too.
	From string
	// Username and Password, when Username is set, authenticate with AUTH
	// PLAIN. The credentials are sent only over TLS or to a server on
	// localhost (127.0.0.1, ::1): NewSMTP refuses them with TLSNone to
	// another host, and in TLSAuto a server that does not offer STARTTLS
	// fails the send rather than receive them in clear.
	Username string
	Password string
	// Timeout bounds one Send, from dialling to the server's acceptance
	// of the message; a deadline on Send's context that comes earlier
	// wins. Default DefaultSMTPTimeout.
	Timeout time.Duration
	// TLS is the encryption mode; "" is TLSAuto.
	TLS TLSMode
	// TLSConfig, when set, is used for STARTTLS and implicit TLS (e.g.
	// for a private CA); its ServerName defaults to the host of Addr.
	TLSConfig *tls.Config
	// LocalName is the name SMTP introduces itself with in EHLO; default
	// "localhost". Some servers want the client's fully qualified name.
	LocalName string
	// Recipient maps a customer id to the customer's email address, with
	// or without a display name. choreo has no customer directory yet, so
	// the default is a placeholder, "<customer-id>@customers.invalid",
	// with every byte of the id outside [A-Za-z0-9_-] percent-encoded
	// (".invalid" is reserved by RFC 2606: such mail can never reach
	// anyone). Set it once a directory exists. An address that does not
	// parse, or is not ASCII, fails the send.
	Recipient func(customerID string) string
	// Logger receives a Debug record per message sent and a Warn record
	// when the server accepted the message but the goodbye failed.
	// Default: discard.
	Logger *slog.Logger
}

// LogValue implements slog.LogValuer so that the effective config can be
// logged at start without its password.
func (c SMTPConfig) LogValue() slog.Value {
	pw := ""
	if c.Password != "" {
		pw = "***"
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("from", c.From),
		slog.String("username", c.Username),
		slog.String("password", pw),
		slog.Duration("timeout", c.Timeout),
		slog.String("tls", string(c.TLS)),
		slog.Bool("custom_recipient", c.Recipient != nil),
	)
}

// SMTP delivers notifications as email through an SMTP server: one
// connection and one message per Send, to the customer's address (see
// SMTPConfig.Recipient). It keeps no state between sends and is safe for
// concurrent use.
//
// Idempotency. SMTP cannot deduplicate, and SMTP does not try to: a
// notification sent twice is delivered twice. What it guarantees is that
// every send of a notification is the same message, byte for byte: the
// Message-ID is "<notification-id@choreo>" and the Date is the
// notification's CreatedAt. When the reply to the final dot is lost, the
// service retries, and the customer may get a second copy; that copy has
// the same Message-ID, so mail stores and clients that collapse duplicates
// by Message-ID show it once, and support can tell a resend from a second
// notification.
type SMTP struct {
	addr      string
	host      string
	from      *mail.Address
	auth      smtp.Auth
	timeout   time.Duration
	mode      TLSMode
	tls       *tls.Config
	localName string
	recipient func(string) string
	log       *slog.Logger
}

var _ notifications.Sender = (*SMTP)(nil)

// NewSMTP returns an SMTP sender for cfg, or an error wrapping
// ErrInvalidConfig. It does not contact the server: a server that is down
// fails the sends, not the start.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" {
		return nil, fmt.Errorf("%w: addr %q is not host:port", ErrInvalidConfig, cfg.Addr)
	}
	if cfg.From == "" {
		return nil, fmt.Errorf("%w: no from address", ErrInvalidConfig)
	}
	from, err := parseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("%w: from: %w", ErrInvalidConfig, err)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative timeout %s", ErrInvalidConfig, cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultSMTPTimeout
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSAuto
	}
	switch cfg.TLS {
	case TLSAuto, TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return nil, fmt.Errorf("%w: tls mode %q, want %q, %q, %q or %q",
			ErrInvalidConfig, cfg.TLS, TLSAuto, TLSStartTLS, TLSImplicit, TLSNone)
	}
	if cfg.Username == "" && cfg.Password != "" {
		return nil, fmt.Errorf("%w: a password without a username", ErrInvalidConfig)
	}
	if cfg.Username != "" && cfg.TLS == TLSNone && !isLocalhost(host) {
		return nil, fmt.Errorf("%w: credentials for %s would travel in clear with tls mode %q",
			ErrInvalidConfig, host, TLSNone)
	}
	if strings.ContainsAny(cfg.LocalName, "\r\n") {
		return nil, fmt.Errorf("%w: local name %q has a line break", ErrInvalidConfig, cfg.LocalName)
	}
	if cfg.LocalName == "" {
		cfg.LocalName = "localhost"
	}
	if cfg.Recipient == nil {
		cfg.Recipient = placeholderRecipient
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLSConfig != nil {
		tlsCfg = cfg.TLSConfig.Clone()
	}
	if tlsCfg.ServerName == "" {
		tlsCfg.ServerName = host
	}
	s := &SMTP{
		addr: cfg.Addr, host: host, from: from, timeout: cfg.Timeout, mode: cfg.TLS, tls: tlsCfg,
		localName: cfg.LocalName, recipient: cfg.Recipient, log: cfg.Logger,
	}
	if cfg.Username != "" {
		// net/smtp's PLAIN refuses to start unless the connection is TLS or
		// the server is localhost: the rule SMTPConfig documents.
		s.auth = smtp.PlainAuth("", cfg.Username, cfg.Password, host)
	}
	return s, nil
}

// Send implements notifications.Sender: it emails n to the customer and
// returns once the server has accepted the message (250 after DATA).
//
// It fails, and the service retries, when n cannot be written as a message
// (no id, a recipient address that does not parse), when the server
// cannot be reached, when the server refuses any step (the reply is in the
// chain as a *textproto.Error: 4xx temporary, 5xx permanent; a permanent
// refusal fails every retry and the event ends in the dead-letter queue
// after the consumer's last delivery), and when ctx ends or the Timeout
// passes first (the error then matches ctx.Err() with errors.Is). A
// failure before the server's acceptance means nothing was delivered,
// except when the acceptance itself was lost: that retry delivers the same
// message again (see SMTP).
func (s *SMTP) Send(ctx context.Context, n notifications.Notification) (notifications.SendResult, error) {
	m, err := s.compose(n)
	if err != nil {
		return notifications.SendResult{}, fmt.Errorf("sender: smtp %s: %w", n.ID, err)
	}
	if err := s.deliverTraced(ctx, m); err != nil {
		return notifications.SendResult{}, fmt.Errorf("sender: smtp %s via %s: %w", n.ID, s.addr, err)
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "email sent",
		slog.String("notification_id", n.ID),
		slog.String("order_id", n.OrderID),
		slog.String("message_id", m.messageID),
		slog.String("channel", ChannelEmail))
	return notifications.SendResult{Channel: ChannelEmail}, nil
}

// deliverTraced delivers m in a client span of the caller's trace.
func (s *SMTP) deliverTraced(ctx context.Context, m message) error {
	ctx, span := events.Tracer(ctx).Start(ctx, "smtp send", trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(semconv.ServerAddress(s.host), attribute.String("smtp.message_id", m.messageID))
	}
	err := s.deliver(ctx, m)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// deliver runs one SMTP conversation for m, bounded by ctx and s.timeout.
func (s *SMTP) deliver(ctx context.Context, m message) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	// Whatever failed once ctx ended (an I/O timeout, a closed
	// connection) failed because it ended: say so, in a way errors.Is
	// finds. The connection's deadline is ctx's, and may fire a moment
	// before ctx's own timer does.
	defer func() {
		switch {
		case err == nil:
		case ctx.Err() != nil:
			if !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w: %w", ctx.Err(), err)
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
	}()

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	// net/smtp knows no context: the deadline bounds every read and
	// write, and cancelling ctx moves it to the past, which fails the
	// read or write in progress at once.
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if s.mode == TLSImplicit {
		tc := tls.Client(conn, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, s.host)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello(s.localName); err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	if s.mode == TLSAuto || s.mode == TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(s.tls); err != nil {
				return fmt.Errorf("starttls: %w", err)
			}
		} else if s.mode == TLSStartTLS {
			return errors.New("starttls: the server does not offer it")
		}
	}
	if s.auth != nil {
		ok, mechs := c.Extension("AUTH")
		if !ok || !hasFold(strings.Fields(mechs), "PLAIN") {
			return fmt.Errorf("auth: the server does not offer PLAIN (AUTH %q)", mechs)
		}
		if err := c.Auth(s.auth); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
	}
	if err := c.Mail(s.from.Address); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	if err := c.Rcpt(m.rcpt); err != nil {
		return fmt.Errorf("rcpt to: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write(m.data); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	// The server has taken responsibility for the message. A failed
	// goodbye must not fail the send: the retry would deliver it again.
	if err := c.Quit(); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "email accepted, quit failed",
			slog.String("message_id", m.messageID), slog.String("error", err.Error()))
	}
	return nil
}

func isLocalhost(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

func hasFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
