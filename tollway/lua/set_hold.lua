-- set_hold.lua: put an operator's hold on an existing key, or lift it.
-- KEYS[1] record hash; ARGV[1] the hold ("operator") or "" to lift it; ARGV[2] now (epoch s).
-- Returns DONE, or MISSING (no such record), REVOKED, or EXPIRED (past its expiry; both final: a hold on them means nothing, and lifting one must not look
-- like bringing the key back).
local rec = redis.call('HMGET', KEYS[1], 'status', 'expires_at')
if not rec[1] then
  return MISSING
end
if rec[1] == 'revoked' then
  return REVOKED
end
local expires = tonumber(rec[2]) or 0
if expires > 0 and tonumber(ARGV[2]) >= expires then
  return EXPIRED
end
redis.call('HSET', KEYS[1], 'hold', ARGV[1])
return DONE
