-- set_account_hold.lua: put an operator's hold on a whole account, or lift it. While it is
-- there, check.lua answers every key of the account 402, and open_key.lua and rotate_key.lua
-- refuse to add keys to it.
-- KEYS[1] the account hash; ARGV[1] the hold ("operator") or "" to lift it.
-- Returns DONE, or MISSING if there is no such account.
if redis.call('HEXISTS', KEYS[1], 'customer') == 0 then
  return MISSING
end
redis.call('HSET', KEYS[1], 'hold', ARGV[1])
return DONE
