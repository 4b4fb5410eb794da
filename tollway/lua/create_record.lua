-- create_record.lua: write a new key record whole, or nothing if the key id is taken.
-- KEYS[1] record hash; ARGV field, value pairs. Returns DONE, or ALREADY if it existed.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return ALREADY
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return DONE
