-- usage_add.lua: add requests counted outside Redis to a key's usage window, once per id.
-- KEYS[1] the key's usage hash; KEYS[2] the write's applied marker (the key's hash tag)
-- ARGV[1] window start (s); ARGV[2] requests; ARGV[3] marker TTL in seconds
-- Returns DONE, or ALREADY if this id was applied before (a retry whose first answer was
-- lost).
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then
  return ALREADY
end
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
return DONE
