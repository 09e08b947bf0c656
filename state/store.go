package state

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel errors; callers check them with errors.Is.
var (
	// ErrNotFound: the migration has no state (never initialised, or Redis lost it).
	ErrNotFound = errors.New("no state")
	// ErrConflict: the record was not in the expected phase and version; see ConflictError.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: Redis did not answer (down, slow, or refused the command).
	ErrUnavailable = errors.New("state store unavailable")
	// ErrMaybeApplied: a change was sent and Redis did not answer in time: it may still be
	// applied (whole: every change is one script). Always wrapped with ErrUnavailable.
	ErrMaybeApplied = errors.New("outcome unknown")
)

// ConflictError carries the record as it was when a change was refused.
type ConflictError struct{ Current Record }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("conflict: %s is in %s (version %d)", e.Current.Name, e.Current.Phase, e.Current.Version)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// DuplicateError: the same Slack delivery (Change.Delivery) was already applied; nothing
// changed now. It carries the current record.
type DuplicateError struct{ Current Record }

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("duplicate delivery: %s is in %s (version %d)", e.Current.Name, e.Current.Phase, e.Current.Version)
}

// DeliveryTTL is how long a delivery is remembered: longer than the 5 minutes a signed Slack
// request stays valid, so a replayed or redelivered request is caught.
const DeliveryTTL = 10 * time.Minute

// Record is the state of one migration.
type Record struct {
	Name           string
	Phase          Phase
	Version        int64 // incremented by every change
	Since          time.Time
	By             string // Slack user ID of who made the last change
	Reason         string
	RequestID      string
	CutoverAt      time.Time // start of the confidence period; zero outside cutover
	ConfidenceDays int
}

// ConfidenceEnds is the earliest time the source may be decommissioned.
func (r Record) ConfidenceEnds() time.Time {
	return r.CutoverAt.Add(time.Duration(r.ConfidenceDays) * 24 * time.Hour)
}

// Entry is one audit event.
type Entry struct {
	ID        string
	At        time.Time
	By        string
	Event     string
	From      Phase
	To        Phase
	Reason    string
	RequestID string
	Result    string // "ok", or "refused: <why>"
}

// Change is one transition: from the expected phase and version to Next, recorded as Audit.
type Change struct {
	From    Phase // expected current phase; None means the record must not exist (init)
	Version int64 // expected current version; 0 accepts any
	Next    Record
	Audit   Entry
	// Delivery identifies the Slack request the change came from (its trigger_id), the same on
	// every redelivery: a delivery already applied is answered with a *DuplicateError. Empty:
	// not checked.
	Delivery string
}

// Store keeps migration state in Redis.
type Store struct {
	rdb      redis.UniversalClient
	keys     keys
	auditCap int64
}

// DefaultAuditCap is how many audit entries a migration keeps.
const DefaultAuditCap = 1000

// NewStore returns a store using keys under prefix (DefaultPrefix when empty).
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Store{rdb: rdb, keys: keys{prefix}, auditCap: DefaultAuditCap}
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return wrap("ping", s.rdb.Ping(ctx).Err())
}

// Get returns the record of a migration, or ErrNotFound.
func (s *Store) Get(ctx context.Context, name string) (Record, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.state(name)).Result()
	if err != nil {
		return Record{}, wrap("get "+name, err)
	}
	if len(m) == 0 {
		return Record{}, ErrNotFound
	}
	return decodeRecord(name, m), nil
}

// Snapshot is what status shows: the record, the last audit events and the last check results.
type Snapshot struct {
	Record Record
	Found  bool
	Events []Entry           // newest first
	Checks map[string]string // check id -> stored JSON
}

// Snapshot reads a migration's record, its last n events and its check results in one round trip.
// A missing record is not an error: Found is false.
func (s *Store) Snapshot(ctx context.Context, name string, n int64) (Snapshot, error) {
	var rec *redis.MapStringStringCmd
	var events *redis.XMessageSliceCmd
	var checks *redis.MapStringStringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rec = p.HGetAll(ctx, s.keys.state(name))
		events = p.XRevRangeN(ctx, s.keys.audit(name), "+", "-", n)
		checks = p.HGetAll(ctx, s.keys.checks(name))
		return nil
	})
	if err != nil {
		return Snapshot{}, wrap("snapshot "+name, err)
	}
	snap := Snapshot{Checks: checks.Val()}
	if m := rec.Val(); len(m) > 0 {
		snap.Found = true
		snap.Record = decodeRecord(name, m)
	}
	for _, msg := range events.Val() {
		snap.Events = append(snap.Events, decodeEntry(msg))
	}
	return snap, nil
}

