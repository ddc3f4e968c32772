// Package natsauth turns what each user of a NATS server does on the bus
// into the server's permissions, so that a service may publish only its
// own subjects and call only the JetStream API its consumers and relay
// need. It knows nothing of orders or stock: a catalog describes its
// users as Roles, and this package makes the server options, the server
// configuration file and the credentials from them.
//
// Users authenticate with nkeys (an ed25519 key pair per user; the server
// holds only public keys and checks a signature of its nonce, so no secret
// crosses the wire or sits in the server's configuration), all in the
// server's default account. Decentralized JWT accounts would let another
// party issue users without touching the server's configuration, at the
// price of an operator, accounts, a resolver and JetStream enabled per
// account; one team running one system gains nothing from that, and every
// stream must stay in one account for the services to share it.
package natsauth

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Consumer names a durable consumer on a stream.
type Consumer struct {
	Stream  string
	Durable string
}

// Role is what one user does on the bus.
type Role struct {
	// Name names the user and its credentials file (<name>.nk).
	Name string
	// Publish are the subjects (patterns allowed) it publishes: its
	// events, its schedules, its dead letters, or the commands of a
	// client.
	Publish []string
	// Consumers are the durable consumers it creates, reads and acks.
	Consumers []Consumer
	// Streams are the streams whose information it reads.
	Streams []string
	// Subscribe limits what it may subscribe to; nil allows everything.
	Subscribe []string
	// Respond lets it answer requests it received (micro endpoints): it
	// may publish to the reply subject of a message it got, once.
	Respond bool
	// Reader may read every stream with consumers of its own (nats
	// stream view, nats sub, choreo trace) but never touch the durable
	// consumers named in Protected: it can neither steal their messages
	// nor ack, delete or redefine them.
	Reader bool
	// Protected are durable names a Reader may not use.
	Protected []string
	// All gives every right: the operator's role.
	All bool
}

// Permissions returns the server permissions of r. Anything not allowed is
// denied.
func (r Role) Permissions() *server.Permissions {
	if r.All {
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{">"}},
			Subscribe: &server.SubjectPermission{Allow: []string{">"}},
		}
	}
	pub := append([]string(nil), r.Publish...)
	for _, s := range r.Streams {
		pub = append(pub, "$JS.API.STREAM.INFO."+s)
	}
	for _, c := range r.Consumers {
		pub = append(pub,
			// Create (and update: same subject) the durable; nats.go
			// appends the filter subject when there is exactly one.
			"$JS.API.CONSUMER.CREATE."+c.Stream+"."+c.Durable,
			"$JS.API.CONSUMER.CREATE."+c.Stream+"."+c.Durable+".>",
			"$JS.API.CONSUMER.INFO."+c.Stream+"."+c.Durable,
			"$JS.API.CONSUMER.MSG.NEXT."+c.Stream+"."+c.Durable,
		)
		pub = append(pub, AckSubjects(c.Stream, c.Durable)...)
	}
	var deny []string
	if r.Reader {
		pub = append(pub,
			"$JS.API.INFO",
			"$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST", "$JS.API.STREAM.INFO.*",
			"$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>",
			"$JS.API.CONSUMER.NAMES.*", "$JS.API.CONSUMER.LIST.*", "$JS.API.CONSUMER.INFO.*.*",
			"$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DURABLE.CREATE.>", "$JS.API.CONSUMER.DELETE.*.*",
			"$JS.API.CONSUMER.MSG.NEXT.*.*", "$JS.ACK.>", "$JS.FC.>",
			"$SRV.>",
		)
		for _, d := range r.Protected {
			deny = append(deny,
				"$JS.API.CONSUMER.CREATE.*."+d, "$JS.API.CONSUMER.CREATE.*."+d+".>",
				"$JS.API.CONSUMER.DURABLE.CREATE.*."+d, "$JS.API.CONSUMER.DELETE.*."+d,
				"$JS.API.CONSUMER.MSG.NEXT.*."+d,
			)
			deny = append(deny, AckSubjects("*", d)...)
		}
	}
	p := &server.Permissions{Publish: &server.SubjectPermission{Allow: pub, Deny: deny}}
	if r.Subscribe != nil {
		p.Subscribe = &server.SubjectPermission{Allow: append([]string(nil), r.Subscribe...)}
	}
	if r.Respond {
		p.Response = &server.ResponsePermission{MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS, Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION}
	}
	return p
}

// AckSubjects are the subjects a client acks (naks, terms) the messages of
// a durable consumer on: nats-server 2.14 introduced a second format with
// the JetStream domain and an account hash before the stream
// ($JS.ACK.<domain>.<account hash>.<stream>.<consumer>.…, ADR-15), which a
// server may use instead of the first ($JS.ACK.<stream>.<consumer>.…);
// both are allowed so that permissions survive the server switching.
func AckSubjects(stream, durable string) []string {
	return []string{
		"$JS.ACK." + stream + "." + durable + ".>",
		"$JS.ACK.*.*." + stream + "." + durable + ".>",
	}
}

