-- Sliding-window check-and-count for a batch of callers, atomically, on Redis's clock.
--
-- Each caller's counters are one string, KEYS[g] = "<prefix>:rc:{<bucket>}" (the braces are a
-- hash tag: a cluster sends a single-caller call to that caller's node), packed with
-- struct.pack as doubles: the Unix ms of its last update, then per window of W seconds: W, the
-- current clock-aligned window's count and the previous window's count. Each window's number is
-- derived from the time of the last update (every window is rolled at every update), as in
-- the in-process store's Counters. One GET and one SET per caller: measured against a hash of
-- nine fields (HMGET, HSET), 28% less script time per call (redis-benchmark, 14 warm callers a
-- call; docs/bench-2026-11-29-packed-script.txt).
--
-- ARGV[1]  clock override in Unix ms (0 = Redis TIME; tests pass a fixed time)
-- ARGV[2]  number of policies, then each policy: n, then n pairs (window seconds, limit or -1
--          for none), shortest window first; 0 seconds is the calendar month (UTC), which does
--          not slide: the previous month's count has no weight
-- then S, the number of plain callers (the first S KEYS), and for each caller g: its policy's
-- number (from 1), m, then m costs: the caller's requests in arrival order (cost 0 only reads).
-- then the asks (requests with credits or a user's plan, `limits::ask`): E entries, one per
-- value they touch (KEYS[S + e]), each: kind 1 (windows, packed as above): its policy's
-- number; or kind 2 (credits, packed doubles: remaining, refill period, sequence, refill terms):
-- the current refill period, the refill amount (-1: none), the terms' tag (`Credits::tag`), and
-- a seed (remaining or -1 for none, period, sequence) used only when the value is missing; then
-- G groups of requests of one ask (one key's, in arrival order), each: k, its k entry numbers,
-- m, then m costs.
-- Returns {now_ms, then per caller: prev_1, curr_1, ..., prev_n, curr_n (before this batch),
--          then m flags (1 = counted, 0 = refused); then per entry: windows: prev_1, curr_1,
--          ...; credits: the balance before this batch, after any seed and refill (-1: none
--          held and no seed); then per group m flags (1 = counted, 0 = refused, 2 = a balance
--          missing)}.
-- Each request is decided as if it ran alone after the ones before it: it passes when every
-- window has room for it, and only then is it counted.
--
-- Written for speed (it runs inside Redis's single thread): whatever depends only on the clock
-- and the policy is computed once per call, tables are reused across callers, and a caller is
-- written only when something was counted.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The calendar month (UTC) containing `ms`: its number (0 = January 1970), start and length
-- in ms (Howard Hinnant's civil_from_days; agrees with limits::rate::calendar, which uses chrono:
-- a replay across month ends on both stores checks it).
local DAY = 86400000
local function month_of(ms)
  local days = math.floor(ms / DAY)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400
  if month <= 2 then year = year + 1 end
  local length = 31
  if month == 2 then
    if year % 4 == 0 and (year % 100 ~= 0 or year % 400 == 0) then length = 29 else length = 28 end
  elseif month == 4 or month == 6 or month == 9 or month == 11 then
    length = 30
  end
  return (year - 1970) * 12 + month - 1, (days - day + 1) * DAY, length * DAY
end

-- The number of the window of `w` seconds (0: the month) containing `ms`.
local function number_of(w, w_ms, ms)
  if w == 0 then return (month_of(ms)) end
  return math.floor(ms / w_ms)
end

local a = 3
local policies = {}
for p = 1, tonumber(ARGV[2]) do
  local n = tonumber(ARGV[a])
  a = a + 1
  local policy = {n = n, w = {}, w_ms = {}, limit = {}, idx = {}, share = {}, ttl = 0,
                  format = string.rep('d', 1 + 3 * n)}
  for i = 1, n do
    local w = tonumber(ARGV[a])
    local w_ms = w * 1000
    policy.w[i], policy.w_ms[i] = w, w_ms
    policy.limit[i] = tonumber(ARGV[a + 1])
    if w == 0 then
      local idx, start, length = month_of(now)
      local _, _, next_length = month_of(start + length)
      policy.idx[i] = idx
      policy.share[i] = 0
      policy.ttl = start + length + next_length - now
    else
      local idx = math.floor(now / w_ms)
      policy.idx[i] = idx
      -- The previous window's weight now; with limits::weighted_previous's arithmetic, in its
      -- order: floor(prev * ((W - elapsed) / W)).
      policy.share[i] = (w_ms - (now - idx * w_ms)) / w_ms
      -- The value lives until the longest window after the current one ends (when the
      -- current one stops mattering as "previous"); shorter windows end no later.
      policy.ttl = (idx + 2) * w_ms - now
    end
    a = a + 2
  end
  policies[p] = policy
end

-- The stored (count, previous count) of window `w` in unpacked value `v`, rolled to now: the
-- same position when the policy is unchanged, else found by its W (a changed policy keeps the
-- counts of the windows it kept).
local function stored_counts(v, policy, i)
  local at, j = v[1], 3 * i - 1
  if v[j] ~= policy.w[i] then
    j = nil
    for k = 2, #v - 1, 3 do
      if v[k] == policy.w[i] then j = k end
    end
    if not j then return 0, 0, true end
  end
  local was = number_of(policy.w[i], policy.w_ms[i], at)
  local c, p = v[j + 1], v[j + 2]
  if was == policy.idx[i] then return c, p, false end
  if was == policy.idx[i] - 1 then return 0, c, true end
  return 0, 0, true
end

-- The packed value `stored` unpacked, or nil when missing or malformed.
local function unpacked(stored)
  if stored and #stored >= 32 and #stored % 24 == 8 then
    -- struct.unpack returns the values and then the next position (dropped).
    local v = {struct.unpack(string.rep('d', #stored / 8), stored)}
    v[#v] = nil
    return v
  end
  return nil
end

local packed = {}
-- Writes a caller's counts with `added` more counted; `rolled` (the longest window's) moves
-- the expiry.
local function write(key, policy, prev, curr, added, rolled)
  local n = policy.n
  packed[1] = now
  for i = 1, n do
    packed[3 * i - 1] = policy.w[i]
    packed[3 * i] = curr[i] + added
    packed[3 * i + 1] = prev[i]
  end
  local value = struct.pack(policy.format, unpack(packed, 1, 1 + 3 * n))
  if rolled then
    redis.call('SET', key, value, 'PX', policy.ttl)
  else
    redis.call('SET', key, value, 'KEEPTTL')
  end
end

local out, o = {now}, 1
local prev, curr, weighted = {}, {}, {}
local S = tonumber(ARGV[a])
a = a + 1
for g = 1, S do
  local key = KEYS[g]
  local policy = policies[tonumber(ARGV[a])]
  local m = tonumber(ARGV[a + 1])
  a = a + 2
  local n = policy.n
  local v = unpacked(redis.call('GET', key))
  local rolled = true
  for i = 1, n do
    local c, p, r = 0, 0, true
    if v then c, p, r = stored_counts(v, policy, i) end
    rolled = r
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
  if added > 0 then write(key, policy, prev, curr, added, rolled) end
end

-- The asks: every entry loaded once, with its room (the least any of its limited windows has
-- left), each request decided in arrival order over all of its entries, every changed entry
-- written once.
local E = tonumber(ARGV[a])
a = a + 1
local entries = {}
for e = 1, E do
  local key, kind = KEYS[S + e], tonumber(ARGV[a])
  local entry = {kind = kind}
  if kind == 1 then
    local policy = policies[tonumber(ARGV[a + 1])]
    a = a + 2
    local v = unpacked(redis.call('GET', key))
    entry.policy, entry.prev, entry.curr, entry.weighted = policy, {}, {}, {}
    entry.added, entry.rolled = 0, true
    for i = 1, policy.n do
      local c, p, r = 0, 0, true
      if v then c, p, r = stored_counts(v, policy, i) end
      entry.rolled = r
      entry.prev[i], entry.curr[i] = p, c
      entry.weighted[i] = math.floor(p * policy.share[i])
      out[o + 1], out[o + 2] = p, c
      o = o + 2
      local limit = policy.limit[i]
      if limit >= 0 then
        local room = limit - entry.weighted[i] - c
        if entry.room == nil or room < entry.room then entry.room = room end
      end
    end
  else
    local period, amount, tag = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    local seed = tonumber(ARGV[a + 4])
    local stored = redis.call('GET', key)
    if stored and #stored == 32 then
      entry.remaining, entry.period, entry.seq, entry.tag = struct.unpack('dddd', stored)
    elseif seed >= 0 then
      entry.remaining, entry.period, entry.seq = seed, tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
      entry.tag, entry.dirty = tag, true
    end
    -- A refill sets the balance to its amount, once per period (a later period only), under
    -- the terms the balance was counted by (a request read before they changed never refills).
    if entry.remaining and amount >= 0 and period > entry.period and tag == entry.tag then
      entry.remaining, entry.period, entry.seq = amount, period, entry.seq + 1
      entry.dirty = true
    end
    a = a + 7
    o = o + 1
    out[o] = entry.remaining or -1
  end
  entries[e] = entry
end
local G = tonumber(ARGV[a])
a = a + 1
local group = {}
for g = 1, G do
  local k = tonumber(ARGV[a])
  local unseeded = false
  for j = 1, k do
    local entry = entries[tonumber(ARGV[a + j])]
    group[j] = entry
    if entry.kind == 2 and entry.remaining == nil then unseeded = true end
  end
  local m = tonumber(ARGV[a + k + 1])
  a = a + k + 2
  -- Every entry of the group gets the same requests: the group's room is the least any of
  -- them has left, and each request is one comparison against it; the entries are brought up
  -- to date once, after the group.
  local room = nil
  for j = 1, k do
    local entry = group[j]
    local left = entry.remaining
    if entry.kind == 1 then left = entry.room and entry.room - entry.added end
    if left and (room == nil or left < room) then room = left end
  end
  local spent, counted = 0, 0
  for r = 0, m - 1 do
    local cost = tonumber(ARGV[a + r])
    local flag = 1
    if unseeded then
      flag = 2
    elseif room and spent + cost > room then
      flag = 0
    elseif cost > 0 then
      spent, counted = spent + cost, counted + 1
    end
    o = o + 1
    out[o] = flag
  end
  if spent > 0 then
    for j = 1, k do
      local entry = group[j]
      if entry.kind == 2 then
        entry.remaining, entry.seq, entry.dirty = entry.remaining - spent, entry.seq + counted, true
      else
        entry.added = entry.added + spent
      end
    end
  end
  a = a + m
end
for e = 1, E do
  local entry = entries[e]
  if entry.kind == 1 and entry.added > 0 then
    write(KEYS[S + e], entry.policy, entry.prev, entry.curr, entry.added, entry.rolled)
  elseif entry.kind == 2 and entry.dirty then
    redis.call('SET', KEYS[S + e], struct.pack('dddd', entry.remaining, entry.period, entry.seq, entry.tag))
  end
end
return out
