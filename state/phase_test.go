package state

import (
	"errors"
	"fmt"
	"testing"
)

// TestNext covers every (phase x event) pair, including a migration without state.
func TestNext(t *testing.T) {
	const refused = Phase("refused")
	want := map[Phase]map[Event]Phase{
		None:           {EventInit: Proxied, EventCutover: refused, EventRollback: refused, EventDecommission: refused, EventExtend: refused},
		Proxied:        {EventInit: refused, EventCutover: Cutover, EventRollback: refused, EventDecommission: refused, EventExtend: refused},
		Cutover:        {EventInit: refused, EventCutover: refused, EventRollback: Proxied, EventDecommission: Decommissioned, EventExtend: Cutover},
		Decommissioned: {EventInit: refused, EventCutover: refused, EventRollback: refused, EventDecommission: refused, EventExtend: refused},
	}
	phases := append([]Phase{None}, Phases...)
	for _, from := range phases {
		for _, ev := range Events {
			t.Run(fmt.Sprintf("%s/%s", orNone(from), ev), func(t *testing.T) {
				w, ok := want[from][ev]
				if !ok {
					t.Fatalf("table has no entry for (%q, %q): add it", from, ev)
				}
				got, err := Next(from, ev)
				if w == refused {
					if !errors.Is(err, ErrInvalidTransition) {
						t.Fatalf("got %q, %v; want ErrInvalidTransition", got, err)
					}
					if got != from {
						t.Errorf("refused transition moved to %q, want it to stay %q", got, from)
					}
					if err.Error() == "" {
						t.Error("refusal has no reason")
					}
					return
				}
				if err != nil || got != w {
					t.Fatalf("got %q, %v; want %q", got, err, w)
				}
			})
		}
	}
	if _, err := Next(Proxied, Event("bogus")); !errors.Is(err, ErrInvalidTransition) {
		t.Errorf("unknown event: got %v, want ErrInvalidTransition", err)
	}
}

func TestNextReasons(t *testing.T) {
	cases := []struct {
		from Phase
		ev   Event
		want string
	}{
		{Cutover, EventCutover, "already in cutover"},
		{Decommissioned, EventRollback, "decommissioned is final: the source is gone, there is nothing to roll back to"},
		{Proxied, EventRollback, "nothing to roll back: already proxied"},
		{Proxied, EventDecommission, "decommission needs cutover first"},
	}
	for _, c := range cases {
		_, err := Next(c.from, c.ev)
		if err == nil || err.Error() != c.want {
			t.Errorf("Next(%s, %s): got %v, want %q", c.from, c.ev, err, c.want)
		}
	}
}

func orNone(p Phase) string {
	if p == None {
		return "none"
	}
	return string(p)
}

func TestParsePhase(t *testing.T) {
	for _, p := range Phases {
		if got, err := ParsePhase(string(p)); err != nil || got != p {
			t.Errorf("ParsePhase(%q) = %q, %v", p, got, err)
		}
	}
	for _, bad := range []string{"", "Cutover", "none", "decommission"} {
		if _, err := ParsePhase(bad); err == nil {
			t.Errorf("ParsePhase(%q): got nil error", bad)
		}
	}
}
