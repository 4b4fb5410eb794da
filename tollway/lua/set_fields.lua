-- set_fields.lua: change fields of an existing key record, never creating a partial one.
-- KEYS[1] record hash; ARGV field, value pairs.
-- Returns 1 if the record existed and was changed, 0 if there is no such record.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
