-- send_lock.lua: take a customer's send lock, or renew it if we hold it already.
-- KEYS[1] the lock; ARGV[1] owner; ARGV[2] ttl in ms
-- Returns DONE if the caller holds the lock for the next ttl ms, NOT_HELD if another does.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return DONE
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return DONE
end
return NOT_HELD
