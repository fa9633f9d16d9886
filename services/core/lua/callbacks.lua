-- Shared by the steps that end a job (prepended when loaded): when the job has a callback URL,
-- queue its webhook in the same atomic step as the ending, so a delivery can be late (the
-- control worker is down) but never lost. The stream entry id names the delivery: a job that
-- is run again and ends again gets a new one. (No attempts list here: cjson encodes an empty
-- table as {}, so the view supplies the empty list.)
local function queue_callback(job, stream, id)
  if redis.call('HEXISTS', job, 'callback') == 0 then return end
  local entry = redis.call('XADD', stream, '*', 'job', id)
  redis.call('HSET', job, 'webhook',
    cjson.encode({state = 'pending', delivery = id .. '-' .. entry}))
end
