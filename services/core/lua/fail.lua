-- A node failed for good: ack its task, optionally copy it to the stage's dead-letter stream,
-- and fail the job with a machine-readable error (the first failure wins).
-- KEYS[1] job hash, KEYS[2] request image blob, KEYS[3] stage stream, KEYS[4] dead-letter stream,
-- KEYS[5] stats key prefix (record_stats builds its bucket keys from it), KEYS[6] callbacks
-- stream
-- ARGV[1] node, ARGV[2] job id, ARGV[3] group, ARGV[4] entry id, ARGV[5] error json,
-- ARGV[6] events channel, ARGV[7] dead-letter reason ('' = no dead letter), ARGV[8] seconds a
-- dead-lettered job keeps its request image for a replay (0 = none)
local job, node = KEYS[1], ARGV[1]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', 10000, '*', 'job', ARGV[2], 'node', node,
    'entry', ARGV[4], 'reason', ARGV[7], 'error', ARGV[5])
end
redis.call('XACK', KEYS[3], ARGV[3], ARGV[4])
redis.call('XDEL', KEYS[3], ARGV[4])
local status = redis.call('HGET', job, 'status')
if not status then return 'gone' end
if status ~= 'queued' and status ~= 'running' then return 'terminal' end
redis.call('HSET', job, 'n:' .. node .. ':status', 'failed', 'n:' .. node .. ':end', now,
  'status', 'failed', 'error', ARGV[5], 'updated_at', now)
record_stats(job, cjson.decode(redis.call('HGET', job, 'dag')), KEYS[5], now, 'failed')
queue_callback(job, KEYS[6], ARGV[2])
local keep = tonumber(ARGV[8])
if ARGV[7] ~= '' and keep > 0 then  -- never past the job's own TTL
  if redis.call('TTL', KEYS[2]) > keep then redis.call('EXPIRE', KEYS[2], keep) end
else
  redis.call('DEL', KEYS[2])
end
redis.call('PUBLISH', ARGV[6], ARGV[2])
return 'failed'
