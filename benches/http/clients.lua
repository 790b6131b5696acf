-- wrk script for benches/http/run.sh: each request names one of
-- WRK_CLIENTS clients (default 10) in its `x-client` header, in turn.
-- With WRK_COUNT set, it also counts the admitted (200) responses per
-- client from the body (`hello, <client>`), which costs wrk some CPU, so
-- the overhead rounds leave it unset. `done` prints one RESULT line and,
-- when counting, an ADMITTED line per client, for run.sh to parse.

local clients = tonumber(os.getenv("WRK_CLIENTS") or "10")
local counting = os.getenv("WRK_COUNT") ~= nil
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  admitted = {}
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, { ["x-client"] = "c" .. (counter % clients) })
end

if counting then
  function response(status, headers, body)
    if status == 200 then
      local c = body:match("hello, (%S+)")
      if c then
        admitted[c] = (admitted[c] or 0) + 1
      end
    end
  end
end

function done(summary, latency, requests)
  io.write(string.format(
    "RESULT requests=%d duration_us=%d non2xx=%d errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
  if counting then
    local total = {}
    for _, t in ipairs(threads) do
      for c, n in pairs(t:get("admitted")) do
        total[c] = (total[c] or 0) + n
      end
    end
    for c, n in pairs(total) do
      io.write(string.format("ADMITTED %s %d\n", c, n))
    end
  end
end
