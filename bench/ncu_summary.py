#!/usr/bin/env python3
"""Sums an ncu --csv run's gpu__time_duration per kernel name: the top kernels by total time."""
import collections
import csv
import sys

rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows:
    sys.exit(f"{sys.argv[1]}: no kernels profiled")
head, rows = rows[0], rows[1:]
name, value = head.index("Kernel Name"), head.index("Metric Value")
total = collections.defaultdict(float)
count = collections.Counter()
for r in rows:
    kernel = r[name][:70]
    total[kernel] += float(r[value].replace(",", ""))
    count[kernel] += 1
s = sum(total.values())
print(f"{len(rows)} kernels, {s / 1e6:.2f} ms of kernel time")
for kernel, t in sorted(total.items(), key=lambda kv: -kv[1])[:int(sys.argv[2]) if len(sys.argv) > 2 else 25]:
    print(f"{t / 1e3:10.1f} us {count[kernel]:5d}x  {kernel}")
