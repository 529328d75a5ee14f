-- Sliding-window check-and-count for a batch of callers, atomically, on Redis's clock.
--
-- Each caller's counters are one hash, KEYS[g] = "<prefix>:rl:{<bucket>}" (the braces are a
-- hash tag: a cluster sends a single-caller call to that caller's node). Per window of W
-- seconds it holds "<W>i" (the clock-aligned window number), "<W>c" (its count) and "<W>p" (the
-- previous window's count): the same three numbers as the in-process store's Counter, rolled
-- forward the same way.
--
-- ARGV[1]  clock override in Unix ms (0 = Redis TIME; tests pass a fixed time)
-- ARGV[2]  number of policies, then each policy: n, then n pairs (window seconds, limit or -1
--          for none), shortest window first
-- then, for each caller g in KEYS order: its policy's number (from 1), m, then m costs: the
-- caller's requests in arrival order (cost 0 only reads).
-- Returns {now_ms, then per caller: prev_1, curr_1, ..., prev_n, curr_n (before this batch),
--          then m flags (1 = counted, 0 = refused)}.
-- Each request is decided as if it ran alone after the ones before it: it passes when every
-- window has room for it, and only then is it counted.
--
-- Written for speed (it runs inside Redis's single thread): whatever depends only on the clock
-- and the policy is computed once per call, tables are reused across callers, and only fields
-- that change are written.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local a = 3
local policies = {}
for p = 1, tonumber(ARGV[2]) do
  local n = tonumber(ARGV[a])
  a = a + 1
  local policy = {n = n, limit = {}, idx = {}, share = {}, fields = {}, ttl = 0}
  for i = 1, n do
    local w_ms = tonumber(ARGV[a]) * 1000
    local idx = math.floor(now / w_ms)
    policy.limit[i] = tonumber(ARGV[a + 1])
    policy.idx[i] = idx
    -- The previous window's weight now; with limits::weighted_previous's arithmetic, in its
    -- order: floor(prev * ((W - elapsed) / W)).
    policy.share[i] = (w_ms - (now - idx * w_ms)) / w_ms
    policy.fields[3 * i - 2] = ARGV[a] .. 'i'
    policy.fields[3 * i - 1] = ARGV[a] .. 'c'
    policy.fields[3 * i] = ARGV[a] .. 'p'
    -- The hash lives until the longest window after the current one ends (when the current
    -- one stops mattering as "previous"); shorter windows end no later.
    policy.ttl = (idx + 2) * w_ms - now
    a = a + 2
  end
  policies[p] = policy
end

local out, o = {now}, 1
local prev, curr, weighted, rolled, update = {}, {}, {}, {}, {}
for g = 1, #KEYS do
  local key = KEYS[g]
  local policy = policies[tonumber(ARGV[a])]
  local m = tonumber(ARGV[a + 1])
  a = a + 2
  local n = policy.n
  local stored = redis.call('HMGET', key, unpack(policy.fields))
  for i = 1, n do
    local was = tonumber(stored[3 * i - 2] or '-1')
    local c = tonumber(stored[3 * i - 1] or '0')
    local p = tonumber(stored[3 * i] or '0')
    rolled[i] = was ~= policy.idx[i]
    if rolled[i] then
      if was == policy.idx[i] - 1 then p = c else p = 0 end
      c = 0
    end
    prev[i], curr[i] = p, c
    weighted[i] = math.floor(p * policy.share[i])
    out[o + 1], out[o + 2] = p, c
    o = o + 2
  end
  local added = 0
  for j = a, a + m - 1 do
    local cost = tonumber(ARGV[j])
    local fits = true
    for i = 1, n do
      local limit = policy.limit[i]
      if limit >= 0 and weighted[i] + curr[i] + added + cost > limit then
        fits = false
        break
      end
    end
    if fits then added = added + cost end
    o = o + 1
    out[o] = fits and 1 or 0
  end
  a = a + m
  if added > 0 then
    local k = 0
    for i = 1, n do
      update[k + 1] = policy.fields[3 * i - 1]
      update[k + 2] = curr[i] + added
      k = k + 2
      if rolled[i] then
        update[k + 1] = policy.fields[3 * i - 2]
        update[k + 2] = policy.idx[i]
        update[k + 3] = policy.fields[3 * i]
        update[k + 4] = prev[i]
        k = k + 4
      end
    end
    redis.call('HSET', key, unpack(update, 1, k))
    if rolled[n] then
      redis.call('PEXPIRE', key, policy.ttl)
    end
  end
end
return out
