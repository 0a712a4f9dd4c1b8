"""How sequences live in Redis: the wire format, keys, Lua scripts, command planning and Redis I/O."""
