-- alert_settle.lua: record an alert's delivery and release its lock, only if we still hold it.
-- KEYS[1] the account's alerts hash; KEYS[2] the alert's lock
-- ARGV[1] owner; ARGV[2] the alert's field; ARGV[3] its new record ('' only releases the lock)
-- Returns DONE if the lock was ours (record written, lock deleted), NOT_HELD if it had
-- expired or another process holds it now (nothing written: that process's record stands).
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return NOT_HELD
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
end
redis.call('DEL', KEYS[2])
return DONE
