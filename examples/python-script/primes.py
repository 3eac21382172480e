"""Count the primes below N with a sieve; report progress every PRIMES_REPORT_EVERY numbers."""

import os
import sys

n = int(sys.argv[1])
every = int(os.environ.get("PRIMES_REPORT_EVERY", "0"))
sieve = bytearray([1]) * (n + 1)
sieve[0:2] = b"\x00\x00"
for i in range(2, int(n**0.5) + 1):
    if sieve[i]:
        sieve[i * i :: i] = bytearray(len(range(i * i, n + 1, i)))
if every:
    for upto in range(every, n + 1, every):
        print(f"{sum(sieve[: upto + 1])} primes up to {upto}")
print(f"{sum(sieve)} primes below {n + 1} on {os.environ['COMPUTILITY_SITE']}")
