-- usage_claim.lua: freeze a customer's open usage into pending meter events, atomically.
-- KEYS[1] open ledger, KEYS[2] generations, KEYS[3] pending
-- ARGV[1] the customer's Stripe id
-- Each "<meter>|<window>" with usage becomes pending "<meter>|<window>|<gen>" holding
-- meter, window, gen and value; gen counts claims of that window, so usage that arrives for
-- it later is claimed again under the next gen (a new identifier), never merged into a sent one.
-- Returns the whole pending hash as a flat list: field, value, ...
local open = redis.call('HGETALL', KEYS[1])
for i = 1, #open, 2 do
  local n = tonumber(open[i + 1])
  if n and n > 0 then
    local gen = redis.call('HINCRBY', KEYS[2], open[i], 1)
    redis.call('HSET', KEYS[3], open[i] .. '|' .. gen, n)
  end
  redis.call('HDEL', KEYS[1], open[i])
end
return redis.call('HGETALL', KEYS[3])
