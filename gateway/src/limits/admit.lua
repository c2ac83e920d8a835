-- Admits one request against all of its limits at once, or against none (check first, then
-- write, so a refused request never consumes anything). The clock is Redis's own (TIME), so
-- gateway replicas with skewed clocks still share one timeline.
--
-- Every admission writes a lease record ('a'), which makes its undo and its settlement
-- idempotent (settle.lua). A lease the gateway already cancelled ('c': its admission timed out
-- and was compensated before this script ran) is admitted by nobody and writes nothing.
-- Budget reservations are also kept per lease in a sorted set scored by their deadline, so a
-- reservation whose settlement never comes (a crashed replica) is released once it expires.
--
-- A request may count in several accounts (its caller's and the LlmQuotas it shares), each
-- with its own budget: it must fit in every one.
--
-- KEYS: rate buckets (n_rates), concurrency sets (n_slots), the lease record, then per
--       account: the usage hash and the reservations set.
-- ARGV: n_rates, n_slots, n_accounts, lease, lease_ttl_us, record_ttl_ms,
--       per rate: limit, cost; per slot: limit;
--       per account: usage_ttl_ms, limit_nanos (-1: no budget), estimate_nanos.
-- Returns {1, remaining_1, reset_us_1, ...} when admitted, or {0, what, index, retry_after_us}
-- when refused (what: 1 rate, 2 slots, 3 budget, 4 lease cancelled; index is 1-based;
-- retry_after_us -1 means never).
local period = 60000000
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local n_rates, n_slots, n_accounts = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local lease, lease_ttl, record_ttl = ARGV[4], tonumber(ARGV[5]), ARGV[6]
local record = KEYS[n_rates + n_slots + 1]
if redis.call('GET', record) then return {0, 4, 1, -1} end
local a = 7
local new_tats, result = {}, {1}
for i = 1, n_rates do
  local limit, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  if cost > limit then return {0, 1, i, -1} end
  local interval = period / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local allow_at = new_tat - period
  -- 1 µs of slack: doubles may put (now + period) - period an ulp above now.
  if allow_at - now > 1 then return {0, 1, i, math.ceil(allow_at - now)} end
  new_tats[i] = new_tat
  result[#result + 1] = math.floor((period - (new_tat - now) + 1) / interval)
  result[#result + 1] = math.ceil(new_tat - now)
end
local slot_limits = {}
for j = 1, n_slots do
  local key = KEYS[n_rates + j]
  slot_limits[j] = tonumber(ARGV[a])
  a = a + 1
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= slot_limits[j] then return {0, 2, j, 1000000} end
end
-- Budgets: every account with one must have room for the estimate.
local held = {}
for k = 1, n_accounts do
  local usage_key, held_key = KEYS[n_rates + n_slots + 2 * k], KEYS[n_rates + n_slots + 2 * k + 1]
  local usage_ttl, limit, estimate = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  a = a + 3
  if limit >= 0 then
    -- Release reservations whose deadline passed without a settlement (bounded per call).
    local expired = redis.call('ZRANGEBYSCORE', held_key, '-inf', now, 'LIMIT', 0, 64)
    local released = 0
    for _, member in ipairs(expired) do
      released = released + tonumber(string.match(member, ':(%-?%d+)$'))
      redis.call('ZREM', held_key, member)
    end
    if released ~= 0 then redis.call('HINCRBY', usage_key, 'reserved_nanos', -released) end
    local counters = redis.call('HMGET', usage_key, 'spend_nanos', 'reserved_nanos')
    local spent = tonumber(counters[1] or 0) + tonumber(counters[2] or 0)
    if spent + tonumber(estimate) > limit then return {0, 3, k, -1} end
    held[#held + 1] = {usage_key, held_key, usage_ttl, estimate}
  end
end
for i = 1, n_rates do
  local ttl_ms = math.ceil((new_tats[i] - now) / 1000) + 1
  redis.call('SET', KEYS[i], string.format('%.0f', new_tats[i]), 'PX', ttl_ms)
end
-- A set's TTL only ever grows: a short lease must not expire a longer one held beside it.
local function extend(key, ttl_ms)
  if redis.call('PTTL', key) < ttl_ms then redis.call('PEXPIRE', key, ttl_ms) end
end
for j = 1, n_slots do
  local key = KEYS[n_rates + j]
  redis.call('ZADD', key, now + lease_ttl, lease)
  extend(key, math.ceil(lease_ttl / 1000) + 1)
end
for _, h in ipairs(held) do
  redis.call('HINCRBY', h[1], 'reserved_nanos', h[4])
  redis.call('PEXPIRE', h[1], h[3])
  -- Lives as long as the counters it corrects, so a lapsed reservation is always found.
  redis.call('ZADD', h[2], now + lease_ttl, lease .. ':' .. h[4])
  redis.call('PEXPIRE', h[2], h[3])
end
redis.call('SET', record, 'a', 'PX', record_ttl)
return result
