// Package state holds the phases of a migration and the transition table, and keeps each
// migration's record, audit stream and decommission challenge in Redis. Every change of a record
// is one atomic Lua script that checks the expected phase and version and appends its audit
// entry in the same step. Redis types stop here: callers see Record, Event and the sentinel
// errors ErrNotFound, ErrConflict, ErrInvalidTransition and ErrUnavailable.
package state