// History returns the last n audit events, newest first.
func (s *Store) History(ctx context.Context, name string, n int64) ([]Entry, error) {
	msgs, err := s.rdb.XRevRangeN(ctx, s.keys.audit(name), "+", "-", n).Result()
	if err != nil {
		return nil, wrap("history "+name, err)
	}
	out := make([]Entry, 0, len(msgs))
	for _, msg := range msgs {
		out = append(out, decodeEntry(msg))
	}
	return out, nil
}

// Audit appends an entry that changes no state (a refused request, for instance).
func (s *Store) Audit(ctx context.Context, name string, e Entry) error {
	err := s.rdb.XAdd(ctx, &redis.XAddArgs{
		Stream: s.keys.audit(name),
		MaxLen: s.auditCap,
		Values: entryFields(e),
	}).Err()
	return wrap("audit "+name, err)
}

// SaveChecks stores the last results of checks, as JSON by check id.
func (s *Store) SaveChecks(ctx context.Context, name string, results map[string]string) error {
	if len(results) == 0 {
		return nil
	}
	return wrap("save checks "+name, s.rdb.HSet(ctx, s.keys.checks(name), results).Err())
}

// transitionScript applies a Change atomically.
//
// KEYS[1] state hash, KEYS[2] audit stream, KEYS[3] check results hash, KEYS[4] decommission
// challenge (dropped when the phase changes: a phrase issued in cutover means nothing after a
// rollback), KEYS[5] (optional) the marker of the Slack delivery, kept for DeliveryTTL
// ARGV[1] expected phase ("" = the record must not exist), ARGV[2] expected version ("0" = any),
// ARGV[3] audit cap, ARGV[4] n = number of record field/value pairs, ARGV[5] a = number of audit
// field/value pairs, ARGV[6] the request id, then the new record's n pairs, the audit entry's a
// pairs, and the rest: check results (id/JSON pairs) to store with the change.
// Returns {"ok", {record...}, {checks...}} with the new record and every stored check result,
// {"conflict", {record...}, {}} with the current record, {"duplicate", {record...}, {}} when the
// delivery was applied before, or {"notfound", {}, {}}. The record gets version = old version
// + 1 and replaces the old one whole. Running the script again for the same request (a client
// retry after a lost reply) returns "ok" and changes nothing.
var transitionScript = redis.NewScript(`
local cur = redis.call('HGETALL', KEYS[1])
local version = 0
local n, a = tonumber(ARGV[4]), tonumber(ARGV[5])
local first, audit, checks = 7, 7 + 2 * n, 7 + 2 * n + 2 * a
local newPhase = ''
for i = first, audit - 1, 2 do
  if ARGV[i] == 'phase' then newPhase = ARGV[i + 1] end
end
local rec = {}
for i = 1, #cur, 2 do rec[cur[i]] = cur[i + 1] end
if #cur > 0 and ARGV[6] ~= '' and rec['request_id'] == ARGV[6] and rec['phase'] == newPhase then
  return {'ok', cur, redis.call('HGETALL', KEYS[3])}
end
if KEYS[5] and redis.call('EXISTS', KEYS[5]) == 1 then
  return {'duplicate', cur, {}}
end
if #cur == 0 then
  if ARGV[1] ~= '' then return {'notfound', {}, {}} end
else
  if ARGV[1] == '' or rec['phase'] ~= ARGV[1] or (ARGV[2] ~= '0' and rec['version'] ~= ARGV[2]) then
    return {'conflict', cur, {}}
  end
  version = tonumber(rec['version']) or 0
end
version = version + 1
local fields = {'version', tostring(version)}
for i = first, audit - 1 do fields[#fields + 1] = ARGV[i] end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(fields))
if newPhase ~= ARGV[1] then redis.call('DEL', KEYS[4]) end
local xadd = {'XADD', KEYS[2], 'MAXLEN', ARGV[3], '*', 'version', tostring(version)}
for i = audit, checks - 1 do xadd[#xadd + 1] = ARGV[i] end
redis.call(unpack(xadd))
if KEYS[5] then redis.call('SET', KEYS[5], ARGV[6], 'PX', '` + strconv.FormatInt(DeliveryTTL.Milliseconds(), 10) + `') end
if #ARGV >= checks then
  local hset = {'HSET', KEYS[3]}
  for i = checks, #ARGV do hset[#hset + 1] = ARGV[i] end
  redis.call(unpack(hset))
end
return {'ok', redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[3])}
`)

