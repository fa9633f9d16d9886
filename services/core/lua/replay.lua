-- Replay a dead letter: run its job again from where it failed, and record who did it, in one
-- atomic step (a worker can never see the job half put back).
-- KEYS[1] dead-letter stream, KEYS[2] job hash, KEYS[3] request image blob
-- ARGV[1] dead-letter entry id, ARGV[2] who replays, ARGV[3] stream prefix, ARGV[4] deadline s,
-- ARGV[5] ttl s, ARGV[6] the job id the caller read from the letter (KEYS must be declared)
-- Returns {'replayed', nodes enqueued}, {'not_found', ''}, {'job_expired', ''},
-- {'not_failed_here', job status} or {'inputs_gone', ref}; only 'replayed' changes anything.
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return {'not_found', ''} end
local letter, kv = {}, found[1][2]
for i = 1, #kv, 2 do letter[kv[i]] = kv[i + 1] end
if letter.job ~= ARGV[6] then return redis.error_reply('the dead letter is for job ' .. letter.job) end
local job = KEYS[2]
local status = redis.call('HGET', job, 'status')
if not status then return {'job_expired', ''} end
-- Only the failure this dead letter caused is undone: the job's error is the letter's, byte
-- for byte (fail.lua writes both from one value; the first failure of a job wins).
if status ~= 'failed' or redis.call('HGET', job, 'error') ~= letter.error then
  return {'not_failed_here', status}
end
local dag = cjson.decode(redis.call('HGET', job, 'dag'))
local id = redis.call('HGET', job, 'id')

-- Whether the node's task is still in its stage stream (waiting, or held by a worker): then it
-- runs from there. n:{node}:enq holds the millisecond part of its entry id.
local function in_stream(name)
  local enq = redis.call('HGET', job, 'n:' .. name .. ':enq')
  if not enq then return false end
  local entries = redis.call('XRANGE', ARGV[3] .. dag.nodes[name].stage, enq, enq)
  for _, e in ipairs(entries) do
    local f = {}
    for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
    if f.job == id and f.node == name then return true end
  end
  return false
end

-- Run again, each with a fresh set of attempts: the dead node, and the nodes that were queued or
-- running when the job failed and whose tasks workers then dropped (a failed job's tasks are
-- skipped; a sibling may have exhausted its attempts too). Pending nodes still wait for their
-- inputs; succeeded ones keep their outputs.
local names = {}
for name in pairs(dag.nodes) do names[#names + 1] = name end
table.sort(names)
local rerun = {}
for _, name in ipairs(names) do
  local st = redis.call('HGET', job, 'n:' .. name .. ':status')
  if (st == 'queued' or st == 'running' or st == 'failed') and not in_stream(name) then
    rerun[#rerun + 1] = name
  end
end
for _, name in ipairs(rerun) do
  for _, ref in ipairs(dag.nodes[name].refs) do
    local kept
    if ref == '$request.image' then kept = redis.call('EXISTS', KEYS[3]) == 1
    else kept = redis.call('HEXISTS', job, 'o:' .. ref) == 1 end
    if not kept then return {'inputs_gone', ref} end
  end
end

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for _, name in ipairs(rerun) do
  local np = 'n:' .. name .. ':'
  local entry = redis.call('XADD', ARGV[3] .. dag.nodes[name].stage, '*', 'job', id, 'node', name)
  redis.call('HDEL', job, np .. 'start', np .. 'end', np .. 'worker', np .. 'pool')
  redis.call('HSET', job, np .. 'status', 'queued', np .. 'enq', string.match(entry, '^(%d+)'),
    np .. 'attempts', 0)
end
local replays = cjson.decode(redis.call('HGET', job, 'replays') or '[]')
replays[#replays + 1] = {at = now, by = ARGV[2], stage = dag.nodes[letter.node].stage,
  node = letter.node, dead_letter = ARGV[1]}
redis.call('HDEL', job, 'error')
redis.call('HSET', job, 'status', 'running', 'updated_at', now, 'replays', cjson.encode(replays),
  'deadline', now + math.floor(tonumber(ARGV[4]) * 1000))
-- A replayed job lives its full TTL again, and so does its image until the job ends.
redis.call('EXPIRE', job, ARGV[5])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ARGV[5]) end
redis.call('XDEL', KEYS[1], ARGV[1])
return {'replayed', tostring(#rerun)}
