package state_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/migrationbot/migrationbot/internal/testredis"
	"github.com/migrationbot/migrationbot/state"
)

type backend struct {
	name  string
	store func(t *testing.T) (*state.Store, func(key string) time.Duration, *miniredis.Miniredis)
}

// backends runs a test against miniredis and against the real Redis.
var backends = []backend{
	{"miniredis", func(t *testing.T) (*state.Store, func(string) time.Duration, *miniredis.Miniredis) {
		m, rdb := testredis.Mini(t)
		return state.NewStore(rdb, "t"), m.TTL, m
	}},
	{"redis", func(t *testing.T) (*state.Store, func(string) time.Duration, *miniredis.Miniredis) {
		rdb, prefix := testredis.Real(t)
		ttl := func(key string) time.Duration {
			d, err := rdb.TTL(context.Background(), prefix+key[1:]).Result()
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		return state.NewStore(rdb, prefix), ttl, nil
	}},
}

func TestReportClaims(t *testing.T) {
	occ := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s, _, _ := b.store(t)

			got, err := s.ClaimReport(ctx, "example", occ, "replica-a")
			if err != nil || !got {
				t.Fatalf("first claim: got %v, %v; want true, nil", got, err)
			}
			got, err = s.ClaimReport(ctx, "example", occ, "replica-b")
			if err != nil || got {
				t.Fatalf("second claim: got %v, %v; want false, nil", got, err)
			}
			// Another occurrence and another migration are separate claims.
			if got, _ := s.ClaimReport(ctx, "example", occ.Add(time.Minute), "replica-b"); !got {
				t.Fatal("claim of the next occurrence: got false, want true")
			}
			if got, _ := s.ClaimReport(ctx, "other", occ, "replica-b"); !got {
				t.Fatal("claim of another migration: got false, want true")
			}

			// Only the owner releases.
			if ok, err := s.ReleaseReport(ctx, "example", occ, "replica-b"); err != nil || ok {
				t.Fatalf("release by another owner: got %v, %v; want false, nil", ok, err)
			}
			if ok, err := s.ReleaseReport(ctx, "example", occ, "replica-a"); err != nil || !ok {
				t.Fatalf("release by the owner: got %v, %v; want true, nil", ok, err)
			}
			if _, err := s.GetReportClaim(ctx, "example", occ); !errors.Is(err, state.ErrNotFound) {
				t.Fatalf("claim after release: got err %v, want ErrNotFound", err)
			}

			// Claimed again, posted: the ts is kept, and a release no longer drops it.
			if got, _ := s.ClaimReport(ctx, "example", occ, "replica b"); !got {
				t.Fatal("claim after release: got false, want true")
			}
			if err := s.ReportPosted(ctx, "example", occ, "1765000000.000100"); err != nil {
				t.Fatalf("posted: %v", err)
			}
			c, err := s.GetReportClaim(ctx, "example", occ)
			if err != nil {
				t.Fatal(err)
			}
			if c.Owner != "replica_b" || c.TS != "1765000000.000100" || !c.Posted() {
				t.Fatalf("claim: got %+v, want owner replica_b, ts 1765000000.000100", c)
			}
			if ok, _ := s.ReleaseReport(ctx, "example", occ, "replica b"); ok {
				t.Fatal("release of a posted claim: got true, want false")
			}
			if err := s.ReportPosted(ctx, "example", occ.Add(time.Hour), "1.2"); !errors.Is(err, state.ErrNotFound) {
				t.Fatalf("posted without a claim: got %v, want ErrNotFound", err)
			}
		})
	}
}