// Apply performs a change in one atomic round trip. It returns the new record, or a
// *ConflictError (errors.Is ErrConflict) with the current record when the phase or version did
// not match, or ErrNotFound when the record is missing and the change expected one.
func (s *Store) Apply(ctx context.Context, name string, c Change) (Record, error) {
	rec, _, err := s.ApplyWithChecks(ctx, name, c, nil)
	return rec, err
}

// ApplyWithChecks is Apply that also stores check results (id -> JSON) with the change, and
// returns every stored check result, still in the same round trip.
func (s *Store) ApplyWithChecks(ctx context.Context, name string, c Change, checks map[string]string) (Record, map[string]string, error) {
	c.Next.Name = name
	c.Audit.From, c.Audit.To = c.From, c.Next.Phase
	if c.Audit.Result == "" {
		c.Audit.Result = "ok"
	}
	rf, af := recordFields(c.Next), entryFields(c.Audit)
	args := []any{string(c.From), c.Version, s.auditCap, len(rf) / 2, len(af) / 2, c.Next.RequestID}
	args = append(args, rf...)
	args = append(args, af...)
	for id, js := range checks {
		args = append(args, id, js)
	}
	keys := []string{s.keys.state(name), s.keys.audit(name), s.keys.checks(name), s.keys.challenge(name)}
	if c.Delivery != "" {
		keys = append(keys, s.keys.delivery(name, c.Delivery))
	}
	res, err := transitionScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return Record{}, nil, wrapWrite(fmt.Sprintf("apply %s to %s", c.Audit.Event, name), err)
	}
	if len(res) != 3 {
		return Record{}, nil, fmt.Errorf("%w: unexpected script reply %v", ErrUnavailable, res)
	}
	status, _ := res[0].(string)
	rec, stored := replyStrings(res[1]), pairs(replyStrings(res[2]))
	switch status {
	case "ok":
		return decodeRecord(name, pairs(rec)), stored, nil
	case "conflict":
		return Record{}, nil, &ConflictError{Current: decodeRecord(name, pairs(rec))}
	case "duplicate":
		return Record{}, nil, &DuplicateError{Current: decodeRecord(name, pairs(rec))}
	case "notfound":
		return Record{}, nil, ErrNotFound
	}
	return Record{}, nil, fmt.Errorf("%w: unexpected script reply %q", ErrUnavailable, status)
}

// replyStrings converts a nested script reply (a Redis array of bulk strings) to []string.
func replyStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// challengeScript records a decommission challenge if the record is still in cutover at the
// expected version, replacing any pending one.
//
// KEYS[1] state hash, KEYS[2] audit stream, KEYS[3] challenge hash
// ARGV[1] expected version, ARGV[2] audit cap, ARGV[3] user, ARGV[4] phrase, ARGV[5] expiry
// (unix ms), ARGV[6] TTL in ms, the rest the audit entry's field/value pairs.
// Returns {"ok", replaced, record...} where replaced is the user of a still-valid challenge of
// someone else that this one replaces (or ""), {"conflict", "", record...} or {"notfound", ""}.
var challengeScript = redis.NewScript(`
local cur = redis.call('HGETALL', KEYS[1])
if #cur == 0 then return {'notfound', ''} end
local rec = {}
for i = 1, #cur, 2 do rec[cur[i]] = cur[i + 1] end
if rec['phase'] ~= 'cutover' or rec['version'] ~= ARGV[1] then
  table.insert(cur, 1, '')
  table.insert(cur, 1, 'conflict')
  return cur
end
local now = tonumber(ARGV[5]) - tonumber(ARGV[6])
local prev = redis.call('HGET', KEYS[3], 'user')
local prevExpires = tonumber(redis.call('HGET', KEYS[3], 'expires') or '0') or 0
local replaced = ''
if prev and prev ~= ARGV[3] and prevExpires > now then replaced = prev end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], 'user', ARGV[3], 'phrase', ARGV[4], 'expires', ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
local xadd = {'XADD', KEYS[2], 'MAXLEN', ARGV[2], '*'}
for i = 7, #ARGV do xadd[#xadd + 1] = ARGV[i] end
redis.call(unpack(xadd))
table.insert(cur, 1, replaced)
table.insert(cur, 1, 'ok')
return cur
`)

