-- reserve_checkout.lua: bind one key to a checkout session, exactly once.
-- KEYS[1] checkout record; ARGV field, value pairs describing the key to issue (key_id, hash,
-- tier, customer, subscription, created, mode, status, claim, claim_expires).
-- Returns the key id bound to the session: ours if we were first, the winner's otherwise.
local existing = redis.call('HGET', KEYS[1], 'key_id')
if existing then
  return existing
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return redis.call('HGET', KEYS[1], 'key_id')
