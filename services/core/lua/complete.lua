-- A node finished: ack its task, store its outputs (once), release successors whose inputs are
-- all ready, and finish the job when the last node is done. Idempotent under redelivery.
-- KEYS[1] job hash, KEYS[2] request image blob, KEYS[3] this stage's stream, KEYS[4] stats key
-- prefix (record_stats builds its bucket keys from it), KEYS[5] callbacks stream
-- ARGV[1] node, ARGV[2] compute ms, ARGV[3] group, ARGV[4] stream entry id, ARGV[5] stream
-- prefix, ARGV[6] events channel, ARGV[7..] output field, json pairs
local job, node = KEYS[1], ARGV[1]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('XACK', KEYS[3], ARGV[3], ARGV[4])
redis.call('XDEL', KEYS[3], ARGV[4])
local status = redis.call('HGET', job, 'status')
if not status then return 'gone' end
if status ~= 'queued' and status ~= 'running' then return 'terminal' end
local np = 'n:' .. node .. ':'
if redis.call('HGET', job, np .. 'status') == 'succeeded' then return 'duplicate' end
for i = 7, #ARGV, 2 do
  redis.call('HSET', job, 'o:' .. node .. '.' .. ARGV[i], ARGV[i + 1])
end
redis.call('HSET', job, np .. 'status', 'succeeded', np .. 'end', now, np .. 'compute_ms', ARGV[2],
  'updated_at', now)
local dag = cjson.decode(redis.call('HGET', job, 'dag'))
local id = redis.call('HGET', job, 'id')
for _, succ in ipairs(dag.nodes[node].next) do
  if redis.call('HINCRBY', job, 'n:' .. succ .. ':wait', -1) == 0 then
    local entry = redis.call('XADD', ARGV[5] .. dag.nodes[succ].stage, '*', 'job', id, 'node', succ)
    redis.call('HSET', job, 'n:' .. succ .. ':status', 'queued',
      'n:' .. succ .. ':enq', string.match(entry, '^(%d+)'))
  end
end
if redis.call('HINCRBY', job, 'left', -1) > 0 then
  redis.call('PUBLISH', job .. ':events', node)  -- node progress, as in begin.lua
  return 'ok'
end
-- Assembled by concatenating the stored JSON: re-encoding with cjson would turn [] into {}.
local parts = {}
for _, o in ipairs(dag.outputs) do
  parts[#parts + 1] = cjson.encode(o.name) .. ':' .. (redis.call('HGET', job, 'o:' .. o.ref) or 'null')
end
redis.call('HSET', job, 'result', '{' .. table.concat(parts, ',') .. '}', 'status', 'succeeded')
record_stats(job, dag, KEYS[4], now, 'succeeded')
queue_callback(job, KEYS[5], id)
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[6], id)
return 'finished'