func TestReportClaimTTL(t *testing.T) {
	occ := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s, ttl, m := b.store(t)
			if _, err := s.ClaimReport(ctx, "example", occ, "a"); err != nil {
				t.Fatal(err)
			}
			key := "t:{example}:report:" + itoa(occ.Unix())
			if d := ttl(key); d < state.ReportLease-time.Minute || d > state.ReportLease {
				t.Fatalf("ttl of the claim: got %v, want the lease %v", d, state.ReportLease)
			}
			if err := s.ReportPosted(ctx, "example", occ, "1.2"); err != nil {
				t.Fatal(err)
			}
			if d := ttl(key); d < 47*time.Hour || d > state.ReportClaimTTL {
				t.Fatalf("ttl after posting: got %v, want about %v", d, state.ReportClaimTTL)
			}
			// An uncertain post settles the claim as well.
			unsure := occ.Add(time.Hour)
			if _, err := s.ClaimReport(ctx, "example", unsure, "a"); err != nil {
				t.Fatal(err)
			}
			if err := s.ReportUncertain(ctx, "example", unsure); err != nil {
				t.Fatal(err)
			}
			if c, err := s.GetReportClaim(ctx, "example", unsure); err != nil || !c.Uncertain() || !c.Posted() {
				t.Fatalf("uncertain claim: got %+v, %v", c, err)
			}
			if d := ttl("t:{example}:report:" + itoa(unsure.Unix())); d < 47*time.Hour {
				t.Fatalf("ttl of the uncertain claim: got %v, want about %v", d, state.ReportClaimTTL)
			}
			if _, err := s.ClaimClosingReport(ctx, "example", "a"); err != nil {
				t.Fatal(err)
			}
			if d := ttl("t:{example}:report:closing"); d != -1 && d != 0 {
				t.Fatalf("ttl of the closing claim: got %v, want none", d)
			}
			if m != nil {
				m.FastForward(state.ReportClaimTTL + time.Second)
				if got, _ := s.ClaimReport(ctx, "example", occ, "b"); !got {
					t.Fatal("claim after the TTL: got false, want true")
				}
				if got, _ := s.ClaimClosingReport(ctx, "example", "b"); got {
					t.Fatal("closing claim after two days: got true, want it kept forever")
				}
			}
		})
	}
}

func TestClosingReportClaim(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s, _, _ := b.store(t)
			if got, err := s.ClaimClosingReport(ctx, "example", "a"); err != nil || !got {
				t.Fatalf("first closing claim: got %v, %v", got, err)
			}
			if got, _ := s.ClaimClosingReport(ctx, "example", "b"); got {
				t.Fatal("second closing claim: got true, want false")
			}
			if ok, _ := s.ReleaseClosingReport(ctx, "example", "b"); ok {
				t.Fatal("release by another owner: got true")
			}
			if ok, _ := s.ReleaseClosingReport(ctx, "example", "a"); !ok {
				t.Fatal("release by the owner: got false")
			}
			if got, _ := s.ClaimClosingReport(ctx, "example", "b"); !got {
				t.Fatal("claim after release: got false")
			}
			if err := s.ClosingReportPosted(ctx, "example", "9.9"); err != nil {
				t.Fatal(err)
			}
			c, err := s.GetClosingReportClaim(ctx, "example")
			if err != nil || c.Owner != "b" || c.TS != "9.9" {
				t.Fatalf("closing claim: got %+v, %v; want owner b, ts 9.9", c, err)
			}
		})
	}
}

func TestReportClaimRace(t *testing.T) {
	occ := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s, _, _ := b.store(t)
			const n = 20
			won := make(chan bool, n)
			for i := range n {
				go func() {
					ok, err := s.ClaimReport(ctx, "example", occ, "r"+itoa(int64(i)))
					if err != nil {
						t.Error(err)
					}
					won <- ok
				}()
			}
			wins := 0
			for range n {
				if <-won {
					wins++
				}
			}
			if wins != 1 {
				t.Fatalf("winners: got %d, want 1", wins)
			}
		})
	}
}

func TestReportClaimUnavailable(t *testing.T) {
	m, rdb := testredis.Mini(t)
	s := state.NewStore(rdb, "t")
	m.SetError("LOADING Redis is loading the dataset in memory")
	_, err := s.ClaimReport(context.Background(), "example", time.Unix(0, 0), "a")
	if !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("claim with Redis failing: got %v, want ErrUnavailable", err)
	}
	if _, err := s.ReleaseReport(context.Background(), "example", time.Unix(0, 0), "a"); !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("release with Redis failing: got %v, want ErrUnavailable", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
