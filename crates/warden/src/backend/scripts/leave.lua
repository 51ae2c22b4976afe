-- KEYS: L, F, Q, W.  ARGV: waiter_id, channel. Removes the waiter and wakes whoever may proceed now.
-- Returns 1 if the waiter was still queued, 0 if not (a release may have handed it the lock meanwhile).
local was = redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
queue_lib(KEYS[1], KEYS[3], KEYS[4], ARGV[2]).notify_eligible()
return was
