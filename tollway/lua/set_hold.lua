-- set_hold.lua: put an operator's hold on an existing key, or lift it.
-- KEYS[1] record hash; ARGV[1] the hold ("operator") or "" to lift it; ARGV[2] now (epoch s).
-- Returns 1 if changed, 0 if there is no such record, -1 if the key is revoked, -2 if it is
-- past its expiry (both final: a hold on them means nothing, and lifting one must not look
-- like bringing the key back).
local rec = redis.call('HMGET', KEYS[1], 'status', 'expires_at')
if not rec[1] then
  return 0
end
if rec[1] == 'revoked' then
  return -1
end
local expires = tonumber(rec[2]) or 0
if expires > 0 and tonumber(ARGV[2]) >= expires then
  return -2
end
redis.call('HSET', KEYS[1], 'hold', ARGV[1])
return 1
