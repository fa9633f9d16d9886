-- Create a job record and enqueue its root nodes atomically, stamping times with the Redis clock
-- (every timestamp in a job comes from this one clock, so queue times never mix host clocks).
-- KEYS[1] job hash, KEYS[2] image blob, KEYS[3] idempotency key (unused when ARGV[5] == '')
-- ARGV[1] job id, ARGV[2] image bytes, ARGV[3] ttl s, ARGV[4] deadline s, ARGV[5] idempotency
-- value, ARGV[6] stream prefix, ARGV[7] number of field/value pairs, then the pairs,
-- then (node, stage) pairs of the root nodes.
-- Returns {'created', now} or {'exists', stored idempotency value}.
if ARGV[5] ~= '' then
  local prior = redis.call('GET', KEYS[3])
  if prior then return {'exists', prior} end
  redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[3])
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local id, ttl = ARGV[1], tonumber(ARGV[3])
local npairs = tonumber(ARGV[7])
local last = 7 + 2 * npairs
for i = 8, last, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'id', id, 'status', 'queued', 'created_at', now, 'updated_at', now,
  'deadline', now + math.floor(tonumber(ARGV[4]) * 1000))
for i = last + 1, #ARGV, 2 do
  local entry = redis.call('XADD', ARGV[6] .. ARGV[i + 1], '*', 'job', id, 'node', ARGV[i])
  redis.call('HSET', KEYS[1], 'n:' .. ARGV[i] .. ':status', 'queued',
    'n:' .. ARGV[i] .. ':enq', string.match(entry, '^(%d+)'))
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[2], ARGV[2], 'EX', ttl)
return {'created', tostring(now)}
