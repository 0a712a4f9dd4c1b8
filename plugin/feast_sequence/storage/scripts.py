"""The Lua script that makes appending events to a sequence atomic inside Redis.

It touches only the keys of one (view, entity) pair, which share a hash slot, so it runs unchanged
on Redis Cluster. Reads need no script: a sequence is one ZREVRANGEBYSCORE. Scripts run by SHA;
see ``_redis_io`` for loading on NOSCRIPT.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class LuaScript:
    source: str

    @cached_property
    def sha(self) -> str:
        # Once per script: every EVALSHA names it, 10,000 times in a large push.
        return hashlib.sha1(self.source.encode()).hexdigest()


# Keeps a sequence's keys alive exactly as long as its newest event is served under the view's
# current TTL: PEXPIREAT at (newest event time + ttl), rounded up to the millisecond; PERSIST when the
# view has no TTL (a TTL removed by `feast apply` must not keep deleting keys). A sorted set that no
# longer exists takes its identity hash with it.
_EXPIRY = r"""
-- A block's header (storage/blocks.py): newest score, count, generation; nil without a block.
local function block_header(ckey)
  return string.match(redis.call('GETRANGE', ckey, 0, 63), '^[\3\4\5](%d+):(%d+):(%d+);')
end
local function set_expiry(zkey, hkey, ckey, ttl_us, with_hash)
  local newest = nil
  local top = redis.call('ZRANGE', zkey, -1, -1, 'WITHSCORES')
  if top[2] then newest = tonumber(top[2]) end
  local block_newest, block_count = block_header(ckey)
  if block_newest and tonumber(block_count) > 0 and (not newest or tonumber(block_newest) > newest) then
    newest = tonumber(block_newest)
  end
  if not newest then
    if with_hash then redis.call('DEL', hkey) end
    redis.call('DEL', ckey)
    return
  end
  if ttl_us > 0 then
    local expire_at = string.format('%.0f', math.ceil((newest + ttl_us) / 1000))
    redis.call('PEXPIREAT', zkey, expire_at)
    redis.call('PEXPIREAT', ckey, expire_at)
    if with_hash then redis.call('PEXPIREAT', hkey, expire_at) end
  else
    redis.call('PERSIST', zkey)
    redis.call('PERSIST', ckey)
    if with_hash then redis.call('PERSIST', hkey) end
  end
