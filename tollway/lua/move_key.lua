-- move_key.lua: move a key record to the pepper in force (tollway/key_store.py ``move``).
-- KEYS[1] the record; ARGV[1] the key's digest it was found by; ARGV[2] its digest under the
-- pepper in force; ARGV[3] that pepper's fingerprint.
-- The digest it was found by is kept as hash_prev: a process not yet given the new pepper
-- still finds the key by it (check.lua accepts either).
-- Returns DONE (moved), ALREADY (moved before), NEWER (moved meanwhile, by a process given a
-- newer pepper than ARGV[2]'s: left as it is) or MISSING (no record holding ARGV[1]).
local h = redis.call('HMGET', KEYS[1], 'hash', 'hash_prev')
if not h[1] then
  return MISSING
end
if h[1] == ARGV[2] then
  return ALREADY
end
if h[1] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'hash', ARGV[2], 'hash_prev', ARGV[1], 'pepper', ARGV[3])
  return DONE
end
if h[2] == ARGV[1] then
  return NEWER
end
return MISSING
