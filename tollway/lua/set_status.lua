-- set_status.lua: move an existing key record to a new status, atomically.
-- KEYS[1] record hash; ARGV[1] the new status.
-- Returns DONE, or MISSING (no such record) or REVOKED (revocation is
-- final, so no later call, however it races, can bring a revoked key back).
local current = redis.call('HGET', KEYS[1], 'status')
if not current then
  return MISSING
end
if current == 'revoked' and ARGV[1] ~= 'revoked' then
  return REVOKED
end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return DONE
