-- Create a job record and enqueue its root nodes atomically, stamping times with the Redis clock
-- (every timestamp in a job comes from this one clock, so queue times never mix host clocks).
-- KEYS[1] job hash, KEYS[2] image blob, KEYS[3] idempotency key (unused when ARGV[5] == '')
-- ARGV[1] job id, ARGV[2] image bytes, ARGV[3] ttl s, ARGV[4] deadline s, ARGV[5] idempotency
-- value, ARGV[6] stream prefix, ARGV[7] max backlog per root stage (0 = none), ARGV[8] number
-- of field/value pairs, then the pairs, then (node, stage) pairs of the root nodes.
-- Returns {'created', now}, {'exists', stored idempotency value} or {'busy', stage, depth}:
-- admission control is in the same atomic step, so no check-then-act race and no extra trip.
local npairs = tonumber(ARGV[8])
local last = 8 + 2 * npairs
if ARGV[5] ~= '' then
  local prior = redis.call('GET', KEYS[3])
  if prior then return {'exists', prior} end
end
local limit = tonumber(ARGV[7])
if limit > 0 then
  for i = last + 1, #ARGV, 2 do
    local depth = redis.call('XLEN', ARGV[6] .. ARGV[i + 1])
    if depth >= limit then return {'busy', ARGV[i + 1], tostring(depth)} end
  end
end
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[3]) end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local id, ttl = ARGV[1], tonumber(ARGV[3])
for i = 9, last, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
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
