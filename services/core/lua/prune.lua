-- Keep the fleet's registries bounded; run by live workers each time they register.
-- KEYS[1] the stage's stream, KEYS[2] the worker registry hash, KEYS[3] its last-seen index
-- ARGV[1] the stage's group, ARGV[2] consumer grace ms, ARGV[3] registry retention ms
-- A consumer goes only when (1) nothing is pending for it (its tasks were acked, or reclaimed
-- by others), (2) it has been idle past the grace and (3) its process has not registered
-- within the grace. (3) is the liveness signal: Redis 7.0 does not refresh a consumer's idle
-- time while it reads an empty stream, so idle alone would remove live workers. One script, so
-- nothing can be delivered to a consumer between the check and its removal.
-- Registry entries go once their last registration is older than the retention.
-- Returns {consumers removed, registry entries removed}.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local grace = tonumber(ARGV[2])
-- Consumer names are {host}-{pid}-{random}; a process's instance copies share {host}-{pid}.
local function process_of(name) return string.match(name, '^(.*)%-[^%-]*$') or name end
local live = {}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], now - grace, '+inf')) do
  live[process_of(name)] = true
end
local removed = 0
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not consumers.err then -- an error means no stream or group yet: nothing to prune
  for _, consumer in ipairs(consumers) do
    local f = {}
    for i = 1, #consumer, 2 do f[consumer[i]] = consumer[i + 1] end
    if f['pending'] == 0 and f['idle'] > grace and not live[process_of(f['name'])] then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
      removed = removed + 1
    end
  end
end
local cutoff = now - tonumber(ARGV[3])
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. cutoff, 'LIMIT', 0, 1000)
if #stale > 0 then
  redis.call('HDEL', KEYS[2], unpack(stale))
  redis.call('ZREM', KEYS[3], unpack(stale))
end
return {removed, #stale}
