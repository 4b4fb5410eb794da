-- claim.lua: hand out a checkout's sealed key once, and forget it.
-- KEYS[1] checkout record; KEYS[2] the session's claim (expires with the claim window)
-- Returns {MISSING} unknown session, {ALREADY} claimed already, {EXPIRED} claim window over,
-- or {DONE, sealed key, key id, tier, customer}.
local r = redis.call('HMGET', KEYS[1], 'key_id', 'claimed', 'tier', 'customer')
if not r[1] then
  return {MISSING}
end
if r[2] == '1' then
  return {ALREADY}
end
local sealed = redis.call('GET', KEYS[2])
if not sealed then
  return {EXPIRED}
end
redis.call('HSET', KEYS[1], 'claimed', '1')
redis.call('DEL', KEYS[2])
return {DONE, sealed, r[1], r[3] or '', r[4] or ''}
