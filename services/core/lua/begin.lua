-- A worker starts a task: check the job is still live, count the attempt, mark the node running
-- and return the node's resolved input values, all in one round trip.
-- KEYS[1] job hash, KEYS[2] request image blob, KEYS[3] callbacks stream
-- ARGV[1] node, ARGV[2] worker, ARGV[3] pool, ARGV[4] max attempts, ARGV[5] events channel
-- Publishes the node name on KEYS[1] .. ':events' (keys.job_events) when the node starts.
-- Returns {'run', attempts, queue ms, job age ms, dag, value...} or {reason, detail}.
local job, node = KEYS[1], ARGV[1]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local status = redis.call('HGET', job, 'status')
if not status then return {'gone', ''} end
if status ~= 'queued' and status ~= 'running' then return {'terminal', status} end
local np = 'n:' .. node .. ':'
if redis.call('HGET', job, np .. 'status') == 'succeeded' then return {'duplicate', ''} end
if now > tonumber(redis.call('HGET', job, 'deadline')) then
  local err = '{"code":"deadline_exceeded","node":"' .. node ..
    '","message":"the job passed its deadline before this node could run"}'
  redis.call('HSET', job, 'status', 'expired', 'error', err, 'updated_at', now)
  redis.call('DEL', KEYS[2])
  queue_callback(job, KEYS[3], redis.call('HGET', job, 'id'))
  redis.call('PUBLISH', ARGV[5], redis.call('HGET', job, 'id'))
  return {'expired', ''}
end
local attempts = redis.call('HINCRBY', job, np .. 'attempts', 1)
if attempts > tonumber(ARGV[4]) then return {'exhausted', tostring(attempts - 1)} end
redis.call('HSET', job, np .. 'status', 'running', np .. 'start', now, np .. 'worker', ARGV[2],
  np .. 'pool', ARGV[3], 'status', 'running', 'updated_at', now)
-- Node progress for live streams: a per-job channel, subscribed only while a stream is open
-- (GET /v1/jobs/{id}/events), so with no one watching this PUBLISH delivers nothing.
redis.call('PUBLISH', job .. ':events', node)
local dag = redis.call('HGET', job, 'dag')
local queued = now - tonumber(redis.call('HGET', job, np .. 'enq') or now)
local age = now - tonumber(redis.call('HGET', job, 'created_at'))
local out = {'run', tostring(attempts), tostring(queued), tostring(age), dag}
for _, ref in ipairs(cjson.decode(dag).nodes[node].refs) do
  local value
  if ref == '$request.image' then value = redis.call('GET', KEYS[2])
  else value = redis.call('HGET', job, 'o:' .. ref) end
  if not value then return {'missing', ref} end
  out[#out + 1] = value
end
return out
