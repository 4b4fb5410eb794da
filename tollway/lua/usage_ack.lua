-- usage_ack.lua: Stripe accepted a pending meter event: forget it, and count it as sent.
-- KEYS[1] pending, KEYS[2] sent; ARGV[1] pending field "<meter>|<window>|<gen>",
-- ARGV[2] sent field "<meter>|<window>"
-- Returns the requests acknowledged (0 if it was acknowledged already).
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if not n then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], ARGV[2], n)
return n
