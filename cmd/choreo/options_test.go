package main

import "testing"

// A size flag reads decimal and binary units, and -h shows its default
// in the largest binary unit that divides it.
func TestSizeFlag(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"7", 7}, {"100B", 100}, {"500KB", 500_000}, {"2MB", 2_000_000}, {"1GB", 1_000_000_000},
		{"4KiB", 4 << 10}, {"512MiB", 512 << 20}, {"1GiB", 1 << 30}, {" 3 GiB ", 3 << 30}, {"0", 0},
	} {
		var s size
		if err := s.Set(c.in); err != nil || int64(s) != c.want {
			t.Errorf("Set(%q) = %d, %v; want %d", c.in, int64(s), err, c.want)
		}
	}
	for _, in := range []string{"", "1.5MB", "-1", "12XB", "MiB"} {
		var s size
		if err := s.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, int64(s))
		}
	}
	for n, want := range map[int64]string{0: "0", 30 << 20: "30MiB", 1 << 30: "1GiB", 1536: "1536", 3 << 10: "3KiB", 1000: "1000"} {
		if s := size(n); s.String() != want {
			t.Errorf("size(%d).String() = %q, want %q", n, s.String(), want)
		}
	}
}
