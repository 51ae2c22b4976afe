#!/usr/bin/env python3
"""The ARGV of one batch-script call, one per line: the header (prefix, channel, handoff, retain_ms, max_waiters),
then N acquires and their N releases, each on its own resource and slot (the uncontended path, as warden's group
commit sends it). Used by lua-batch.sh and lua-callgrind.sh: python3 lua-args.py N"""
import sys

n = int(sys.argv[1])
a = ["", "bench:chan", "1", "60000", "10000"]
tags = ["%03d" % (i * 7) for i in range(n)]
for i in range(n):
    a += ["A", tags[i] + "%032d" % i, "exclusive", "10000", "client1", "", "3000", "-1", "0", "res%d" % i, "", "", "", ""]
for i in range(n):
    a += ["R", tags[i] + "%032d" % i, ""]
print("\n".join(a))
