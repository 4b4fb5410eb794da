-- update_key.lua: change what an operator sets on a live key: its hold ("operator" or ""),
-- name, metadata or expiry.
-- KEYS[1] record hash; ARGV[1] now (epoch s); ARGV[2..] field, value pairs (hold, name,
-- metadata, expires_at only: the caller's choice).
-- Returns DONE, or MISSING (no such record), REVOKED or EXPIRED (final: nothing about such a
-- key changes, so that neither lifting a hold nor a new expiry looks like bringing it back),
-- or ROTATED (a rotated key's expiry is the end of its overlap: it cannot be moved).
local rec = redis.call('HMGET', KEYS[1], 'status', 'expires_at', 'successor')
if not rec[1] then
  return MISSING
end
if rec[1] == 'revoked' then
  return REVOKED
end
local expires = tonumber(rec[2]) or 0
if expires > 0 and tonumber(ARGV[1]) >= expires then
  return EXPIRED
end
for i = 2, #ARGV, 2 do
  if ARGV[i] == 'expires_at' and rec[3] and rec[3] ~= '' then
    return ROTATED
  end
end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return DONE
