-- create_record.lua: write a new key record whole, or nothing if the key id is taken.
-- KEYS[1] record hash; ARGV field, value pairs. Returns 1 if written, 0 if it already existed.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
