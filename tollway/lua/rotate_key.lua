-- rotate_key.lua: hand a key over to its successor, atomically, or refuse.
-- KEYS[1] the old key's record; KEYS[2] the successor's record (written already, in the same
-- account, so the same slot); KEYS[3] the account hash.
-- ARGV[1] now (epoch s); ARGV[2] when the old key stops working (epoch s; "0": at once, it is
-- revoked); ARGV[3] the successor's key id.
-- The successor takes the old key's hold as it is now, so a suspension made while the new key
-- was being written still carries over.
-- Returns {DONE}, or a refusal that changes nothing: {MISSING} no old record, {REVOKED},
-- {EXPIRED} past its expiry, {ROTATED, successor} rotated already, {ACCOUNT_HELD} the
-- account is suspended.
local old = redis.call('HMGET', KEYS[1], 'status', 'expires_at', 'successor', 'hold')
if not old[1] then
  return {MISSING}
end
if old[1] == 'revoked' then
  return {REVOKED}
end
local expires = tonumber(old[2]) or 0
if expires > 0 and tonumber(ARGV[1]) >= expires then
  return {EXPIRED}
end
if old[3] and old[3] ~= '' then
  return {ROTATED, old[3]}
end
local account_hold = redis.call('HGET', KEYS[3], 'hold')
if account_hold and account_hold ~= '' then
  return {ACCOUNT_HELD}
end
redis.call('HSET', KEYS[2], 'hold', old[4] or '')
redis.call('HSET', KEYS[1], 'successor', ARGV[3])
if ARGV[2] == '0' then
  redis.call('HSET', KEYS[1], 'status', 'revoked')
else
  redis.call('HSET', KEYS[1], 'expires_at', ARGV[2])
end
return {DONE}
