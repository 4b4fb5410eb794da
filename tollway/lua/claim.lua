-- claim.lua: hand out a checkout's sealed key once, and forget it.
-- KEYS[1] checkout record; ARGV[1] now (epoch s)
-- Returns {0} unknown session, {1} already claimed, {2} claim window expired,
-- or {3, sealed key, key id, tier, customer}.
local r = redis.call('HMGET', KEYS[1], 'key_id', 'claimed', 'claim', 'claim_expires', 'tier', 'customer')
if not r[1] then
  return {0}
end
if r[2] == '1' then
  return {1}
end
if not r[3] or r[3] == '' or tonumber(r[4] or 0) <= tonumber(ARGV[1]) then
  redis.call('HDEL', KEYS[1], 'claim')
  return {2}
end
redis.call('HSET', KEYS[1], 'claimed', '1')
redis.call('HDEL', KEYS[1], 'claim')
return {3, r[3], r[1], r[5] or '', r[6] or ''}
