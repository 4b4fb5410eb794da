-- usage_ack.lua: Stripe accepted a customer's pending meter events: forget them, count them as
-- sent, and release the customer's send lock if the caller holds it.
-- KEYS[1] pending, KEYS[2] sent, KEYS[3] send lock
-- ARGV[1] the lock owner; then per event: pending field "<meter>|<window>|<gen>", sent field
-- "<meter>|<window>" (none: only the lock is released)
-- Returns the requests acknowledged (0 for events acknowledged already).
local acked = 0
for i = 2, #ARGV, 2 do
  local n = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if n then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('HINCRBY', KEYS[2], ARGV[i + 1], n)
    acked = acked + n
  end
end
if redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('DEL', KEYS[3])
end
return acked