end
"""


# The sequence's version (docs/storage-layout.md, "Concurrency"): a random token in KEYS[4] that a
# multi-step writer's read creates (SNAPSHOT) and every mutation deletes. The writer's commit checks
# it is still there, so it commits only if nothing changed the sequence since it read. A token, not a
# counter: nothing is stored while no writer is between its read and its commit, and a sequence
# deleted and written again cannot come back to a version a stale writer read. Scripts delete it
# after their other writes: a DEL first would count as the script's first write, and Redis, out of
# memory, refuses a script only at its first write (docs/storage-layout.md, "Append").
_VERSION = r"""
local function changed(vkey) redis.call('DEL', vkey) end
local function unchanged_since(vkey, token) return token ~= '' and redis.call('GET', vkey) == token end
"""


_MEMBERS = r"""
-- Byte-wise comparison: Lua's '<' on strings uses strcoll, which depends on the locale.
local function bytes_greater(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

-- A member starts with its identity: its first `identity_fields` protobuf elements.
local function read_varint(m, pos)
  local value, scale, b = 0, 1, 128
  while b >= 128 do
    b = string.byte(m, pos)
    pos = pos + 1
    value = value + (b % 128) * scale
    scale = scale * 128
  end
  return value, pos
end
local function identity_of(m, identity_fields)
  local pos, tag, len = 1, 0, 0
  for _ = 1, identity_fields do
    tag, pos = read_varint(m, pos)
    local wire = tag % 8
    if wire == 0 then _, pos = read_varint(m, pos)
    elseif wire == 1 then pos = pos + 8
    elseif wire == 5 then pos = pos + 4
    else len, pos = read_varint(m, pos); pos = pos + len end
  end
  return string.sub(m, 1, pos - 1)
end

-- The stored member of a known identity: the one member with its score that it prefixes.
local function stored_member(zkey, id, score)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', zkey, score, score)) do
    if string.sub(m, 1, #id) == id then return m end
  end
  return nil
end
"""


# KEYS[1] sorted set (the tail): score = event time in microseconds, member = the stored event
# KEYS[2] hash identity -> score of the tail's version (views with dedup_by only)
# KEYS[3] the compacted block (storage/blocks.py), read here only for its header
# KEYS[4] the sequence's version token (_VERSION), deleted by every call that writes
# KEYS[5] the entity's erasure marker (hash view name or '*' -> erased up to this score; see ERASE)
# ARGV[1] max_length, ARGV[2] ttl in µs (0 = none), ARGV[3] number of dedup_by fields (0 = none),
# ARGV[4], ARGV[5] a score range whose events are removed first ('' = none: a plain append; the
# correction job replaces a time range atomically with it), ARGV[6] how to treat a block: '' ignore
# it (a plain append), 'refuse' write nothing if one exists (the events of a correction), or the
# header of a block whose events this call moves back into the tail (the block is deleted if it
# still has that header, else nothing is written); then the events: score, member (no dedup_by)
# or score, member, identity (dedup_by); ARGV[7] the view's name, whose marker applies with '*'s.
# Events at or before the entity's marker are dropped and counted: an erased entity's old events
# never come back, whichever writer sends them (checked here, inside the atomic call, so an erase
# racing a write cannot be undone by it; an HMGET of a missing key when there is no marker).
#
# Returns {the tail's size before trimming (the writer compacts past a threshold), the events
# dropped by the erasure marker}, or -1 without
# writing anything when refused because a block exists (only the tail can have a range replaced
# inside Redis, so the client moves the block back first: compaction.absorb_command), or -2 when
# the block to absorb no longer has the given header.
#
# The tail is deduplicated and trimmed on its own: the block's events are merged in by readers and
# by compaction (blocks.merge), which gives the same sequence because an event trimmed from the
# tail has max_length better identities in the tail alone.
#
# Why this is order-independent: the set always holds the max_length best events of the
# deduplicated history, best = (timestamp, member bytes) descending. An event whose identity is
# present replaces it only if it wins on (timestamp, member bytes); an identity that was trimmed
# lost to max_length better events, so any older version of it would be trimmed again.
#
# Why it cannot half-write: Redis does not roll back a script's writes when it fails. So every
# decision is made first, by reads only, and the writes follow with no error path between them. An
# identity whose hash entry lost its event (a partial state left by an older version, or keys
# evicted separately) is treated as absent and healed, never raised.
APPEND = LuaScript(
    r"""
local zkey, hkey, ckey = KEYS[1], KEYS[2], KEYS[3]
local max_length = tonumber(ARGV[1])
local ttl_us = tonumber(ARGV[2])
local identity_fields = tonumber(ARGV[3])
local range_from, range_to = tonumber(ARGV[4]), tonumber(ARGV[5])
local block_mode = ARGV[6]
local absorbed = (block_mode ~= 'refuse') and block_mode or ''
local first = 8
local erased_to = nil
for _, to in ipairs(redis.call('HMGET', KEYS[5], ARGV[7], '*')) do
  if to and (not erased_to or tonumber(to) > erased_to) then erased_to = tonumber(to) end
end
local dropped = 0
local function erased(score)
  if erased_to and score <= erased_to then
    dropped = dropped + 1
    return true
  end
  return false
end
"""
    + _EXPIRY
    + _VERSION
    + _MEMBERS
    + r"""
local function removed_by_range(score)
  return range_from and score >= range_from and score <= range_to
end

-- Phase 1: reads and decisions only.
local header = string.match(redis.call('GETRANGE', ckey, 0, 63), '^([\3\4\5]%d+:%d+:%d+;)') or ''
if absorbed ~= '' and header ~= absorbed then return -2 end
if block_mode == 'refuse' and header ~= '' then return -1 end
local gone = {}
if range_from and identity_fields > 0 then
  gone = redis.call('ZRANGEBYSCORE', zkey, range_from, range_to)
  for j = 1, #gone do gone[j] = identity_of(gone[j], identity_fields) end
end
local adds, removes, index = {}, {}, {}
if identity_fields > 0 then
  -- The batch's own winner per identity, then against the stored version.
  local best, order = {}, {}
  for i = first, #ARGV, 3 do
    local s, member, id = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
    local b = best[id]
    if erased(s) then  -- dropped, counted
    elseif not b then
      order[#order + 1] = id
      best[id] = {s, ARGV[i], member}
    elseif s > b[1] or (s == b[1] and bytes_greater(member, b[3])) then
      best[id] = {s, ARGV[i], member}
    end
  end
  for _, id in ipairs(order) do
    local b = best[id]
    local old_score = redis.call('HGET', hkey, id)
    local old = nil
    if old_score and not removed_by_range(tonumber(old_score)) then old = stored_member(zkey, id, old_score) end
    if not old or b[1] > tonumber(old_score) or (b[1] == tonumber(old_score) and bytes_greater(b[3], old)) then
      if old then removes[#removes + 1] = old end
      adds[#adds + 1] = b[2]
      adds[#adds + 1] = b[3]
      index[#index + 1] = id
      index[#index + 1] = b[2]
    end
  end
else
  -- The member embeds the timestamp, so an exact duplicate re-adds the same (score, member): a no-op.
  for i = first, #ARGV, 2 do
    if not erased(tonumber(ARGV[i])) then
      adds[#adds + 1] = ARGV[i]
      adds[#adds + 1] = ARGV[i + 1]
    end
  end
end

-- Phase 2: writes.
if range_from then
  for j = 1, #gone, 1000 do
    redis.call('HDEL', hkey, unpack(gone, j, math.min(j + 999, #gone)))
  end
  redis.call('ZREMRANGEBYSCORE', zkey, range_from, range_to)
end
for j = 1, #removes, 1000 do
  redis.call('ZREM', zkey, unpack(removes, j, math.min(j + 999, #removes)))
end
for j = 1, #adds, 1000 do
  redis.call('ZADD', zkey, unpack(adds, j, math.min(j + 999, #adds)))
end
for j = 1, #index, 1000 do
  redis.call('HSET', hkey, unpack(index, j, math.min(j + 999, #index)))
end
if absorbed ~= '' then redis.call('DEL', ckey) end

local n = redis.call('ZCARD', zkey)
if n > max_length then
  local last = n - max_length - 1
  if identity_fields > 0 then
    local trimmed = redis.call('ZRANGE', zkey, 0, last)
    for j = 1, #trimmed do trimmed[j] = identity_of(trimmed[j], identity_fields) end
    for j = 1, #trimmed, 1000 do
      redis.call('HDEL', hkey, unpack(trimmed, j, math.min(j + 999, #trimmed)))
    end
  end
  redis.call('ZREMRANGEBYRANK', zkey, 0, last)
end

changed(KEYS[4])
set_expiry(zkey, hkey, ckey, ttl_us, identity_fields > 0)
return {n, dropped}
"""
)


# Read one sequence (KEYS as for APPEND): ARGV[1] the oldest score served ('-inf' = all), ARGV[2]
# the most events wanted. Without a block, the tail's newest events as ZREVRANGEBYSCORE gives them,
# exactly format 2's read. With one: {block, tail WITHSCORES within the bound, ARGV[1], ARGV[2]},
# and the client merges them (blocks.merge); the whole tail is needed then, since a tail event may
# lose to the block's version of its identity. One script, so a compaction is never seen half done.
READ = LuaScript(
    r"""#!lua flags=no-writes
local block = redis.call('GET', KEYS[3])
if block then
  return {block, redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', ARGV[1], 'WITHSCORES'), ARGV[1], ARGV[2]}
end
return {false, redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', ARGV[1], 'LIMIT', 0, ARGV[2])}
"""
)


# What a multi-step writer (compaction, the enrichment rewrite) starts from (KEYS as for APPEND):
# {block or false, the whole tail WITHSCORES, the sequence's version token or false}. ARGV[1] a fresh
# random token, set as the version unless one is already set (two writers reading the same state
# share it: the first to commit wins), ARGV[2] its lifetime in ms: a token left by a writer that died
# goes then, and never outlives the sequence's keys. ARGV[3] '1': the writer rewrites the block
# itself (the re-encoding at `feast apply`), so a block alone gets a token. Otherwise only a tail, or a
# format 3 or 4 block to convert (to format 5), gets one (there is nothing to compact), so a sequence no writer works on
# stores none.
SNAPSHOT = LuaScript(
    r"""
local block = redis.call('GET', KEYS[3]) or false
local tail = redis.call('ZREVRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local version = false
if #tail > 0 or (block and (ARGV[3] == '1' or string.byte(block, 1) < 5)) then
  version = redis.call('GET', KEYS[4])
  if not version then
    version = ARGV[1]
    local lifetime, left = tonumber(ARGV[2]), redis.call('PTTL', #tail > 0 and KEYS[1] or KEYS[3])
    if left >= 0 and left < lifetime then lifetime = math.max(left, 1) end
    redis.call('SET', KEYS[4], version, 'PX', lifetime)
  end
end
return {block, tail, version}
"""
)


# Finish a compaction (KEYS as for APPEND): ARGV[1] the header of the block it read ('' = none),
# ARGV[2] the new block ('' = no events left), ARGV[3] ttl in µs, ARGV[4] number of dedup_by
# fields, ARGV[5] the version token SNAPSHOT returned, then score, member of each tail event merged
# into the new block.
#
# Compare-and-set on the version: if anything changed the sequence since the snapshot (an append, a
# correction, the enrichment rewrite, another compaction, a block moved back, a TTL reset), nothing is
# written and it returns -1; the next append or compactor run compacts again. The block's header is
# checked too, and every merged event must still be in the tail (else -2, nothing written): keys
# deleted without a script (`feast teardown`, the TTL) may leave a token behind for a moment, and a
# compaction must not bring their events back. Then the merged events are exactly the tail: all of
# them leave it, with their identities' hash entries.
COMPACT = LuaScript(
    r"""
local zkey, hkey, ckey = KEYS[1], KEYS[2], KEYS[3]
local expected, block = ARGV[1], ARGV[2]
local ttl_us, identity_fields = tonumber(ARGV[3]), tonumber(ARGV[4])
"""
    + _EXPIRY
    + _VERSION
    + _MEMBERS
    + r"""
if not unchanged_since(KEYS[4], ARGV[5]) then return -1 end
local header = string.match(redis.call('GETRANGE', ckey, 0, 63), '^([\3\4\5]%d+:%d+:%d+;)') or ''
if header ~= expected then return -1 end
for i = 6, #ARGV, 2 do
  if not redis.call('ZSCORE', zkey, ARGV[i + 1]) then return -2 end
end
if block == '' then redis.call('DEL', ckey) else redis.call('SET', ckey, block) end
local ids = {}
for i = 6, #ARGV, 2 do
  redis.call('ZREM', zkey, ARGV[i + 1])
  if identity_fields > 0 then ids[#ids + 1] = identity_of(ARGV[i + 1], identity_fields) end
end
for j = 1, #ids, 1000 do
  redis.call('HDEL', hkey, unpack(ids, j, math.min(j + 999, #ids)))
end
changed(KEYS[4])
set_expiry(zkey, hkey, ckey, ttl_us, identity_fields > 0)
return 1
"""
)


# Re-applies a view's current TTL to one stored sequence (after `feast apply` changed it): KEYS as
# for APPEND, ARGV[1] ttl in µs (0 = none), ARGV[2] '1' for views with dedup_by.
EXPIRE = LuaScript(
    r"""
"""
    + _EXPIRY
    + _VERSION
    + r"""
changed(KEYS[4])
set_expiry(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2] == '1')
return 1
"""
)


# Rewrite stored events in place (the enrichment job): KEYS as for APPEND; ARGV[1] '1' for views
# with dedup_by, ARGV[2] the version token SNAPSHOT returned with the events, then quadruples old
# member, score, new member, identity. Returns -1 without writing if the sequence changed since
# that read (the job reads it again), else how many events it rewrote.
REWRITE = LuaScript(
    r"""
"""
    + _VERSION
    + r"""
if not unchanged_since(KEYS[4], ARGV[2]) then return -1 end
local rewritten = 0
for i = 3, #ARGV, 4 do
  local old, score, new, id = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if old ~= new and redis.call('ZSCORE', KEYS[1], old) then
    redis.call('ZREM', KEYS[1], old)
    redis.call('ZADD', KEYS[1], score, new)
    if ARGV[1] == '1' then redis.call('HSET', KEYS[2], id, score) end
    rewritten = rewritten + 1
  end
end
changed(KEYS[4])
return rewritten
"""
)


# Read many hashes in one command (enrichment lookups): KEYS the hashes, ARGV the fields; returns
# every key's HMGET reply back to back. One command instead of one per key: redis-py packs and
# parses one reply, which for thousands of keys is most of a request's time. Read-only; the keys
# of a call must share a hash slot on Redis Cluster, so there lookups use one HMGET per key.
MULTI_HMGET = LuaScript(
    r"""
local out, n = {}, 0
for _, key in ipairs(KEYS) do
  local values = redis.call('HMGET', key, unpack(ARGV))
  for j = 1, #ARGV do
    n = n + 1
    out[n] = values[j]
  end
end
return out
"""
)


# Everything stored for one sequence (KEYS as for APPEND), read atomically for `feast-sequence
# verify`: {block or false, the whole tail WITHSCORES, the identity hash as HGETALL gives it}.
VERIFY = LuaScript(
    r"""#!lua flags=no-writes
return {
  redis.call('GET', KEYS[3]) or false,
  redis.call('ZREVRANGE', KEYS[1], 0, -1, 'WITHSCORES'),
  redis.call('HGETALL', KEYS[2]),
}
"""
)


# Erase one entity's events up to a time from every given view, and record its erasure marker, in
# one atomic call (all keys share the entity's hash tag, so one slot on Redis Cluster).
# KEYS[1] the entity's marker hash (keys.erasure_key), then per view its tail, hash, block and
# version keys (keys.writing_keys). ARGV[1] the score up to which events are erased (inclusive),
# ARGV[2] the number m of marker fields that follow (view names, or '*' for every view, later ones
# included); then per view: its number of dedup_by fields, the header of the block the client read
# ('' = none), and what to do with the block: 'keep' (none of its events is erased), 'delete', or
# the new block holding its later events (built by the client: Lua cannot decompress a block).
#
# Compare-and-set on every block header, checked before any write: if one changed since the client
# read it (a compaction, an absorb), nothing is written and it returns -1; the client reads and
# tries again. Else returns the tail events removed. A mutation: each view's version token goes
# (_VERSION), last. A marker only ever moves later (max), so an erase run again, or a marker
# re-applied from the offline copy, is a no-op.
ERASE = LuaScript(
    r"""
"""
    + _VERSION
    + r"""
local before = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local first = 3 + m
local views = (#KEYS - 1) / 4
for v = 0, views - 1 do
  local ckey = KEYS[4 + 4 * v]
  local header = string.match(redis.call('GETRANGE', ckey, 0, 63), '^([\3\4\5]%d+:%d+:%d+;)') or ''
  if header ~= ARGV[first + 3 * v + 1] then return -1 end
end
local removed = 0
for v = 0, views - 1 do
  local zkey, hkey, ckey = KEYS[2 + 4 * v], KEYS[3 + 4 * v], KEYS[4 + 4 * v]
  local identity_fields, block = tonumber(ARGV[first + 3 * v]), ARGV[first + 3 * v + 2]
  if identity_fields > 0 then
    local entries = redis.call('HGETALL', hkey)
    for j = 1, #entries, 2 do
      if tonumber(entries[j + 1]) <= before then redis.call('HDEL', hkey, entries[j]) end
    end
  end
  removed = removed + redis.call('ZREMRANGEBYSCORE', zkey, '-inf', before)
  if block == 'delete' then
    redis.call('DEL', ckey)
  elseif block ~= 'keep' then
    redis.call('SET', ckey, block, 'KEEPTTL')
  end
  if redis.call('EXISTS', zkey) == 0 and redis.call('EXISTS', ckey) == 0 then redis.call('DEL', hkey) end
end
for j = 3, 2 + m do
  local stored = redis.call('HGET', KEYS[1], ARGV[j])
  if not stored or tonumber(stored) < before then redis.call('HSET', KEYS[1], ARGV[j], ARGV[1]) end
end
for v = 0, views - 1 do changed(KEYS[5 + 4 * v]) end
return removed
"""
)
