-- usage_claim.lua: under the customer's send lock, freeze its open usage into pending meter
-- events, atomically.
-- KEYS[1] open ledger, KEYS[2] generations, KEYS[3] pending, KEYS[4] send lock
-- ARGV[1] the claiming daemon (lock owner), ARGV[2] lock ttl in ms
-- The lock is taken (or renewed if the caller holds it); if another daemon holds it, nothing
-- is claimed: only the lock's holder sends for the customer, until usage_ack.lua releases it
-- or it expires (a dead daemon's customers are taken over).
-- Each "<meter>|<window>" with usage becomes pending "<meter>|<window>|<gen>" holding its
-- value; gen counts claims of that window, so usage that arrives for it later is claimed again
-- under the next gen (a new identifier), never merged into a sent one.
-- Returns {NOT_HELD}, or {DONE, the whole pending hash as a flat list: field, value, ...}.
local holder = redis.call('GET', KEYS[4])
if holder and holder ~= ARGV[1] then
  return {NOT_HELD}
end
redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
local open = redis.call('HGETALL', KEYS[1])
for i = 1, #open, 2 do
  local n = tonumber(open[i + 1])
  if n and n > 0 then
    local gen = redis.call('HINCRBY', KEYS[2], open[i], 1)
    redis.call('HSET', KEYS[3], open[i] .. '|' .. gen, n)
  end
  redis.call('HDEL', KEYS[1], open[i])
end
return {DONE, redis.call('HGETALL', KEYS[3])}
