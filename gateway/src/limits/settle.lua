-- Settles one admitted request: token buckets are charged or refunded the difference between
-- the reservation and the real usage, concurrency slots are released, and usage is counted.
--
-- KEYS: token buckets (n_tokens), concurrency sets (n_slots), then the usage hash (has_usage).
-- ARGV: n_tokens, n_slots, has_usage, lease, per token bucket: limit, delta;
--       if has_usage: ttl_ms, input, output, spend_nanos, release_nanos.
local period = 60000000
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local n_tokens, n_slots = tonumber(ARGV[1]), tonumber(ARGV[2])
local has_usage, lease = tonumber(ARGV[3]), ARGV[4]
local a = 5
for i = 1, n_tokens do
  local limit, delta = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + delta * (period / limit)
  if new_tat > now then
    redis.call('SET', KEYS[i], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
  else
    redis.call('DEL', KEYS[i])
  end
end
for j = 1, n_slots do
  redis.call('ZREM', KEYS[n_tokens + j], lease)
end
if has_usage == 1 then
  local key = KEYS[n_tokens + n_slots + 1]
  redis.call('HINCRBY', key, 'requests', 1)
  redis.call('HINCRBY', key, 'input_tokens', ARGV[a + 1])
  redis.call('HINCRBY', key, 'output_tokens', ARGV[a + 2])
  redis.call('HINCRBY', key, 'spend_nanos', ARGV[a + 3])
  if ARGV[a + 4] ~= '0' then
    redis.call('HINCRBY', key, 'reserved_nanos', '-' .. ARGV[a + 4])
  end
  redis.call('PEXPIRE', key, ARGV[a])
end
return 1
