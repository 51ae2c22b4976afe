-- KEYS: L, F, Q, W.  ARGV: waiter_id, channel. Removes the waiter and wakes whoever may proceed now.
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
queue_lib(KEYS[1], KEYS[3], KEYS[4], ARGV[2]).notify_eligible()
return 1
