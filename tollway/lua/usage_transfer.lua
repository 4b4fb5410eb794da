-- usage_transfer.lua: add one outbox entry to its customer's open ledger, at most once.
-- KEYS[1] the entry's transfer marker; KEYS[2] the customer's open ledger
-- ARGV[1] ledger field "<meter>|<window>"; ARGV[2] requests; ARGV[3] marker TTL in seconds
-- Returns 1 if added, 0 if this entry had been added before (a retry after a crash).
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then
  redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
  return 1
end
return 0
