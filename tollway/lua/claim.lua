-- claim.lua: hand out a checkout's sealed key once, and forget it.
-- KEYS[1] checkout record; KEYS[2] the session's claim (expires with the claim window)
-- Returns {0} unknown session, {1} already claimed, {2} claim window over,
-- or {3, sealed key, key id, tier, customer}.
local r = redis.call('HMGET', KEYS[1], 'key_id', 'claimed', 'tier', 'customer')
if not r[1] then
  return {0}
end
if r[2] == '1' then
  return {1}
end
local sealed = redis.call('GET', KEYS[2])
if not sealed then
  return {2}
end
redis.call('HSET', KEYS[1], 'claimed', '1')
redis.call('DEL', KEYS[2])
return {3, sealed, r[1], r[3] or '', r[4] or ''}
