package state

import (
	"errors"
	"fmt"
)

// Phase is where a migration stands.
type Phase string

const (
	// None is the phase of a migration that has no state in Redis.
	None           Phase = ""
	Proxied        Phase = "proxied"
	Cutover        Phase = "cutover"
	Decommissioned Phase = "decommissioned"
)

// Phases lists the phases a record can be in, in order.
var Phases = []Phase{Proxied, Cutover, Decommissioned}

// ParsePhase accepts the name of a stored phase.
func ParsePhase(s string) (Phase, error) {
	for _, p := range Phases {
		if string(p) == s {
			return p, nil
		}
	}
	return None, fmt.Errorf("unknown phase %q (want proxied, cutover or decommissioned)", s)
}

// Event is what moves a migration between phases.
type Event string

const (
	EventInit         Event = "init"
	EventCutover      Event = "cutover"
	EventRollback     Event = "rollback"
	EventDecommission Event = "decommission"
	EventExtend       Event = "extend"
)

// Events lists every event, for the transition table test.
var Events = []Event{EventInit, EventCutover, EventRollback, EventDecommission, EventExtend}

// ErrInvalidTransition is returned when an event does not apply to the current phase.
var ErrInvalidTransition = errors.New("invalid transition")

// TransitionError says why an event does not apply to a phase.
type TransitionError struct {
	From  Phase
	Event Event
	Why   string
	// Repeated: the event's phase is the current one already (a repeated or racing command).
	Repeated bool
}

func (e *TransitionError) Error() string { return e.Why }

func (e *TransitionError) Unwrap() error { return ErrInvalidTransition }

// Next returns the phase that event leads to from phase from. Init is only valid without state
// (it creates a record; the target phase is chosen by the caller). Extend stays in cutover.
func Next(from Phase, ev Event) (Phase, error) {
	refuse := func(why string) (Phase, error) {
		return from, &TransitionError{From: from, Event: ev, Why: why}
	}
	again := func(why string) (Phase, error) {
		return from, &TransitionError{From: from, Event: ev, Why: why, Repeated: true}
	}
	if from == None && ev != EventInit {
		return refuse("no state")
	}
	switch ev {
	case EventInit:
		if from != None {
			return again("already initialised")
		}
		return Proxied, nil
	case EventCutover:
		switch from {
		case Proxied:
			return Cutover, nil
		case Cutover:
			return again("already in cutover")
		}
		return refuse("decommissioned is final")
	case EventRollback:
		switch from {
		case Cutover:
			return Proxied, nil
		case Proxied:
			return again("nothing to roll back: already proxied")
		}
		return refuse("decommissioned is final: the source is gone, there is nothing to roll back to")
	case EventDecommission:
		switch from {
		case Cutover:
			return Decommissioned, nil
		case Proxied:
			return refuse("decommission needs cutover first")
		}
		return again("already decommissioned")
	case EventExtend:
		switch from {
		case Cutover:
			return Cutover, nil
		case Proxied:
			return refuse("the confidence period starts at cutover")
		}
		return refuse("decommissioned is final")
	}
	return refuse(fmt.Sprintf("unknown event %q", ev))
}
