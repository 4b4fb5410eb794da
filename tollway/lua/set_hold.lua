-- set_hold.lua: put an operator's hold on an existing key, or lift it.
-- KEYS[1] record hash; ARGV[1] the hold ("operator") or "" to lift it.
-- Returns 1 if changed, 0 if there is no such record, -1 if the key is revoked.
local current = redis.call('HGET', KEYS[1], 'status')
if not current then
  return 0
end
if current == 'revoked' then
  return -1
end
redis.call('HSET', KEYS[1], 'hold', ARGV[1])
return 1
