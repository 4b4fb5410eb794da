-- set_status.lua: move an existing key record to a new status, atomically.
-- KEYS[1] record hash; ARGV[1] the new status.
-- Returns 1 if changed, 0 if there is no such record, -1 if the key is revoked (revocation is
-- final, so no later call, however it races, can bring a revoked key back).
local current = redis.call('HGET', KEYS[1], 'status')
if not current then
  return 0
end
if current == 'revoked' and ARGV[1] ~= 'revoked' then
  return -1
end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return 1
