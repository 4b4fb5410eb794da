-- open_key.lua: write a new key record into its account, and the account's own fields.
-- KEYS[1] the key record (in the account's slot); KEYS[2] the account hash
-- ARGV[1] tier, ARGV[2] customer, ARGV[3] subscription ("" for a customer account),
-- ARGV[4] period_start, ARGV[5] period_end, ARGV[6..] the record's field, value pairs.
-- Returns {DONE}, or {ALREADY} if the record exists, or (nothing written) {TIER_CONFLICT,
-- tier} if the account is a customer account on another tier (all keys of an account share
-- one plan), or {ACCOUNT_HELD} if an operator has suspended the account (it takes no new key).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {ALREADY}
end
local plan = redis.call('HMGET', KEYS[2], 'tier', 'hold')
local tier = plan[1]
if plan[2] and plan[2] ~= '' then
  return {ACCOUNT_HELD}
end
if ARGV[3] == '' and tier and tier ~= '' and tier ~= ARGV[1] then
  return {TIER_CONFLICT, tier}
end
local record = {}
for i = 6, #ARGV do
  record[#record + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(record))
redis.call('HSET', KEYS[2], 'customer', ARGV[2], 'subscription', ARGV[3])
if not tier or tier == '' then
  redis.call('HSET', KEYS[2], 'tier', ARGV[1], 'period_start', ARGV[4], 'period_end', ARGV[5])
end
return {DONE}
