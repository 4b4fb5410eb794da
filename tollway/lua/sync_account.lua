-- sync_account.lua: copy a subscription's state onto its account, never backwards.
-- KEYS[1] the account hash
-- ARGV[1] version of the subscription state; ARGV[2] customer; ARGV[3] subscription;
-- ARGV[4..] field, value pairs (status, tier, grace_until, period_start, period_end).
-- The account's bucket and quota are kept: a tier change clamps the bucket to the new burst
-- at the next check (check.lua), and the quota used this period stays.
-- Returns DONE, or NEWER if the account already holds a newer version.
local current = tonumber(redis.call('HGET', KEYS[1], 'sync_version')) or 0
if current > tonumber(ARGV[1]) then
  return NEWER
end
local fields = {'sync_version', ARGV[1], 'customer', ARGV[2], 'subscription', ARGV[3]}
for i = 4, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
return DONE
