-- Settles or cancels one lease, exactly once however often it is called (retries after a
-- timeout may run twice): the lease record says whether it was admitted ('a'), settled ('s')
-- or cancelled ('c'); a finished lease is left alone.
--
-- settle: token buckets are charged or refunded the difference between the reservation and
--   the real usage (only while the admission is on record), concurrency slots are released,
--   usage is counted (with the second it was, `last_used`), the budget reservation is
--   released if it is still held.
-- cancel: undoes an admission whose answer never reached the gateway (every bucket refunded,
--   slots and reservation released) and marks the lease so a late admission writes nothing.
--
-- KEYS: the buckets to adjust (n_tokens: token buckets to settle, every bucket to cancel),
--       concurrency sets (n_slots), the lease record, then per account (the caller's and its
--       LlmQuotas'): the usage hash and the reservations set.
-- ARGV: mode ('settle' or 'cancel'), n_tokens, n_slots, n_accounts, lease, record_ttl_ms,
--       per bucket: limit, delta;
--       input, output, spend_nanos, cache_read, cache_write, reasoning (the last three: of
--       the input and the output, by kind);
--       per account: usage_ttl_ms, estimate_nanos (0: nothing reserved).
-- Returns 1 when applied, 0 when the lease was already finished.
local period = 60000000
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local mode = ARGV[1]
local n_tokens, n_slots = tonumber(ARGV[2]), tonumber(ARGV[3])
local n_accounts, lease, record_ttl = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local record = KEYS[n_tokens + n_slots + 1]
local state = redis.call('GET', record)
if state == 's' or state == 'c' then return 0 end
local admitted = state == 'a'
local a = 7
for i = 1, n_tokens do
  local limit, delta = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  if admitted then
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    if tat < now then tat = now end
    local new_tat = tat + delta * (period / limit)
    if new_tat > now then
      redis.call('SET', KEYS[i], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
for j = 1, n_slots do
  redis.call('ZREM', KEYS[n_tokens + j], lease)
end
local fields = {'input_tokens', 'output_tokens', 'spend_nanos', 'cache_read_tokens',
  'cache_write_tokens', 'reasoning_tokens'}
local used = a
a = a + #fields
for k = 1, n_accounts do
  local key, held = KEYS[n_tokens + n_slots + 2 * k], KEYS[n_tokens + n_slots + 2 * k + 1]
  local usage_ttl, estimate = ARGV[a], ARGV[a + 1]
  a = a + 2
  if mode == 'settle' then
    redis.call('HINCRBY', key, 'requests', 1)
    redis.call('HSET', key, 'last_used', time[1])
    for i, field in ipairs(fields) do
      if i <= 3 or ARGV[used + i - 1] ~= '0' then redis.call('HINCRBY', key, field, ARGV[used + i - 1]) end
    end
    redis.call('PEXPIRE', key, usage_ttl)
  end
  -- Released only by whoever removes it from the set (this call or the expiry sweep).
  if estimate ~= '0' and redis.call('ZREM', held, lease .. ':' .. estimate) == 1 then
    redis.call('HINCRBY', key, 'reserved_nanos', '-' .. estimate)
  end
end
redis.call('SET', record, mode == 'settle' and 's' or 'c', 'PX', record_ttl)
return 1
