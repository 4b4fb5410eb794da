-- set_tier.lua: move a customer account, and every live key of it, to another tier at once.
-- KEYS[1] the account hash; KEYS[2..] its key records (all in the account's slot)
-- ARGV[1] the tier.
-- The account's bucket and quota are kept: the bucket clamps to the new burst at the next
-- check, and the quota used this period stays. Returns how many keys moved, or MISSING if
-- there is no such account.
if redis.call('HEXISTS', KEYS[1], 'customer') == 0 then
  return MISSING
end
redis.call('HSET', KEYS[1], 'tier', ARGV[1])
local moved = 0
for i = 2, #KEYS do
  local status = redis.call('HGET', KEYS[i], 'status')
  if status and status ~= 'revoked' then
    redis.call('HSET', KEYS[i], 'tier', ARGV[1])
    moved = moved + 1
  end
end
return moved
