-- Cancel a job that has not finished; its queued tasks later see the terminal status and are
-- dropped by the workers. KEYS[1] job hash, KEYS[2] request image blob, KEYS[3] callbacks
-- stream; ARGV[1] events channel
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'gone' end
if status ~= 'queued' and status ~= 'running' then return 'terminal:' .. status end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'status', 'canceled', 'updated_at', t[1] * 1000 + math.floor(t[2] / 1000))
redis.call('DEL', KEYS[2])
queue_callback(KEYS[1], KEYS[3], redis.call('HGET', KEYS[1], 'id'))
redis.call('PUBLISH', ARGV[1], redis.call('HGET', KEYS[1], 'id'))
return 'canceled'
