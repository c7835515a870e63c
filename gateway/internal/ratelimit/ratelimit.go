// Package ratelimit throttles clients with token buckets, kept as GCRA (the generic cell rate
// algorithm): one timestamp per key, the "theoretical arrival time" of the next request, so a
// bucket costs a map entry or a Redis key of a few bytes and no timer. A bucket of rate r and
// burst b lets through at most b + r×t requests in any window of length t.
//
// Memory keeps buckets in this process; Redis keeps them in one Redis shared by every gateway
// replica, with Redis's own clock, so the limit holds exactly across replicas.
package ratelimit

import (
	"context"
	"math"
	"time"
)

// Rate is a bucket's refill rate (tokens a second) and size.
type Rate struct {
	PerSecond float64
	Burst     int
}

// interval is the time one token takes to refill.
func (r Rate) interval() time.Duration {
	return time.Duration(math.Ceil(float64(time.Second) / r.PerSecond))
}

// Decision is the outcome of one request against a bucket.
type Decision struct {
	Allowed bool
	// RetryAfter, when not allowed, is how long until the bucket holds a token again.
	RetryAfter time.Duration
}

// Limiter takes one token from the bucket of key.
type Limiter interface {
	Take(ctx context.Context, key string, rate Rate) (Decision, error)
}

// gcra advances a bucket whose next-token time is tat at now: it returns the new tat and the
// decision. A request is allowed when, after adding its interval, the bucket would be at most
// burst intervals ahead of now.
func gcra(tat, now int64, rate Rate) (int64, Decision) {
	interval := int64(rate.interval())
	limit := interval * int64(rate.Burst)
	if tat < now {
		tat = now
	}
	next := tat + interval
	if ahead := next - now; ahead > limit {
		return tat, Decision{RetryAfter: time.Duration(ahead - limit)}
	}
	return next, Decision{Allowed: true}
}
