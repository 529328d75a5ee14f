-- An admin's change to one balance (packed doubles: remaining, refill period, sequence), after
-- any refill due, atomically with every request spending from it.
-- KEYS[1]  "<prefix>:cr:{u:<owner>}:<holder>"
-- ARGV     op (0 forget, 1 add, 2 set, 3 read, 4 rebase: keep the balance, move to the current
--          period without a refill), n, the current refill period, the refill
--          amount (-1: none), then a seed (remaining, period, sequence) used when the value is
--          missing (remaining -1: none)
-- Returns {remaining, period, sequence} after the change, or {} when there is no balance.
local op, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local period, amount, seed = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if op == 0 then
  redis.call('DEL', KEYS[1])
  return {}
end
local remaining, at, seq
local stored = redis.call('GET', KEYS[1])
if stored and #stored == 24 then
  remaining, at, seq = struct.unpack('ddd', stored)
elseif op == 3 or seed < 0 then
  return {}
else
  remaining, at, seq = seed, tonumber(ARGV[6]), tonumber(ARGV[7])
end
if op == 3 then return {remaining, at, seq} end
if op == 4 then
  at = period
elseif amount >= 0 and period > at then
  remaining, at, seq = amount, period, seq + 1
end
if op == 1 then
  remaining = math.min(remaining + n, 9007199254740992)
elseif op == 2 then
  remaining = n
end
seq = seq + 1
redis.call('SET', KEYS[1], struct.pack('ddd', remaining, at, seq))
return {remaining, at, seq}