// Challenge records that user must type phrase before expires to decommission, provided the
// record is still in cutover at version. The audit entry is written with it. replaced is the
// user whose still-valid challenge this one replaces ("" when none).
func (s *Store) Challenge(ctx context.Context, name string, version int64, user, phrase string, expires time.Time, ttl time.Duration, audit Entry) (rec Record, replaced string, err error) {
	audit.From, audit.To = Cutover, Cutover
	if audit.Result == "" {
		audit.Result = "ok"
	}
	args := []any{version, s.auditCap, user, phrase, expires.UnixMilli(), ttl.Milliseconds()}
	args = append(args, entryFields(audit)...)
	res, err := challengeScript.Run(ctx, s.rdb, []string{s.keys.state(name), s.keys.audit(name), s.keys.challenge(name)}, args...).StringSlice()
	if err != nil {
		return Record{}, "", wrapWrite("challenge "+name, err)
	}
	if len(res) < 2 {
		return Record{}, "", fmt.Errorf("%w: unexpected script reply %q", ErrUnavailable, res)
	}
	rec, err = scriptResult(name, append([]string{res[0]}, res[2:]...))
	return rec, res[1], err
}

// Refusal reasons of Confirm.
const (
	RefusedPhase       = "not in cutover"
	RefusedNoChallenge = "no decommission requested"
	RefusedExpired     = "challenge expired"
	RefusedOtherUser   = "challenge belongs to another user"
	RefusedPhrase      = "wrong phrase"
	RefusedEarly       = "confidence period not over"
)

// RefusedError is a decommission confirmation that was refused (and audited).
type RefusedError struct {
	Why     string // one of the Refused* constants
	Current Record
	Owner   string // the user the challenge belongs to, for RefusedOtherUser
}

func (e *RefusedError) Error() string { return "decommission refused: " + e.Why }

// confirmScript checks a decommission confirmation and, if everything holds, moves the record to
// decommissioned; either way it appends the audit entry (with the result).
//
// KEYS[1] state hash, KEYS[2] audit stream, KEYS[3] challenge hash
// ARGV[1] user, ARGV[2] phrase, ARGV[3] now (unix ms), ARGV[4] audit cap,
// ARGV[5] n = number of record field/value pairs, ARGV[6..5+2n] the fields to set on success,
// the rest the audit entry's field/value pairs (without from, to, result).
// Returns {"ok", record...}, {"refused", why, owner, record...} or {"notfound"}. Running it again
// for the request that decommissioned (a client retry after a lost reply) returns "ok".
var confirmScript = redis.NewScript(`
local cur = redis.call('HGETALL', KEYS[1])
if #cur == 0 then return {'notfound'} end
local rec = {}
for i = 1, #cur, 2 do rec[cur[i]] = cur[i + 1] end
local now = tonumber(ARGV[3])
local n = tonumber(ARGV[5])
local reqid = ''
for i = 6, 5 + 2 * n, 2 do
  if ARGV[i] == 'request_id' then reqid = ARGV[i + 1] end
end
if reqid ~= '' and rec['phase'] == 'decommissioned' and rec['request_id'] == reqid then
  table.insert(cur, 1, 'ok')
  return cur
end
local why = nil
local owner = ''
if rec['phase'] ~= 'cutover' then
  why = '` + RefusedPhase + `'
else
  local c = {}
  local ch = redis.call('HGETALL', KEYS[3])
  for i = 1, #ch, 2 do c[ch[i]] = ch[i + 1] end
  owner = c['user'] or ''
  if not c['user'] then
    why = '` + RefusedNoChallenge + `'
  elseif tonumber(c['expires']) <= now then
    why = '` + RefusedExpired + `'
    redis.call('DEL', KEYS[3])
  elseif c['user'] ~= ARGV[1] then
    why = '` + RefusedOtherUser + `'
  elseif c['phrase'] ~= ARGV[2] then
    why = '` + RefusedPhrase + `'
  elseif (tonumber(rec['cutover_at']) or 0) + (tonumber(rec['confidence_days']) or 0) * 86400000 > now then
    why = '` + RefusedEarly + `'
  end
end
local xadd = {'XADD', KEYS[2], 'MAXLEN', ARGV[4], '*'}
for i = 6 + 2 * n, #ARGV do xadd[#xadd + 1] = ARGV[i] end
xadd[#xadd + 1] = 'from'
xadd[#xadd + 1] = rec['phase']
if why then
  for _, v in ipairs({'to', rec['phase'], 'result', 'refused: ' .. why}) do xadd[#xadd + 1] = v end
  redis.call(unpack(xadd))
  local out = {'refused', why, owner}
  for _, v in ipairs(cur) do out[#out + 1] = v end
  return out
end
local version = tostring((tonumber(rec['version']) or 0) + 1)
local fields = {'version', version}
for i = 6, 5 + 2 * n do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('DEL', KEYS[3])
for _, v in ipairs({'to', 'decommissioned', 'result', 'ok', 'version', version}) do xadd[#xadd + 1] = v end
redis.call(unpack(xadd))
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, 'ok')
return out
`)

