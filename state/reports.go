package state

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The report ledger: one claim per scheduled report occurrence and migration, so that however
// many replicas run the same schedule, one of them posts each occurrence.
//
// A claim is a string key holding the owner (the replica that claimed it); once the report is
// posted its value becomes "<owner> ts=<message ts>". Occurrence claims expire after
// ReportClaimTTL; the closing report's claim (after decommissioning) never expires.

// ReportClaimTTL is how long a settled occurrence claim (posted, or sent with an unknown
// outcome) lives: well over a day, so it outlives the catch-up window (24 hours) and any clock
// skew between replicas.
const ReportClaimTTL = 48 * time.Hour

// ReportLease is how long a claim lives before it is settled: longer than one attempt (checks
// and post), short enough that an occurrence claimed by a replica that died mid-attempt (a
// deploy at report time) can be posted by another.
const ReportLease = 5 * time.Minute

// uncertainTS marks a claim whose post timed out after it was sent: it may be in the channel.
const uncertainTS = "unknown"

// ReportClaim is what the ledger holds for one occurrence.
type ReportClaim struct {
	Owner string // the replica that claimed it
	TS    string // the posted message's ts; "" while not (yet) posted
}

// Posted reports whether the claim is settled: a posted message, or a post of unknown outcome.
func (c ReportClaim) Posted() bool { return c.TS != "" }

// Uncertain reports whether the post timed out after it was sent.
func (c ReportClaim) Uncertain() bool { return c.TS == uncertainTS }

// closingReport is the claim of the one report posted after decommissioning (no TTL).
// Kept next to the helpers in keys.go in spirit: same hash tag, same prefix.
func (k keys) closingReport(name string) string { return k.base(name) + "report:closing" }

// ClaimReport claims the report of occurrence for owner, for ReportLease. It returns true when
// the claim is new (owner must post the report), false when somebody already holds it.
func (s *Store) ClaimReport(ctx context.Context, name string, occurrence time.Time, owner string) (bool, error) {
	return s.claim(ctx, "claim report "+name, s.keys.report(name, occurrence.Unix()), owner, ReportLease)
}

// ReportPosted records the ts of the message that was posted for occurrence and keeps the claim
// for ReportClaimTTL.
func (s *Store) ReportPosted(ctx context.Context, name string, occurrence time.Time, ts string) error {
	return s.posted(ctx, "record report "+name, s.keys.report(name, occurrence.Unix()), ts)
}

// ReportUncertain settles the claim of an occurrence whose post timed out after it was sent:
// it may be in the channel, so nobody may post it again (for ReportClaimTTL).
func (s *Store) ReportUncertain(ctx context.Context, name string, occurrence time.Time) error {
	return s.posted(ctx, "record uncertain report "+name, s.keys.report(name, occurrence.Unix()), uncertainTS)
}

// ReleaseReport drops owner's claim of occurrence after a failed post, so another attempt or
// replica can post it. It does nothing (and returns false) when the claim is no longer owner's
// or already records a posted message.
func (s *Store) ReleaseReport(ctx context.Context, name string, occurrence time.Time, owner string) (bool, error) {
	return s.release(ctx, "release report "+name, s.keys.report(name, occurrence.Unix()), owner)
}

// GetReportClaim returns the claim of occurrence, or ErrNotFound.
func (s *Store) GetReportClaim(ctx context.Context, name string, occurrence time.Time) (ReportClaim, error) {
	return s.getClaim(ctx, "get report claim "+name, s.keys.report(name, occurrence.Unix()))
}

// ClaimClosingReport claims the one closing report of a decommissioned migration.
func (s *Store) ClaimClosingReport(ctx context.Context, name, owner string) (bool, error) {
	return s.claim(ctx, "claim closing report "+name, s.keys.closingReport(name), owner, 0)
}

// ClosingReportPosted records the ts of the closing report.
func (s *Store) ClosingReportPosted(ctx context.Context, name, ts string) error {
	return s.posted(ctx, "record closing report "+name, s.keys.closingReport(name), ts)
}

// ReleaseClosingReport drops owner's claim of the closing report after a failed post.
func (s *Store) ReleaseClosingReport(ctx context.Context, name, owner string) (bool, error) {
	return s.release(ctx, "release closing report "+name, s.keys.closingReport(name), owner)
}

// GetClosingReportClaim returns the claim of the closing report, or ErrNotFound.
func (s *Store) GetClosingReportClaim(ctx context.Context, name string) (ReportClaim, error) {
	return s.getClaim(ctx, "get closing report claim "+name, s.keys.closingReport(name))
}

// claim is SET key owner NX [EX ttl].
func (s *Store) claim(ctx context.Context, op, key, owner string, ttl time.Duration) (bool, error) {
	err := s.rdb.SetArgs(ctx, key, ownerID(owner), redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, wrap(op, err)
	}
	return true, nil
}

// postedScript records the posted message's ts in a claim, keeping its owner; a claim with a
// lease gets the settled TTL, one without a TTL (the closing report) keeps none.
//
// KEYS[1] the claim; ARGV[1] the ts; ARGV[2] the settled TTL in ms.
// Returns 1 when recorded, 0 when the claim no longer exists (it expired: nothing to record).
var postedScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local owner = string.match(v, '^[^ ]*')
if redis.call('PTTL', KEYS[1]) > 0 then
  redis.call('SET', KEYS[1], owner .. ' ts=' .. ARGV[1], 'PX', ARGV[2])
else
  redis.call('SET', KEYS[1], owner .. ' ts=' .. ARGV[1])
end
return 1
`)

func (s *Store) posted(ctx context.Context, op, key, ts string) error {
	n, err := postedScript.Run(ctx, s.rdb, []string{key}, ts, ReportClaimTTL.Milliseconds()).Int()
	if err != nil {
		return wrap(op, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// releaseScript deletes a claim only if it is still the given owner's and records no post
// (compare-and-delete), so a later owner's claim is never dropped.
//
// KEYS[1] the claim; ARGV[1] the owner.
// Returns 1 when deleted, 0 otherwise.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

func (s *Store) release(ctx context.Context, op, key, owner string) (bool, error) {
	n, err := releaseScript.Run(ctx, s.rdb, []string{key}, ownerID(owner)).Int()
	if err != nil {
		return false, wrap(op, err)
	}
	return n == 1, nil
}

func (s *Store) getClaim(ctx context.Context, op, key string) (ReportClaim, error) {
	v, err := s.rdb.Get(ctx, key).Result()
	if err != nil {
		return ReportClaim{}, wrap(op, err)
	}
	owner, rest, _ := strings.Cut(v, " ")
	return ReportClaim{Owner: owner, TS: strings.TrimPrefix(rest, "ts=")}, nil
}

// ownerID makes owner usable as a claim value: no spaces (the value is "<owner> ts=<ts>" once
// posted), never empty.
func ownerID(owner string) string {
	if owner == "" {
		return "unknown"
	}
	return strings.ReplaceAll(owner, " ", "_")
}
