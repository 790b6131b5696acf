-- weir shared GCRA: one decision, atomic, on the server's clock.
-- The same algorithm as weir_rate::RateLimiter, in whole microseconds (every
-- value stays an exact integer in Lua's doubles, far below 2^53).
--
-- KEYS[1]  the bucket: its theoretical arrival time (TAT), in microseconds
--          since the epoch; absent = a full bucket. It expires when the
--          bucket is full again.
-- ARGV     period_us, burst, op ('take' | 'peek' | 'refund'), n, want,
--          max_wait_us, mark
-- Returns  {ok, granted, wait_us, available, now_us, tat_us}
--   take:   grants n tokens (up to `want` when more are there: a lease) if
--           they conform within max_wait_us; wait_us is how long until they
--           may be used. Refused: wait_us is when n could be granted, or -1
--           for never (n above the burst).
--   peek:   available tokens now; takes nothing.
--   refund: gives back n tokens of a reservation whose TAT was `mark`, if
--           no later reservation depends on it and it is not yet due.
local period = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local op = ARGV[3]
local n = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tau = period * burst
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  tat = math.max(tonumber(stored), now)
end
local available = math.floor((tau - (tat - now)) / period)

-- %d, not tostring: Lua prints doubles with 14 significant digits.
local function store(value)
  if value > now then
    redis.call('SET', KEYS[1], string.format('%d', value), 'PX', math.ceil((value - now) / 1000))
  else
    redis.call('DEL', KEYS[1])
  end
end

if op == 'peek' then
  return {1, 0, 0, available, now, tat}
end

if op == 'refund' then
  local mark = tonumber(ARGV[7])
  if stored and tonumber(stored) == mark and mark - tau > now then
    local back = mark - n * period
    store(back)
    return {1, n, 0, math.floor((tau - (math.max(back, now) - now)) / period), now, back}
  end
  return {0, 0, 0, available, now, tat}
end

if n > burst then
  return {0, 0, -1, available, now, tat}
end
local want = tonumber(ARGV[5])
local max_wait = tonumber(ARGV[6])
local take = n
if want > n and available > n then
  take = math.min(want, available)
end
local new = tat + take * period
local conform = new - tau
if conform > now + max_wait then
  return {0, 0, tat + n * period - tau - now, available, now, tat}
end
store(new)
return {1, take, math.max(conform - now, 0), available - take, now, new}
