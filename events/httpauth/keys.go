package httpauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"

	"github.com/golang-jwt/jwt/v5"
)

// keySet is the trusted public keys, by key id ("" for keys without one).
type keySet struct {
	byID map[string]crypto.PublicKey
	all  []jwt.VerificationKey
}

// lookup returns the key with id kid, or every key when kid is empty.
func (s keySet) lookup(kid string) []jwt.VerificationKey {
	if kid == "" {
		return s.all
	}
	if k, ok := s.byID[kid]; ok {
		return []jwt.VerificationKey{k}
	}
	// A PEM key has no id; a token naming one may still be signed by it.
	if k, ok := s.byID[""]; ok {
		return []jwt.VerificationKey{k}
	}
	return nil
}

func (s *keySet) add(kid string, k crypto.PublicKey) {
	if s.byID == nil {
		s.byID = map[string]crypto.PublicKey{}
	}
	if _, dup := s.byID[kid]; !dup || kid == "" {
		s.byID[kid] = k
	}
	s.all = append(s.all, k)
}

// maxKeyDocument bounds a key file or JWKS response.
const maxKeyDocument = 1 << 20

func loadKeyFile(path string) (keySet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return keySet{}, fmt.Errorf("httpauth: read key file: %w", err)
	}
	if len(b) > maxKeyDocument {
		return keySet{}, fmt.Errorf("httpauth: key file %s is over %d bytes", path, maxKeyDocument)
	}
	var ks keySet
	if trimmed := bytesTrimLeft(b); len(trimmed) > 0 && trimmed[0] == '{' {
		ks, err = parseJWKS(b)
	} else {
		ks, err = parsePEM(b)
	}
	if err != nil {
		return keySet{}, fmt.Errorf("httpauth: key file %s: %w", path, err)
	}
	return ks, nil
}

func bytesTrimLeft(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

func parsePEM(b []byte) (keySet, error) {
	var ks keySet
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		switch block.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return keySet{}, err
			}
			ks.add("", k)
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return keySet{}, err
			}
			ks.add("", c.PublicKey)
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(block.Bytes)
			if err != nil {
				return keySet{}, err
			}
			ks.add("", k)
		default:
			// A private key in the file is a mistake worth stopping for.
			return keySet{}, fmt.Errorf("PEM block %q: want PUBLIC KEY or CERTIFICATE", block.Type)
		}
	}
	if len(ks.all) == 0 {
		return keySet{}, errors.New("no PEM public key")
	}
	return ks, nil
}

func fetchJWKS(ctx context.Context, client *http.Client, url string) (keySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return keySet{}, fmt.Errorf("httpauth: JWKS %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return keySet{}, fmt.Errorf("httpauth: fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return keySet{}, fmt.Errorf("httpauth: fetch JWKS %s: status %d", url, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxKeyDocument))
	if err != nil {
		return keySet{}, fmt.Errorf("httpauth: fetch JWKS %s: %w", url, err)
	}
	ks, err := parseJWKS(b)
	if err != nil {
		return keySet{}, fmt.Errorf("httpauth: JWKS %s: %w", url, err)
	}
	return ks, nil
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
	D   string `json:"d"`
}

// parseJWKS reads the signature keys of a JWKS document (RFC 7517):
// RSA, EC (P-256, P-384, P-521) and OKP (Ed25519). Keys of other types or
// for encryption are skipped, so a provider that adds one does not break
// verification.
func parseJWKS(b []byte) (keySet, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return keySet{}, fmt.Errorf("malformed JWKS: %w", err)
	}
	var ks keySet
	for i, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.D != "" {
			return keySet{}, fmt.Errorf("key %d (%q) is a private key; publish only public keys", i, k.Kid)
		}
		pub, err := k.publicKey()
		if err != nil {
			return keySet{}, fmt.Errorf("key %d (%q): %w", i, k.Kid, err)
		}
		if pub != nil {
			ks.add(k.Kid, pub)
		}
	}
	if len(ks.all) == 0 {
		return keySet{}, errors.New("no signature key in JWKS")
	}
	return ks, nil
}

func (k jwk) publicKey() (crypto.PublicKey, error) {
	b64 := base64.RawURLEncoding.DecodeString
	switch k.Kty {
	case "RSA":
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err := errors.Join(err1, err2); err != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("bad RSA n or e: %v", err)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits; at least 2048 required", pub.N.BitLen())
		}
		return pub, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("bad EC x or y: %w", err)
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			return nil, fmt.Errorf("EC x or y is not %d bytes", size)
		}
		// The uncompressed point form lets crypto/ecdh check the point
		// is on the curve.
		pt := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, pt)
		if err != nil {
			return nil, fmt.Errorf("EC point: %w", err)
		}
		return pub, nil
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, fmt.Errorf("unsupported OKP curve %q", k.Crv)
		}
		x, err := b64(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 x")
		}
		return ed25519.PublicKey(x), nil
	default:
		return nil, nil
	}
}
