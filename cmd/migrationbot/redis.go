package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Timeouts keep every Redis call short, so a command always answers within Slack's 3 seconds.
const (
	redisDialTimeout = time.Second
	redisIOTimeout   = time.Second
	redisDialRetries = 2 // go-redis's default of 5 makes a down Redis slow to report
)

// openRedis connects to REDIS_URL, or starts an embedded in-memory Redis when it is unset.
//
// REDIS_URL forms:
//
//	redis://[user:pass@]host:6379/0            one server (rediss:// for TLS)
//	redis://host1:6379?addr=host2:6379&addr=…  Redis Cluster (seed nodes); ?cluster=true for one seed
//	redis://sentinel1:26379?master_name=mymaster&addr=sentinel2:26379   Sentinel
func openRedis(getenv func(string) string, stderr io.Writer) (redis.UniversalClient, func(), error) {
	raw := getenv("REDIS_URL")
	if raw == "" {
		m := miniredis.NewMiniRedis()
		if err := m.Start(); err != nil {
			return nil, nil, fmt.Errorf("start embedded redis: %w", err)
		}
		fmt.Fprintln(stderr, "WARNING: REDIS_URL is not set: using an embedded in-memory Redis. State is lost when migrationbot exits and is not shared with other replicas.")
		rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), DisableIdentity: true})
		return rdb, func() { rdb.Close(); m.Close() }, nil
	}
	rdb, err := redisFromURL(raw)
	if err != nil {
		return nil, nil, err
	}
	return rdb, func() { rdb.Close() }, nil
}

func redisFromURL(raw string) (redis.UniversalClient, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: not a URL") // the URL may hold a password: never echo it
	}
	q := u.Query()
	cluster := q.Has("cluster")
	q.Del("cluster")
	u.RawQuery = q.Encode()
	raw = u.String()
	switch {
	case q.Has("master_name"):
		o, err := redis.ParseFailoverURL(raw)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL (sentinel): %w", err)
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = redisDialTimeout, redisIOTimeout, redisIOTimeout
		o.ContextTimeoutEnabled = true
		o.DialerRetries = redisDialRetries
		return redis.NewFailoverClient(o), nil
	case cluster || q.Has("addr"):
		o, err := redis.ParseClusterURL(raw)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL (cluster): %w", err)
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = redisDialTimeout, redisIOTimeout, redisIOTimeout
		o.ContextTimeoutEnabled = true
		o.DialerRetries = redisDialRetries
		return redis.NewClusterClient(o), nil
	}
	o, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = redisDialTimeout, redisIOTimeout, redisIOTimeout
	o.ContextTimeoutEnabled = true
	o.DialerRetries = redisDialRetries
	o.MaxRetries = 1
	return redis.NewClient(o), nil
}

// pingRedis reports at start whether Redis answers; the bot still starts when it does not.
func pingRedis(ctx context.Context, rdb redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err()
}
