package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcraScript is the GCRA step on a Redis key, with Redis's clock, so replicas with skewed
// clocks still share one bucket exactly. Times are microseconds, which a Lua number (a double)
// holds exactly for the next few centuries. The key expires once the bucket is full again.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nxt = tat + interval
if nxt - now > limit then
  return {0, nxt - now - limit}
end
redis.call('SET', KEYS[1], nxt, 'PX', math.ceil((nxt - now) / 1000) + 1000)
return {1, 0}
`)

// Redis keeps buckets in Redis.
type Redis struct {
	client redis.UniversalClient
	prefix string
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a limiter over client; every key is prefixed with prefix.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix}
}

// Take takes a token from key's bucket in Redis.
func (r *Redis) Take(ctx context.Context, key string, rate Rate) (Decision, error) {
	res, err := gcraScript.Run(ctx, r.client, []string{r.prefix + key}, intervalMicros(rate), rate.Burst).Int64Slice()
	if err != nil {
		return Decision{Allowed: true}, fmt.Errorf("ratelimit: redis: %w", err)
	}
	if len(res) != 2 {
		return Decision{Allowed: true}, fmt.Errorf("ratelimit: redis: unexpected reply %v", res)
	}
	if res[0] == 1 {
		return Decision{Allowed: true}, nil
	}
	return Decision{RetryAfter: time.Duration(res[1]) * time.Microsecond}, nil
}

// intervalMicros is rate's interval in whole microseconds, the script's unit, rounded up as
// interval rounds nanoseconds up: rounding down would let a fast bucket refill faster than its
// rate (300,000/s has a 3.33µs interval; 3µs would allow 333,333/s).
func intervalMicros(rate Rate) int64 {
	return int64((rate.interval() + time.Microsecond - 1) / time.Microsecond)
}
