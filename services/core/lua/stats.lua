-- Shared by complete.lua and fail.lua (prepended when loaded): add a job that just ended to the
-- time-bucketed aggregates GET /v1/stats reads (services/gateway/stats.py reads this layout;
-- docs/stats-and-auth.md describes it). Reading a window then costs one HGETALL per bucket,
-- whatever the traffic was.
--
-- One hash per (level, bucket start) for the fleet, `{prefix}{size}:{start}`, and one per tenant,
-- `{prefix}{size}:{start}:t:{tenant}`. Levels are {bucket seconds, TTL seconds}: minutes give a
-- window its start edge, hours its bulk (a 24 h window is at most 84 buckets). The TTL runs from
-- a bucket's first write and outlasts the longest window (24 h) plus one bucket.
local STATS_LEVELS = {{60, 90000}, {3600, 90000}}
-- Latency histograms: bucket i holds values in [2^(i/16), 2^((i+1)/16)) ms, 'z' holds 0 (and
-- below); a bucket spans 4.4 %, which bounds the error of every percentile read back.
local STATS_LOG_STEP = math.log(2) / 16

local function stats_bucket(ms)
  if ms <= 0 then return 'z' end
  -- The epsilon keeps exact powers of two (1, 2, 4 ... ms) out of the bucket below.
  return tostring(math.floor(math.log(ms) / STATS_LOG_STEP + 1e-9))
end

-- Fields (pipeline, node and stage names cannot contain '|'; a pool name comes last):
--   j|{pipeline} jobs ended            s|{pipeline} of them succeeded
--   l|{pipeline}|{b} end-to-end latency histogram of succeeded jobs
--   n|{pipeline}|{node} the node's stage (a node listed once it has started)
--   q|{pipeline}|{node}|{b}, c|{pipeline}|{node}|{b} queue / compute histograms (succeeded jobs)
--   t|{stage} tasks that ran           p|{pipeline}|{pool}, P|{pool} compute µs (cost split)
local function record_stats(job, dag, prefix, now, status)
  local pipeline = dag.pipeline
  local counts, stages = {}, {}
  local function add(field, amount) counts[field] = (counts[field] or 0) + amount end
  local ok = status == 'succeeded'
  if ok then
    add('s|' .. pipeline, 1)
    local created = tonumber(redis.call('HGET', job, 'created_at'))
    add('l|' .. pipeline .. '|' .. stats_bucket(now - created), 1)
  end
  for name, spec in pairs(dag.nodes) do
    local np = 'n:' .. name .. ':'
    local f = redis.call('HMGET', job, np .. 'enq', np .. 'start', np .. 'compute_ms', np .. 'pool')
    if f[2] then
      local node, compute, pool = pipeline .. '|' .. name, tonumber(f[3]) or 0, f[4] or ''
      stages[#stages + 1] = 'n|' .. node
      stages[#stages + 1] = spec.stage
      add('t|' .. spec.stage, 1)
      local micros = math.floor(compute * 1000 + 0.5)
      add('p|' .. pipeline .. '|' .. pool, micros)
      add('P|' .. pool, micros)
      if ok then
        local queued = tonumber(f[2]) - tonumber(f[1] or f[2])
        add('q|' .. node .. '|' .. stats_bucket(queued), 1)
        add('c|' .. node .. '|' .. stats_bucket(compute), 1)
      end
    end
  end
  local tenant = redis.call('HGET', job, 'tenant')
  for _, level in ipairs(STATS_LEVELS) do
    local size = level[1]
    local fleet = prefix .. size .. ':' .. string.format('%d', math.floor(now / 1000 / size) * size)
    local targets = {fleet}
    if tenant then targets[2] = fleet .. ':t:' .. tenant end
    for _, key in ipairs(targets) do
      -- The first job of a pipeline in a bucket sets the TTL (one EXPIRE per bucket, not per job).
      if redis.call('HINCRBY', key, 'j|' .. pipeline, 1) == 1 then
        redis.call('EXPIRE', key, level[2])
      end
      for field, n in pairs(counts) do redis.call('HINCRBY', key, field, n) end
      if #stages > 0 then redis.call('HSET', key, unpack(stages)) end
    end
  end
end
