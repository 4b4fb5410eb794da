-- sync_key.lua: copy a subscription's state onto one of its key records, never backwards.
-- KEYS[1] record hash
-- ARGV[1] version of the subscription state; ARGV[2..] field, value pairs to set
-- (status, tier, grace_until, period_start, period_end).
-- Returns DONE, or MISSING (no such record), NEWER (the record holds a newer version) or
-- REVOKED (revocation is final); nothing is written then.
local current = redis.call('HMGET', KEYS[1], 'status', 'sync_version')
if not current[1] then
  return MISSING
end
if (tonumber(current[2]) or 0) > tonumber(ARGV[1]) then
  return NEWER
end
if current[1] == 'revoked' then
  return REVOKED
end
local fields = {'sync_version', ARGV[1]}
for i = 2, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
return DONE
