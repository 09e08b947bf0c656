package state

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/migrationbot/migrationbot/internal/testredis"
)

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// backends runs a test against miniredis and against the real redis-server.
func backends(t *testing.T, f func(t *testing.T, s *Store, rdb redis.UniversalClient)) {
	t.Run("miniredis", func(t *testing.T) {
		_, rdb := testredis.Mini(t)
		f(t, NewStore(rdb, testredis.Prefix()), rdb)
	})
	t.Run("redis-server", func(t *testing.T) {
		rdb, prefix := testredis.Real(t)
		f(t, NewStore(rdb, prefix), rdb)
	})
}

func initChange(by string, at time.Time) Change {
	return Change{
		From:  None,
		Next:  Record{Phase: Proxied, Since: at, By: by, Reason: "initialised", ConfidenceDays: 14},
		Audit: Entry{At: at, By: by, Event: string(EventInit)},
	}
}

func cutoverChange(version int64, by string, at time.Time) Change {
	return Change{
		From: Proxied, Version: version,
		Next:  Record{Phase: Cutover, Since: at, By: by, Reason: "gate passed", CutoverAt: at, ConfidenceDays: 14},
		Audit: Entry{At: at, By: by, Event: string(EventCutover), RequestID: "req-1"},
	}
}

func TestStoreApply(t *testing.T) {
	backends(t, func(t *testing.T, s *Store, rdb redis.UniversalClient) {
		ctx := context.Background()
		if _, err := s.Get(ctx, "m1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get before init: got %v, want ErrNotFound", err)
		}
		if _, err := s.Apply(ctx, "m1", cutoverChange(0, "U1", t0)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("cutover without state: got %v, want ErrNotFound", err)
		}
		rec, err := s.Apply(ctx, "m1", initChange("U1", t0))
		if err != nil {
			t.Fatal(err)
		}
		if rec.Phase != Proxied || rec.Version != 1 || rec.By != "U1" || !rec.Since.Equal(t0) || rec.ConfidenceDays != 14 {
			t.Fatalf("after init got %+v", rec)
		}
		var ce *ConflictError
		if _, err := s.Apply(ctx, "m1", initChange("U2", t0)); !errors.As(err, &ce) || ce.Current.By != "U1" {
			t.Fatalf("second init: got %v, want a conflict showing U1's record", err)
		}
		if _, err := s.Apply(ctx, "m1", cutoverChange(7, "U1", t0)); !errors.As(err, &ce) || ce.Current.Version != 1 {
			t.Fatalf("cutover at the wrong version: got %v, want a conflict at version 1", err)
		}
		rec, err = s.Apply(ctx, "m1", cutoverChange(1, "U2", t0.Add(time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		if rec.Phase != Cutover || rec.Version != 2 || !rec.CutoverAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("after cutover got %+v", rec)
		}
		got, err := s.Get(ctx, "m1")
		if err != nil || got != rec {
			t.Fatalf("get: got %+v, %v; want %+v", got, err, rec)
		}
		events, err := s.History(ctx, "m1", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 2 {
			t.Fatalf("got %d audit events, want 2 (refused changes write none)", len(events))
		}
		if e := events[0]; e.Event != "cutover" || e.From != Proxied || e.To != Cutover || e.By != "U2" || e.RequestID != "req-1" || e.Result != "ok" {
			t.Errorf("newest event: got %+v", e)
		}
		if e := events[1]; e.Event != "init" || e.From != None || e.To != Proxied {
			t.Errorf("oldest event: got %+v", e)
		}
		// Every key of the migration carries its hash tag.
		keys, err := rdb.Keys(ctx, s.keys.prefix+":*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, s.keys.prefix+":{m1}:") {
				t.Errorf("key %q is outside the migration's hash tag", k)
			}
		}
	})
}

func TestStoreAuditCap(t *testing.T) {
	backends(t, func(t *testing.T, s *Store, rdb redis.UniversalClient) {
		ctx := context.Background()
		s.auditCap = 5
		for i := range 12 {
			if err := s.Audit(ctx, "m1", Entry{At: t0, By: "U1", Event: "note", Reason: string(rune('a' + i))}); err != nil {
				t.Fatal(err)
			}
		}
		n, err := rdb.XLen(ctx, s.keys.audit("m1")).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n != 5 {
			t.Errorf("got %d audit entries, want the cap 5", n)
		}
		events, _ := s.History(ctx, "m1", 1)
		if len(events) != 1 || events[0].Reason != "l" {
			t.Errorf("newest entry: got %+v, want the 12th", events)
		}
	})
}

// TestStoreRace: 50 goroutines apply the same cutover at once; exactly one wins.
func TestStoreRace(t *testing.T) {
	backends(t, func(t *testing.T, s *Store, rdb redis.UniversalClient) {
		ctx := context.Background()
		if _, err := s.Apply(ctx, "m1", initChange("U1", t0)); err != nil {
			t.Fatal(err)
		}
		var ok, conflicts atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 50 {
			wg.Go(func() {
				<-start
				_, err := s.Apply(ctx, "m1", cutoverChange(1, "U1", t0))
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrConflict):
					conflicts.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
		if ok.Load() != 1 || conflicts.Load() != 49 {
			t.Fatalf("got %d transitions and %d conflicts, want 1 and 49", ok.Load(), conflicts.Load())
		}
		n, _ := rdb.XLen(ctx, s.keys.audit("m1")).Result()
		if n != 2 {
			t.Errorf("got %d audit entries, want 2 (init and one cutover)", n)
		}
	})
}

func TestStoreDecommissionChallenge(t *testing.T) {
	backends(t, func(t *testing.T, s *Store, rdb redis.UniversalClient) {
		ctx := context.Background()
		const phrase = "decommission source.example.org"
		if _, err := s.Apply(ctx, "m1", initChange("U1", t0)); err != nil {
			t.Fatal(err)
		}
		rec, err := s.Apply(ctx, "m1", cutoverChange(1, "U1", t0))
		if err != nil {
			t.Fatal(err)
		}
		ends := rec.ConfidenceEnds() // t0 + 14 days
		refused := func(t *testing.T, user, typed string, at time.Time, want string) {
			t.Helper()
			before, _ := s.Get(ctx, "m1")
			_, err := s.Confirm(ctx, "m1", user, typed, at, Entry{At: at, Event: "decommission"})
			var re *RefusedError
			if !errors.As(err, &re) || re.Why != want {
				t.Fatalf("got %v, want refusal %q", err, want)
			}
			events, _ := s.History(ctx, "m1", 1)
			if len(events) != 1 || events[0].Result != "refused: "+want || events[0].By != user {
				t.Fatalf("refusal not audited: got %+v", events)
			}
			if got, _ := s.Get(ctx, "m1"); got != before {
				t.Fatalf("refusal changed the record: got %+v, want %+v", got, before)
			}
		}
		t.Run("no challenge", func(t *testing.T) { refused(t, "U1", phrase, ends.Add(time.Hour), RefusedNoChallenge) })

		// A challenge issued at the end of the period, valid 10 minutes.
		issue := func(at time.Time) {
			t.Helper()
			cur, _ := s.Get(ctx, "m1")
			if _, _, err := s.Challenge(ctx, "m1", cur.Version, "U1", phrase, at.Add(10*time.Minute), 10*time.Minute, Entry{At: at, By: "U1", Event: "decommission request"}); err != nil {
				t.Fatal(err)
			}
		}
		issue(ends)
		t.Run("wrong phrase", func(t *testing.T) { refused(t, "U1", "decommission source", ends.Add(time.Minute), RefusedPhrase) })
		t.Run("other user", func(t *testing.T) { refused(t, "U2", phrase, ends.Add(time.Minute), RefusedOtherUser) })
		t.Run("expired", func(t *testing.T) { refused(t, "U1", phrase, ends.Add(11*time.Minute), RefusedExpired) })
		t.Run("expired challenge is gone", func(t *testing.T) { refused(t, "U1", phrase, ends.Add(12*time.Minute), RefusedNoChallenge) })

		// Extended meanwhile: the period is not over any more.
		issue(ends)
		cur, _ := s.Get(ctx, "m1")
		longer := cur
		longer.ConfidenceDays = 15
		if _, err := s.Apply(ctx, "m1", Change{From: Cutover, Version: cur.Version, Next: longer, Audit: Entry{At: ends, By: "U1", Event: "extend +1"}}); err != nil {
			t.Fatal(err)
		}
		t.Run("before the period ends", func(t *testing.T) { refused(t, "U1", phrase, ends.Add(time.Minute), RefusedEarly) })
		if _, _, err := s.Challenge(ctx, "m1", cur.Version, "U1", phrase, ends, time.Minute, Entry{}); !errors.Is(err, ErrConflict) {
			t.Fatalf("challenge at a stale version: got %v, want ErrConflict", err)
		}

		// Back to 14 days; the right phrase by the right user in time is final.
		cur, _ = s.Get(ctx, "m1")
		cur.ConfidenceDays = 14
		if _, err := s.Apply(ctx, "m1", Change{From: Cutover, Version: cur.Version, Next: cur, Audit: Entry{At: ends, By: "U1", Event: "extend -1"}}); err != nil {
			t.Fatal(err)
		}
		issue(ends.Add(time.Hour))
		done, err := s.Confirm(ctx, "m1", "U1", phrase, ends.Add(time.Hour+time.Minute), Entry{At: ends, Event: "decommission"})
		if err != nil {
			t.Fatal(err)
		}
		if done.Phase != Decommissioned || done.By != "U1" || !done.CutoverAt.Equal(t0) {
			t.Fatalf("after confirm got %+v", done)
		}
		if n, _ := rdb.Exists(ctx, s.keys.challenge("m1")).Result(); n != 0 {
			t.Error("challenge left behind after decommissioning")
		}
		events, _ := s.History(ctx, "m1", 1)
		if e := events[0]; e.From != Cutover || e.To != Decommissioned || e.Result != "ok" {
			t.Errorf("decommission audit entry: got %+v", e)
		}
		t.Run("again after decommissioning", func(t *testing.T) { refused(t, "U1", phrase, ends.Add(2*time.Hour), RefusedPhase) })
		// Rollback is refused after decommissioning, and nothing changes.
		if _, err := s.Apply(ctx, "m1", Change{From: Cutover, Next: Record{Phase: Proxied}, Audit: Entry{Event: "rollback"}}); !errors.Is(err, ErrConflict) {
			t.Fatalf("rollback after decommission: got %v, want ErrConflict", err)
		}
		if got, _ := s.Get(ctx, "m1"); got.Phase != Decommissioned {
			t.Fatalf("phase after refused rollback: %s", got.Phase)
		}
	})
}

func TestStoreSnapshot(t *testing.T) {
	backends(t, func(t *testing.T, s *Store, rdb redis.UniversalClient) {
		ctx := context.Background()
		snap, err := s.Snapshot(ctx, "m1", 5)
		if err != nil || snap.Found {
			t.Fatalf("snapshot without state: got %+v, %v", snap, err)
		}
		if _, err := s.Apply(ctx, "m1", initChange("U1", t0)); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveChecks(ctx, "m1", map[string]string{"dns": `{"ID":"dns"}`}); err != nil {
			t.Fatal(err)
		}
		snap, err = s.Snapshot(ctx, "m1", 5)
		if err != nil || !snap.Found || snap.Record.Phase != Proxied || len(snap.Events) != 1 || snap.Checks["dns"] != `{"ID":"dns"}` {
			t.Fatalf("snapshot: got %+v, %v", snap, err)
		}
	})
}

func TestStoreRoundTrips(t *testing.T) {
	backends(t, func(t *testing.T, s *Store, rdb redis.UniversalClient) {
		ctx := context.Background()
		if _, err := s.Apply(ctx, "warm", initChange("U1", t0)); err != nil { // loads the script
			t.Fatal(err)
		}
		if _, err := s.Snapshot(ctx, "warm", 5); err != nil {
			t.Fatal(err)
		}
		h := &testredis.RoundTrips{}
		rdb.AddHook(h)
		if _, err := s.Apply(ctx, "m1", initChange("U1", t0)); err != nil {
			t.Fatal(err)
		}
		if got := h.Reset(); got != 1 {
			t.Errorf("a transition took %d round trips, want 1", got)
		}
		if _, err := s.Snapshot(ctx, "m1", 5); err != nil {
			t.Fatal(err)
		}
		if got := h.Reset(); got != 1 {
			t.Errorf("a status snapshot took %d round trips, want 1", got)
		}
	})
}

func TestStoreUnavailable(t *testing.T) {
	// A port where nothing listens, and a listener that never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for name, addr := range map[string]string{"refused": closed, "hanging": testredis.Silent(t)} {
		t.Run(name, func(t *testing.T) {
			rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, MaxRetries: -1, DisableIdentity: true, ContextTimeoutEnabled: true})
			defer rdb.Close()
			s := NewStore(rdb, "x")
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if _, err := s.Get(ctx, "m1"); !errors.Is(err, ErrUnavailable) {
				t.Errorf("get: got %v, want ErrUnavailable", err)
			}
			if _, err := s.Apply(ctx, "m1", initChange("U1", t0)); !errors.Is(err, ErrUnavailable) {
				t.Errorf("apply: got %v, want ErrUnavailable", err)
			}
			if _, err := s.Snapshot(ctx, "m1", 3); !errors.Is(err, ErrUnavailable) {
				t.Errorf("snapshot: got %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestStoreApplyWithChecks(t *testing.T) {
	backends(t, func(t *testing.T, s *Store, rdb redis.UniversalClient) {
		ctx := context.Background()
		if err := s.SaveChecks(ctx, "m1", map[string]string{"source": `{"ID":"source"}`}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.ApplyWithChecks(ctx, "m1", cutoverChange(0, "U1", t0), map[string]string{"mapping": "x"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("without state: got %v, want ErrNotFound", err)
		}
		if _, err := s.Apply(ctx, "m1", initChange("U1", t0)); err != nil {
			t.Fatal(err)
		}
		rec, stored, err := s.ApplyWithChecks(ctx, "m1", cutoverChange(1, "U1", t0), map[string]string{"mapping": `{"ID":"mapping"}`})
		if err != nil || rec.Phase != Cutover {
			t.Fatalf("got %+v, %v", rec, err)
		}
		if len(stored) != 2 || stored["mapping"] != `{"ID":"mapping"}` || stored["source"] != `{"ID":"source"}` {
			t.Errorf("stored checks: got %v", stored)
		}
		// A refused change stores nothing.
		if _, _, err := s.ApplyWithChecks(ctx, "m1", cutoverChange(1, "U1", t0), map[string]string{"dns": "y"}); !errors.Is(err, ErrConflict) {
			t.Fatalf("stale version: got %v, want ErrConflict", err)
		}
		if n, _ := rdb.HLen(ctx, s.keys.checks("m1")).Result(); n != 2 {
			t.Errorf("a refused change stored check results: %d stored", n)
		}
	})
}

// TestStoreRetriedScripts: a client that runs a script again after losing its reply (go-redis
// retries on a broken connection) gets "ok" for its own request, and nothing happens twice.
func TestStoreRetriedScripts(t *testing.T) {
	backends(t, func(t *testing.T, s *Store, rdb redis.UniversalClient) {
		ctx := context.Background()
		in := initChange("U1", t0)
		in.Next.RequestID = "req-init"
		for range 2 {
			if _, err := s.Apply(ctx, "m1", in); err != nil {
				t.Fatalf("init, run again: %v", err)
			}
		}
		co := cutoverChange(0, "U1", t0)
		co.Next.RequestID = "req-cut"
		var recs []Record
		for range 2 {
			rec, err := s.Apply(ctx, "m1", co)
			if err != nil {
				t.Fatalf("cutover, run again: %v", err)
			}
			recs = append(recs, rec)
		}
		if recs[0] != recs[1] || recs[1].Version != 2 {
			t.Errorf("the second run changed the record: %+v then %+v", recs[0], recs[1])
		}
		// Another request for the same change is refused as before.
		other := cutoverChange(0, "U2", t0)
		other.Next.RequestID = "req-other"
		if _, err := s.Apply(ctx, "m1", other); !errors.Is(err, ErrConflict) {
			t.Fatalf("another cutover: got %v, want ErrConflict", err)
		}
		if n, _ := rdb.XLen(ctx, s.keys.audit("m1")).Result(); n != 2 {
			t.Errorf("got %d audit entries, want 2 (init and cutover, once each)", n)
		}
		// Decommission confirmed twice by the same request.
		done := t0.Add(15 * 24 * time.Hour)
		if _, _, err := s.Challenge(ctx, "m1", 2, "U1", "bye", done.Add(time.Minute), time.Minute, Entry{At: done, By: "U1"}); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := s.Confirm(ctx, "m1", "U1", "bye", done, Entry{At: done, RequestID: "req-bye"}); err != nil {
				t.Fatalf("confirm, run again: %v", err)
			}
		}
		events, _ := s.History(ctx, "m1", 10)
		if len(events) != 4 || events[0].To != Decommissioned || strings.HasPrefix(events[0].Result, "refused") {
			t.Errorf("audit after a repeated confirm: %+v", events)
		}
	})
}

// TestStoreRollbackDropsChallenge: a decommission phrase issued in cutover is void after a
// rollback, even if the migration comes back to cutover within its 10 minutes.
func TestStoreRollbackDropsChallenge(t *testing.T) {
	backends(t, func(t *testing.T, s *Store, rdb redis.UniversalClient) {
		ctx := context.Background()
		if _, err := s.Apply(ctx, "m1", initChange("U1", t0)); err != nil {
			t.Fatal(err)
		}
		c := cutoverChange(1, "U1", t0)
		c.Next.ConfidenceDays = 0
		rec, err := s.Apply(ctx, "m1", c)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Challenge(ctx, "m1", rec.Version, "U1", "bye", t0.Add(10*time.Minute), 10*time.Minute, Entry{At: t0}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(ctx, "m1", Change{From: Cutover, Next: Record{Phase: Proxied, Since: t0}, Audit: Entry{Event: "rollback"}}); err != nil {
			t.Fatal(err)
		}
		if n, _ := rdb.Exists(ctx, s.keys.challenge("m1")).Result(); n != 0 {
			t.Fatal("the challenge survived the rollback")
		}
		c = cutoverChange(0, "U1", t0)
		c.Next.ConfidenceDays = 0
		if _, err := s.Apply(ctx, "m1", c); err != nil {
			t.Fatal(err)
		}
		_, err = s.Confirm(ctx, "m1", "U1", "bye", t0.Add(time.Minute), Entry{At: t0})
		var re *RefusedError
		if !errors.As(err, &re) || re.Why != RefusedNoChallenge {
			t.Fatalf("confirm after rollback and cutover: got %v, want %q", err, RefusedNoChallenge)
		}
	})
}

// TestStoreDuplicateDelivery: the same Slack delivery (a redelivery or a replay, with another
// request id) is applied once; another delivery of the same change is judged on its own.
func TestStoreDuplicateDelivery(t *testing.T) {
	backends(t, func(t *testing.T, s *Store, rdb redis.UniversalClient) {
		ctx := context.Background()
		if _, err := s.Apply(ctx, "m1", initChange("U1", t0)); err != nil {
			t.Fatal(err)
		}
		rec, err := s.Get(ctx, "m1")
		if err != nil {
			t.Fatal(err)
		}
		extend := func(reqID, delivery string) (Record, error) {
			next := rec
			next.ConfidenceDays += 7
			next.RequestID = reqID
			return s.Apply(ctx, "m1", Change{From: Proxied, Next: next, Delivery: delivery,
				Audit: Entry{At: t0, By: "U1", Event: "extend +7", RequestID: reqID}})
		}
		first, err := extend("req-a", "trigger-1")
		if err != nil || first.ConfidenceDays != 21 {
			t.Fatalf("first delivery: %+v, %v", first, err)
		}
		_, err = extend("req-b", "trigger-1")
		var de *DuplicateError
		if !errors.As(err, &de) || de.Current.Version != first.Version || de.Current.ConfidenceDays != 21 {
			t.Fatalf("the same delivery again: got %v, want a DuplicateError carrying version %d", err, first.Version)
		}
		if ttl, _ := rdb.PTTL(ctx, s.keys.delivery("m1", "trigger-1")).Result(); ttl <= 0 || ttl > DeliveryTTL {
			t.Errorf("delivery marker TTL %v, want up to %v", ttl, DeliveryTTL)
		}
		rec = first
		second, err := extend("req-c", "trigger-2")
		if err != nil || second.ConfidenceDays != 28 {
			t.Fatalf("another delivery: %+v, %v", second, err)
		}
		if n, _ := rdb.XLen(ctx, s.keys.audit("m1")).Result(); n != 3 {
			t.Errorf("got %d audit entries, want 3 (init and two extends)", n)
		}
		// A client retry of the first request (same request id) is still answered "ok".
		if _, err := s.Apply(ctx, "m1", Change{From: Proxied, Next: second, Delivery: "trigger-2",
			Audit: Entry{At: t0, By: "U1", Event: "extend +7", RequestID: "req-c"}}); err != nil {
			t.Errorf("a client retry of the applied request: %v", err)
		}
	})
}
