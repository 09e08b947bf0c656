// Package testredis gives tests a Redis: miniredis in-process, or the real redis-server that
// .ci/run starts (REDIS_TEST_URL, default redis://127.0.0.1:6379/0). Each test gets its own key
// prefix and its keys are deleted when it ends, because CI may share the server.
package testredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Mini starts a miniredis for the test and returns it with a client.
func Mini(t testing.TB) (*miniredis.Miniredis, redis.UniversalClient) {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), DisableIdentity: true})
	t.Cleanup(func() { rdb.Close() })
	return m, rdb
}

// URL is the real Redis the tests use.
func URL() string {
	if u := os.Getenv("REDIS_TEST_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Real connects to the real Redis and returns a client and a fresh key prefix; every key under
// the prefix is deleted at cleanup. Without a Redis the test is skipped, except under CI=true,
// where it fails.
func Real(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	o, err := redis.ParseURL(URL())
	if err != nil {
		t.Fatalf("REDIS_TEST_URL: %v", err)
	}
	o.DisableIdentity = true
	rdb := redis.NewClient(o)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		if os.Getenv("CI") == "true" {
			t.Fatalf("real Redis at %s does not answer (CI=true: tests needing it must run): %v", URL(), err)
		}
		t.Skipf("real Redis at %s does not answer: %v", URL(), err)
	}
	prefix := Prefix()
	t.Cleanup(func() {
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+":*", 500).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	return rdb, prefix
}

// Prefix returns a unique key prefix for one test.
func Prefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "mbtest-" + hex.EncodeToString(b[:])
}

// RoundTrips is a go-redis hook counting what a client sends: one per command or pipeline,
// leaving out the HELLO of a new connection. Add it with rdb.AddHook.
type RoundTrips struct{ n atomic.Int32 }

// Reset returns the count so far and starts again from zero.
func (h *RoundTrips) Reset() int32 { return h.n.Swap(0) }

func (h *RoundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *RoundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "hello" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *RoundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// Silent starts a TCP listener on loopback that accepts connections and never says a word (a
// hung Redis, or any peer that hangs), closed with the test; it returns its "host:port".
func Silent(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
