-- Shared by complete.lua and fail.lua (prepended when loaded): append one summary of a job
-- that just ended to the stats stream that GET /v1/stats reads. The stream entry id is the
-- end time (Redis clock), so a time window is one XRANGE.
local function record_stats(job, dag, stream, now, status)
  local nodes = {}
  for name, spec in pairs(dag.nodes) do
    local np = 'n:' .. name .. ':'
    local f = redis.call('HMGET', job, np .. 'enq', np .. 'start', np .. 'compute_ms',
      np .. 'pool', np .. 'status')
    if f[2] then
      nodes[name] = {stage = spec.stage, queue_ms = tonumber(f[2]) - tonumber(f[1] or f[2]),
        compute_ms = tonumber(f[3]) or 0, pool = f[4] or '', status = f[5]}
    end
  end
  redis.call('XADD', stream, 'MAXLEN', '~', 100000, '*', 'pipeline', dag.pipeline,
    'status', status, 'ms', now - tonumber(redis.call('HGET', job, 'created_at')),
    'nodes', cjson.encode(nodes))
end
