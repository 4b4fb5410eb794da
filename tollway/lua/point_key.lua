-- point_key.lua: turn a legacy key record into a directory entry pointing at its account.
-- KEYS[1] the key's directory name (the legacy record); KEYS[2] the legacy bucket and quota
-- ARGV[1] the account; ARGV[2] the legacy record's digest, which must still be there;
-- ARGV[3] its tier (kept in the entry as authz's first guess).
-- Returns 1 if switched, 0 if already switched, -1 if the record is not the one migrated.
local rec = redis.call('HMGET', KEYS[1], 'account', 'hash')
if rec[1] then
  return 0
end
if rec[2] ~= ARGV[2] then
  return -1
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'account', ARGV[1], 'tier', ARGV[3])
return 1
