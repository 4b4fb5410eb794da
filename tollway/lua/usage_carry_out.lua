-- usage_carry_out.lua: take a refund carry that found no later window off the usage hash,
-- once. metering parks it as a dead letter first (metering/ledger.py), then calls this.
-- KEYS[1] usage hash; KEYS[2] this carry's applied marker
-- ARGV[1] requests parked; ARGV[2] marker TTL in seconds
-- Returns DONE, or ALREADY if this carry was taken off before.
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  return ALREADY
end
local left = redis.call('HINCRBY', KEYS[1], 'carry', -tonumber(ARGV[1]))
if left <= 0 then
  redis.call('HDEL', KEYS[1], 'carry', 'carry_at')
end
return DONE
