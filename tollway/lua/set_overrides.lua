-- set_overrides.lua: set, or clear, an account's overrides of its tier, all at once.
-- KEYS[1] the account hash
-- ARGV[1] "1": clear every override first; ARGV[2..] field, value pairs (o_rate, o_burst,
-- o_quota, o_features, o_day, o_hour, o_conc).
-- Returns DONE, or MISSING if there is no such account (nothing is written).
if redis.call('HEXISTS', KEYS[1], 'customer') == 0 then
  return MISSING
end
if ARGV[1] == '1' then
  redis.call('HDEL', KEYS[1], 'o_rate', 'o_burst', 'o_quota', 'o_features', 'o_day', 'o_hour',
             'o_conc')
end
if #ARGV > 1 then
  local pairs_ = {}
  for i = 2, #ARGV do
    pairs_[#pairs_ + 1] = ARGV[i]
  end
  redis.call('HSET', KEYS[1], unpack(pairs_))
end
return DONE
