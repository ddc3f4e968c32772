package simulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/choreo-dev/choreo/events/httpx"
)

// Mode is how the simulator fails, if it does.
type Mode string

// The modes. Each applies to /v1 requests only.
const (
	// ModeNormal answers every request.
	ModeNormal Mode = "normal"
	// ModeDown answers 503 at once and does nothing: a provider outage
	// behind a load balancer.
	ModeDown Mode = "down"
	// ModeSlow handles the request at once but answers only after
	// ModeConfig.Latency (or when the client gives up): a client that
	// times out does not learn that its capture went through.
	ModeSlow Mode = "slow"
	// ModeError answers 500 at once and does nothing.
	ModeError Mode = "error"
	// ModeFlaky answers 500 to a fraction ModeConfig.Rate of requests:
	// half of them before the effect (nothing was done), half after it
	// (the charge was made and the answer lost — what idempotency keys
	// are for).
	ModeFlaky Mode = "flaky"
)

// Defaults of ModeConfig.
const (
	DefaultSlowLatency = 2 * time.Second
	DefaultFlakyRate   = 0.3
)

// ModeConfig is the outage mode and its parameters. On the wire:
// {"mode":"slow","latency":"2s","rate":0.3}.
type ModeConfig struct {
	Mode Mode
	// Latency is how late ModeSlow answers. 0: DefaultSlowLatency.
	Latency time.Duration
	// Rate is the probability in (0, 1] that ModeFlaky fails a request.
	// 0: DefaultFlakyRate.
	Rate float64
}

type modeJSON struct {
	Mode    Mode     `json:"mode"`
	Latency string   `json:"latency,omitempty"`
	Rate    *float64 `json:"rate,omitempty"`
}

// MarshalJSON writes the latency as a Go duration string.
func (m ModeConfig) MarshalJSON() ([]byte, error) {
	j := modeJSON{Mode: m.Mode}
	if m.Latency > 0 {
		j.Latency = m.Latency.String()
	}
	if m.Rate > 0 {
		j.Rate = &m.Rate
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads a latency written as a Go duration string ("2s",
// "500ms").
func (m *ModeConfig) UnmarshalJSON(b []byte) error {
	var j modeJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // a misspelt "rate" must not go unnoticed
	if err := dec.Decode(&j); err != nil {
		return err
	}
	*m = ModeConfig{Mode: j.Mode}
	if j.Latency != "" {
		d, err := time.ParseDuration(j.Latency)
		if err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		m.Latency = d
	}
	if j.Rate != nil {
		m.Rate = *j.Rate
	}
	return nil
}

// withDefaults fills in the parameters the mode uses and drops the others,
// so that Mode reports what is in force.
func (m ModeConfig) withDefaults() (ModeConfig, error) {
	switch m.Mode {
	case "", ModeNormal:
		return ModeConfig{Mode: ModeNormal}, nil
	case ModeDown, ModeError:
		return ModeConfig{Mode: m.Mode}, nil
	case ModeSlow:
		if m.Latency < 0 {
			return m, fmt.Errorf("simulator: latency %s must not be negative", m.Latency)
		}
		if m.Latency == 0 {
			m.Latency = DefaultSlowLatency
		}
		return ModeConfig{Mode: m.Mode, Latency: m.Latency}, nil
	case ModeFlaky:
		if m.Rate < 0 || m.Rate > 1 {
			return m, fmt.Errorf("simulator: rate %g must be between 0 and 1", m.Rate)
		}
		if m.Rate == 0 {
			m.Rate = DefaultFlakyRate
		}
		return ModeConfig{Mode: m.Mode, Rate: m.Rate}, nil
	}
	return m, fmt.Errorf("simulator: unknown mode %q (want normal, down, slow, error or flaky)", m.Mode)
}

// Mode returns the mode in force.
func (s *Server) Mode() ModeConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// SetMode switches the mode for requests that arrive from now on. An
// empty Mode is ModeNormal.
func (s *Server) SetMode(m ModeConfig) error {
	m, err := m.withDefaults()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.mode = m
	s.mu.Unlock()
	s.log.Info("simulator: mode changed", "mode", m.Mode, "latency", m.Latency, "rate", m.Rate)
	return nil
}

func (s *Server) postMode(w http.ResponseWriter, r *http.Request) {
	var m ModeConfig
	if !httpx.DecodeJSON(w, r, &m) {
		return
	}
	if err := s.SetMode(m); err != nil {
		httpx.WriteProblem(w, r, http.StatusUnprocessableEntity, "Invalid mode", err.Error())
		return
	}
	httpx.WriteJSON(w, http.StatusOK, s.Mode())
}