// Confirm checks user's phrase against the pending challenge at now and, if it holds and the
// confidence period is over, moves the migration to decommissioned. A refusal returns a
// *RefusedError; either outcome is audited in the same atomic step.
func (s *Store) Confirm(ctx context.Context, name, user, phrase string, now time.Time, audit Entry) (Record, error) {
	audit.By = user
	rf := []any{
		"phase", string(Decommissioned),
		"since", now.UnixMilli(),
		"by", user,
		"reason", "decommission confirmed with the typed phrase",
		"request_id", audit.RequestID,
	}
	args := []any{user, phrase, now.UnixMilli(), s.auditCap, len(rf) / 2}
	args = append(args, rf...)
	args = append(args, "at", audit.At.UnixMilli(), "by", audit.By, "event", audit.Event, "reason", audit.Reason, "request_id", audit.RequestID)
	res, err := confirmScript.Run(ctx, s.rdb, []string{s.keys.state(name), s.keys.audit(name), s.keys.challenge(name)}, args...).StringSlice()
	if err != nil {
		return Record{}, wrapWrite("confirm decommission of "+name, err)
	}
	if len(res) >= 3 && res[0] == "refused" {
		return Record{}, &RefusedError{Why: res[1], Owner: res[2], Current: decodeRecord(name, pairs(res[3:]))}
	}
	return scriptResult(name, res)
}

func scriptResult(name string, res []string) (Record, error) {
	if len(res) == 0 {
		return Record{}, fmt.Errorf("%w: empty script reply", ErrUnavailable)
	}
	switch res[0] {
	case "ok":
		return decodeRecord(name, pairs(res[1:])), nil
	case "conflict":
		return Record{}, &ConflictError{Current: decodeRecord(name, pairs(res[1:]))}
	case "notfound":
		return Record{}, ErrNotFound
	}
	return Record{}, fmt.Errorf("%w: unexpected script reply %q", ErrUnavailable, res[0])
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, redis.Nil) {
		return ErrNotFound
	}
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

// wrapWrite is wrap for a change: a timeout means the change may have reached Redis.
func wrapWrite(op string, err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%s: %w: %w: %w", op, ErrUnavailable, ErrMaybeApplied, err)
	}
	return wrap(op, err)
}

func pairs(flat []string) map[string]string {
	m := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		m[flat[i]] = flat[i+1]
	}
	return m
}

func recordFields(r Record) []any {
	return []any{
		"phase", string(r.Phase),
		"since", ms(r.Since),
		"by", r.By,
		"reason", r.Reason,
		"request_id", r.RequestID,
		"cutover_at", ms(r.CutoverAt),
		"confidence_days", r.ConfidenceDays,
	}
}

func decodeRecord(name string, m map[string]string) Record {
	return Record{
		Name:           name,
		Phase:          Phase(m["phase"]),
		Version:        atoi(m["version"]),
		Since:          fromMS(m["since"]),
		By:             m["by"],
		Reason:         m["reason"],
		RequestID:      m["request_id"],
		CutoverAt:      fromMS(m["cutover_at"]),
		ConfidenceDays: int(atoi(m["confidence_days"])),
	}
}

func entryFields(e Entry) []any {
	return []any{
		"at", ms(e.At),
		"by", e.By,
		"event", e.Event,
		"from", string(e.From),
		"to", string(e.To),
		"reason", e.Reason,
		"request_id", e.RequestID,
		"result", e.Result,
	}
}

func decodeEntry(msg redis.XMessage) Entry {
	get := func(k string) string {
		s, _ := msg.Values[k].(string)
		return s
	}
	return Entry{
		ID:        msg.ID,
		At:        fromMS(get("at")),
		By:        get("by"),
		Event:     get("event"),
		From:      Phase(get("from")),
		To:        Phase(get("to")),
		Reason:    get("reason"),
		RequestID: get("request_id"),
		Result:    get("result"),
	}
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(s string) time.Time {
	n := atoi(s)
	if n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Prefix is the key prefix in use.
func (s *Store) Prefix() string { return s.keys.prefix }
