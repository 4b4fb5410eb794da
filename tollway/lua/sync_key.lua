-- sync_key.lua: copy a subscription's state onto one of its key records, never backwards.
-- KEYS[1] record hash
-- ARGV[1] version of the subscription state; ARGV[2..] field, value pairs to set
-- (status, tier, grace_until, period_start, period_end).
-- Returns 1 if written, 0 if there is no such record, -1 if the record already holds a newer
-- version, -2 if the key is revoked (revocation is final; nothing is written).
local current = redis.call('HMGET', KEYS[1], 'status', 'sync_version')
if not current[1] then
  return 0
end
if (tonumber(current[2]) or 0) > tonumber(ARGV[1]) then
  return -1
end
if current[1] == 'revoked' then
  return -2
end
local fields = {'sync_version', ARGV[1]}
for i = 2, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
return 1
