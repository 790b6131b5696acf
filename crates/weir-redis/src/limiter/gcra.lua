-- weir shared GCRA: one decision, atomic, on the server's clock.
-- The same algorithm as weir_rate::RateLimiter, in whole microseconds (every
-- value stays an exact integer in Lua's doubles, far below 2^53). Written
-- for the hot path: no closures, few table lookups, the fewest arguments
-- for the most common call, a short reply.
--
-- KEYS[1]  the bucket: its theoretical arrival time (TAT), in microseconds
--          since the epoch; absent = a full bucket. It expires when the
--          bucket is full again.
-- ARGV     take n now:       period_us, burst, n
--          take (lease/wait): period_us, burst, n, want, max_wait_us
--          peek:             period_us, burst, 'peek'
--          refund:           period_us, burst, n, 'refund', mark
-- Returns  {ok, granted, wait_us, available, tat_us}
--   take:   grants n tokens (up to `want` when more are there: a lease) if
--           they conform within max_wait_us (0 if not given); wait_us is
--           how long until they may be used. Refused: wait_us is when n
--           could be granted, or -1 for never (n above the burst).
--   peek:   available tokens now; takes nothing.
--   refund: gives back n tokens of a reservation whose TAT was `mark`, if
--           no later reservation depends on it and it is not yet due.
local period = tonumber(ARGV[1])
local tau = period * tonumber(ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  stored = tonumber(stored)
  if stored > now then
    tat = stored
  end
end
local available = math.floor((tau - tat + now) / period)

if ARGV[3] == 'peek' then
  return {1, 0, 0, available, tat}
end
local n = tonumber(ARGV[3])

if ARGV[4] == 'refund' then
  local mark = tonumber(ARGV[5])
  if stored == mark and mark - tau > now then
    local back = mark - n * period
    redis.call('SET', KEYS[1], string.format('%d', back), 'PX', math.ceil((back - now) / 1000))
    return {1, n, 0, math.floor((tau - back + now) / period), back}
  end
  return {0, 0, 0, available, tat}
end

if n * period > tau then
  return {0, 0, -1, available, tat}
end
local take = n
local max_wait = 0
if ARGV[4] then
  local want = tonumber(ARGV[4])
  max_wait = tonumber(ARGV[5])
  if want > n and available > n then
    take = want
    if available < want then
      take = available
    end
  end
end
local new = tat + take * period
local conform = new - tau
if conform > now + max_wait then
  return {0, 0, tat + n * period - tau - now, available, tat}
end
-- %d, not tostring: Lua prints doubles with 14 significant digits.
if new > now then
  redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.ceil((new - now) / 1000))
else
  redis.call('DEL', KEYS[1])
end
local wait = conform - now
if wait < 0 then
  wait = 0
end
return {1, take, wait, available - take, new}
