"""The Lua scripts that make each sequence operation atomic inside Redis.

Both scripts touch only the keys of one (view, entity) pair, which share a hash slot, so they run
unchanged on Redis Cluster. Scripts run by SHA; see ``_redis_io`` for loading on NOSCRIPT.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class LuaScript:
    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


# KEYS[1] sorted set (score = event time in microseconds, member = identity key)
# KEYS[2] hash identity -> payload (views with dedup_by only)
# ARGV[1] max_length, ARGV[2] ttl in ms (0 = none), ARGV[3] '1' when the view has dedup_by,
# then the events: score, member (no dedup_by) or score, identity, payload (dedup_by).
#
# Why this is order-independent: the set always holds the max_length best events of the
# deduplicated history, best = (timestamp, identity bytes) descending. An event whose identity is
# present replaces it only if it wins on (timestamp, payload bytes); an identity that was trimmed
# lost to max_length better events, so any older version of it would be trimmed again.
APPEND = LuaScript(
    r"""
local zkey, hkey = KEYS[1], KEYS[2]
local max_length = tonumber(ARGV[1])
local ttl_ms = tonumber(ARGV[2])
local dedup = ARGV[3] == '1'

-- Byte-wise comparison: Lua's '<' on strings uses strcoll, which depends on the locale.
local function bytes_greater(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

if dedup then
  for i = 4, #ARGV, 3 do
    local score, id, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local old = redis.call('HGET', hkey, id)
    local wins = true
    if old then
      local s, old_s = tonumber(score), tonumber(redis.call('ZSCORE', zkey, id))
      wins = s > old_s or (s == old_s and bytes_greater(payload, old))
    end
    if wins then
      redis.call('ZADD', zkey, score, id)
      redis.call('HSET', hkey, id, payload)
    end
  end
else
  -- Members embed the timestamp, so an exact duplicate re-adds the same (score, member): a no-op.
  local batch = {}
  for i = 4, #ARGV, 2 do
    batch[#batch + 1] = ARGV[i]
    batch[#batch + 1] = ARGV[i + 1]
    if #batch >= 1000 then
      redis.call('ZADD', zkey, unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then redis.call('ZADD', zkey, unpack(batch)) end
end

local n = redis.call('ZCARD', zkey)
if n > max_length then
  local last = n - max_length - 1
  if dedup then
    local gone = redis.call('ZRANGE', zkey, 0, last)
    for j = 1, #gone, 1000 do
      redis.call('HDEL', hkey, unpack(gone, j, math.min(j + 999, #gone)))
    end
  end
  redis.call('ZREMRANGEBYRANK', zkey, 0, last)
end

if ttl_ms > 0 then
  -- Keys live until their newest event expires; a time in the past deletes them at once.
  local newest = redis.call('ZRANGE', zkey, -1, -1, 'WITHSCORES')
  if newest[2] then
    local expire_at = string.format('%.0f', math.floor(tonumber(newest[2]) / 1000) + ttl_ms)
    redis.call('PEXPIREAT', zkey, expire_at)
    if dedup then redis.call('PEXPIREAT', hkey, expire_at) end
  end
end
return n
"""
)

# KEYS as above. ARGV[1] oldest servable score ('-inf' without TTL), ARGV[2] how many events,
# ARGV[3] '1' for dedup views. Returns the events newest first, concatenated into one string: the
# serialized message whose repeated fields are the sequence's columns (see _codec).
READ = LuaScript(
    r"""
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 or ARGV[3] ~= '1' then return table.concat(ids) end
local payloads = {}
for j = 1, #ids, 1000 do
  local part = redis.call('HMGET', KEYS[2], unpack(ids, j, math.min(j + 999, #ids)))
  for k = 1, #part do
    if not part[k] then
      return redis.error_reply('feast_sequence: sequence ' .. KEYS[1] .. ' lost the payload of an event')
    end
    payloads[#payloads + 1] = part[k]
  end
end
return table.concat(payloads)
"""
)
