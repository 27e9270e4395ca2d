package stores

import (
	"context"
	"errors"
	"fmt"
	"github.com/lockcheck/lockcheck/harness/register"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// staleReply starts the error reply fenceScript gives a stale token.
const staleReply = "STALE "

// fenceScript is one fenced call, atomic on the server. KEYS[1] is the
// register's hash (fields value and fence); ARGV is the operation (r or w),
// the token and, for w, the value. Tokens and values stay decimal strings:
// Lua numbers are doubles and would round tokens above 2^53. Two tokens
// without leading zeros compare as numbers by length, then as strings.
var fenceScript = redis.NewScript(`
local fence = redis.call('HGET', KEYS[1], 'fence') or '0'
local token = ARGV[2]
if #token < #fence or (#token == #fence and token < fence) then
  return redis.error_reply('` + staleReply + `' .. fence)
end
if ARGV[1] == 'w' then
  redis.call('HSET', KEYS[1], 'value', ARGV[3], 'fence', token)
  return ARGV[3]
end
if token ~= fence then
  redis.call('HSET', KEYS[1], 'fence', token)
end
return redis.call('HGET', KEYS[1], 'value') or '0'
`)

// Redis keeps each register under the key register:<key>: a string
// holding the decimal value in a plain store, a hash with fields value and
// fence in a fenced one. A fenced call is one script run, so the check,
// the raise of the fence and the read or write are atomic.
//
// The store sends each command once and relies on the client not to
// resend it: build the client with MaxRetries: -1 (go-redis's default
// retries a write whose reply was lost). The script goes out as EVALSHA and
// again as EVAL only when the server answers NOSCRIPT, which means it did
// not run.
type Redis struct {
	client *redis.Client
	fenced bool
}

var _ register.Store = (*Redis)(nil)

// NewRedis returns a store on client, which should have MaxRetries: -1
// (see [Redis]). The caller owns the client.
func NewRedis(client *redis.Client, fenced bool) register.Store {
	return &Redis{client: client, fenced: fenced}
}

func redisKey(key string) string { return "register:" + key }

// Read returns key's value; a fenced store first checks and raises the fence.
func (s *Redis) Read(ctx context.Context, key string, token uint64) (int64, error) {
	if !s.fenced {
		return s.get(ctx, "read", key)
	}
	res, err := fenceScript.Run(ctx, s.client, []string{redisKey(key)}, "r", strconv.FormatUint(token, 10)).Text()
	if err != nil {
		return 0, s.scriptError("read", key, token, err)
	}
	v, err := strconv.ParseInt(res, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("register: redis read %q: hash %s holds value %q, not a decimal register value: %w", key, redisKey(key), res, err)
	}
	return v, nil
}

// Write sets key's value; a fenced store first checks and raises the fence.
func (s *Redis) Write(ctx context.Context, key string, value int64, token uint64) error {
	v := strconv.FormatInt(value, 10)
	if !s.fenced {
		if err := s.client.Set(ctx, redisKey(key), v, 0).Err(); err != nil {
			return fmt.Errorf("register: redis write %q: %w", key, err)
		}
		return nil
	}
	err := fenceScript.Run(ctx, s.client, []string{redisKey(key)}, "w", strconv.FormatUint(token, 10), v).Err()
	if err != nil {
		return s.scriptError("write", key, token, err)
	}
	return nil
}

// Final returns key's value, whatever the fence.
func (s *Redis) Final(ctx context.Context, key string) (int64, error) {
	if !s.fenced {
		return s.get(ctx, "final", key)
	}
	res, err := s.client.HGet(ctx, redisKey(key), "value").Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("register: redis final %q: %w", key, err)
	}
	v, err := strconv.ParseInt(res, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("register: redis final %q: hash %s holds value %q, not a decimal register value: %w", key, redisKey(key), res, err)
	}
	return v, nil
}

func (s *Redis) get(ctx context.Context, op, key string) (int64, error) {
	res, err := s.client.Get(ctx, redisKey(key)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("register: redis %s %q: %w", op, key, err)
	}
	v, err := strconv.ParseInt(res, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("register: redis %s %q: key %s holds %q, not a decimal register value: %w", op, key, redisKey(key), res, err)
	}
	return v, nil
}

// scriptError maps the script's stale reply to ErrStale and passes every
// other error on, its outcome unknown.
func (s *Redis) scriptError(op, key string, token uint64, err error) error {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		if f, ok := strings.CutPrefix(rerr.Error(), staleReply); ok {
			fence, perr := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if perr == nil {
				return register.StaleError(op, key, token, fence)
			}
		}
	}
	return fmt.Errorf("register: redis %s %q: %w", op, key, err)
}
