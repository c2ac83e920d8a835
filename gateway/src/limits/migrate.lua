-- Moves one usage hash written before account keys carried a hash tag
-- (`lgw:<account>:usage:<day>`) to its tagged name (`lgw:{<account>}:usage:<day>`), adding to
-- whatever the tagged name counts already, with its budget reservations; the old keys are
-- deleted. Atomic, so replicas migrating at once, or a gateway of the old version still
-- writing the old name, never lose or double a count: a later pass moves what came since.
--
-- KEYS: old hash, new hash, old reservations set, new reservations set.
-- Returns 1 when something moved, 0 when the old hash no longer exists.
local old, new, old_held, new_held = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local fields = redis.call('HGETALL', old)
if #fields == 0 then return 0 end
for i = 1, #fields, 2 do
  redis.call('HINCRBY', new, fields[i], fields[i + 1])
end
local ttl = redis.call('PTTL', old)
if ttl > 0 and ttl > redis.call('PTTL', new) then redis.call('PEXPIRE', new, ttl) end
if redis.call('EXISTS', old_held) == 1 then
  local held_ttl = math.max(redis.call('PTTL', old_held), redis.call('PTTL', new_held))
  redis.call('ZUNIONSTORE', new_held, 2, new_held, old_held, 'AGGREGATE', 'MAX')
  if held_ttl > 0 then redis.call('PEXPIRE', new_held, held_ttl) end
  redis.call('DEL', old_held)
end
redis.call('DEL', old)
return 1
