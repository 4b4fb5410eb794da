-- count_in_window.lua: count hits in a fixed window, atomically with its expiry.
-- KEYS[1] the counter; ARGV[1] the window in seconds; ARGV[2] how many hits (default 1).
-- Returns the count. The expiry is set whenever the counter has none, so a counter can never
-- be left without one (INCR then EXPIRE as two calls could, if the second never ran: that
-- counter would lock its client out for good).
local n = redis.call('INCRBY', KEYS[1], tonumber(ARGV[2] or '1'))
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return n
