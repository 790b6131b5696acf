//! The queue's Lua scripts: every step that touches more than one entry or
//! key is one script, so it is atomic (nothing is lost or doubled between
//! two commands when a process or the server dies).
//!
//! (Acknowledgements are the one multi-command step that is not a
//! script: `MULTI`, `XACK`, `XDEL`, `EXEC` is as atomic and costs the
//! server less per id.)
//!
//! Entries of the job stream have the fields `job` (the JSON payload),
//! `attempts` (deliveries that ended in a failure before this entry was
//! added; absent = 0) and `error` (the last failure). Acknowledged entries
//! are deleted, so the stream's length is the number of jobs not yet done:
//! waiting, or delivered and not acknowledged.

/// KEYS: stream. ARGV: max_len, payload... Adds the payloads if the stream
/// stays within max_len. Returns `{1, len, id...}` or `{0, len}`.
pub(crate) const ENQUEUE: &str = r"
local len = redis.call('XLEN', KEYS[1])
local n = #ARGV - 1
if len + n > tonumber(ARGV[1]) then
  return {0, len}
end
local out = {1, len + n}
for i = 2, #ARGV do
  out[#out + 1] = redis.call('XADD', KEYS[1], '*', 'job', ARGV[i])
end
return out
";

/// KEYS: stream, dead. ARGV: group, consumer, id, payload, attempts, error,
/// dead (1/0), dead_max_len. A failed delivery: if the entry is still this
/// consumer's, acknowledges and deletes it and adds the job again (retry)
/// or to the dead-letter stream. Returns 1 (retried), 2 (dead-lettered) or
/// 0 (no longer this consumer's: another one reclaimed it).
pub(crate) const FAIL: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then
  return 0
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
if ARGV[7] == '1' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', 'job', ARGV[4], 'error', ARGV[6],
    'attempts', ARGV[5], 'id', ARGV[3], 'consumer', ARGV[2])
  return 2
end
redis.call('XADD', KEYS[1], '*', 'job', ARGV[4], 'attempts', ARGV[5], 'error', ARGV[6])
return 1
";

/// KEYS: stream. ARGV: group, consumer, then (id, payload, attempts)...
/// Gives entries this consumer read but did not start back to the others
/// at once: each still its own is acknowledged, deleted and added again
/// with the same attempts. Returns how many were released.
pub(crate) const RELEASE: &str = r"
local n = 0
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    redis.call('XADD', KEYS[1], '*', 'job', ARGV[i + 1], 'attempts', ARGV[i + 2])
    n = n + 1
  end
end
return n
";

/// KEYS: stream, dead. ARGV: group, consumer, min_idle_ms, start, count,
/// max_deliveries, dead_max_len. Claims entries idle for min_idle_ms
/// (their consumer died or stalled) with `XAUTOCLAIM`; an entry delivered
/// more than max_deliveries times in all goes to the dead-letter stream
/// instead. Returns `{cursor, dead, id1, payload1, attempts1, deliveries1,
/// ...}`.
pub(crate) const RECLAIM: &str = r"
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {r[1], 0}
for _, e in ipairs(r[2]) do
  local id, f = e[1], e[2]
  if f then
    local job, attempts = '', 0
    for i = 1, #f, 2 do
      if f[i] == 'job' then
        job = f[i + 1]
      elseif f[i] == 'attempts' then
        attempts = tonumber(f[i + 1])
      end
    end
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local deliveries = p[1][4]
    if attempts + deliveries > tonumber(ARGV[6]) then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'job', job,
        'error', 'abandoned: delivered ' .. (attempts + deliveries - 1) .. ' times without an outcome',
        'attempts', attempts + deliveries - 1, 'id', id, 'consumer', ARGV[2])
      redis.call('XACK', KEYS[1], ARGV[1], id)
      redis.call('XDEL', KEYS[1], id)
      out[2] = out[2] + 1
    else
      out[#out + 1] = id
      out[#out + 1] = job
      out[#out + 1] = attempts
      out[#out + 1] = deliveries
    end
  end
end
return out
";

/// KEYS: stream. ARGV: group, consumer, id... Resets the idle time of the
/// entries that are still this consumer's (its jobs in progress are not
/// reclaimed while it lives). Returns how many.
pub(crate) const HEARTBEAT: &str = r"
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n
";

/// KEYS: stream. ARGV: group, consumer. Removes the consumer from the group
/// if it has nothing pending (`DELCONSUMER` would drop pending entries).
/// Returns 1 when removed.
pub(crate) const LEAVE: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
";