// Key is a user's nkey pair, as stored in its credentials file.
type Key struct {
	Public string
	Seed   []byte
}

// KeyFile is the credentials file of role name in dir.
func KeyFile(dir, name string) string { return filepath.Join(dir, name+".nk") }

// LoadOrCreateKeys reads the key of every role from dir (<name>.nk), and
// creates the ones missing: the first start generates them, later starts
// reuse them. The directory is made readable by its owner only, as is
// every file: a seed is the user's password.
func LoadOrCreateKeys(dir string, roles []Role) (map[string]Key, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsauth: credentials directory: %w", err)
	}
	keys := map[string]Key{}
	for _, r := range roles {
		path := KeyFile(dir, r.Name)
		k, err := ReadKey(path)
		if errors.Is(err, os.ErrNotExist) {
			k, err = createKey(path)
		}
		if err != nil {
			return nil, err
		}
		keys[r.Name] = k
	}
	return keys, nil
}

// ReadKey reads the nkey seed file at path.
func ReadKey(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("natsauth: %w", err)
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return Key{}, fmt.Errorf("natsauth: %s: %w", path, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return Key{}, fmt.Errorf("natsauth: %s: %w", path, err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return Key{}, fmt.Errorf("natsauth: %s: %w", path, err)
	}
	return Key{Public: pub, Seed: seed}, nil
}

// NewKey generates a user nkey pair.
func NewKey() (Key, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Key{}, fmt.Errorf("natsauth: create nkey: %w", err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	return Key{Public: pub, Seed: seed}, nil
}

// WriteKey writes k's seed to path, readable by its owner only, in the
// decorated form nsc and the nats CLI (--nkey) read.
func WriteKey(path string, k Key) error {
	body := fmt.Sprintf("-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n\n"+
		"*************************************************************\n"+
		"NKEY seeds are sensitive and should be treated as secrets.\n"+
		"Public key: %s\n"+
		"*************************************************************\n", k.Seed, k.Public)
	// Write aside and rename: a crash never leaves half a key that the
	// next start would refuse.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return fmt.Errorf("natsauth: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("natsauth: write %s: %w", path, err)
	}
	return nil
}

func createKey(path string) (Key, error) {
	k, err := NewKey()
	if err != nil {
		return Key{}, err
	}
	return k, WriteKey(path, k)
}

// Users returns the server's nkey users for roles, each with its key from
// keys.
func Users(roles []Role, keys map[string]Key) ([]*server.NkeyUser, error) {
	users := make([]*server.NkeyUser, 0, len(roles))
	for _, r := range roles {
		k, ok := keys[r.Name]
		if !ok {
			return nil, fmt.Errorf("natsauth: no key for %s", r.Name)
		}
		users = append(users, &server.NkeyUser{Nkey: k.Public, Permissions: r.Permissions()})
	}
	return users, nil
}

// CredentialsOption returns the nats.go option that authenticates with the
// credentials file at path: an nkey seed file (what this package writes)
// or a JWT user credentials file (.creds, from nsc), told apart by their
// content.
func CredentialsOption(path string) (nats.Option, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("nats credentials: %w", err)
	}
	if strings.Contains(string(b), "BEGIN NATS USER JWT") {
		return nats.UserCredentials(path), nil
	}
	opt, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		return nil, fmt.Errorf("nats credentials %s: %w", path, err)
	}
	return opt, nil
}

// WriteAuthorization writes the server configuration block granting roles
// their permissions (nats-server's configuration format). No key is in it:
// each user's public nkey is the variable keyVar(name), which the server
// resolves from its environment, so the file can be shipped and reviewed
// as it is, and the keys come from a secret store.
func WriteAuthorization(w io.Writer, roles []Role, keyVar func(name string) string) error {
	var b strings.Builder
	b.WriteString("authorization {\n  users: [\n")
	for i, r := range roles {
		p := r.Permissions()
		fmt.Fprintf(&b, "    # %s\n    {\n      nkey: $%s\n      permissions: {\n", r.Name, keyVar(r.Name))
		writeSubjects(&b, "publish", p.Publish)
		writeSubjects(&b, "subscribe", p.Subscribe)
		if p.Response != nil {
			b.WriteString("        allow_responses: true\n")
		}
		b.WriteString("      }\n    }")
		if i < len(roles)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("  ]\n}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSubjects(b *strings.Builder, name string, p *server.SubjectPermission) {
	if p == nil {
		return
	}
	fmt.Fprintf(b, "        %s: {\n", name)
	for _, l := range []struct {
		name string
		subs []string
	}{{"allow", p.Allow}, {"deny", p.Deny}} {
		if len(l.subs) == 0 {
			continue
		}
		fmt.Fprintf(b, "          %s: [\n", l.name)
		for i, s := range l.subs {
			sep := ","
			if i == len(l.subs)-1 {
				sep = ""
			}
			fmt.Fprintf(b, "            %q%s\n", s, sep)
		}
		b.WriteString("          ]\n")
	}
	b.WriteString("        }\n")
}
