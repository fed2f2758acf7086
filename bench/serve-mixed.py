#!/usr/bin/env python3
"""Long and short prompts arriving together at a busy server: how soon each gets its first token.

Usage: bench/serve-mixed.py PORT [LONG_TOKENS] [SHORT_COUNT] [SHORT_TOKENS] [SHORT_AFTER_MS]
       (a `nativegpt2 serve --model synthetic:gpt2` listening on PORT; defaults 900, 3, 10, 0)

One request streams 150 tokens; after its tenth, a request with a prompt of LONG_TOKENS token ids and SHORT_COUNT requests
of SHORT_TOKENS ids each are sent at once (or the short ones SHORT_AFTER_MS later), each asking for 16 tokens. Prints one JSON line: each newcomer's time to its first
token and to its last (ms from when each was sent), and the first request's longest and median gap between two tokens,
and its gaps over 100 ms (index, ms from the newcomers' sending to the gap's start, length).
"""
import json, statistics, sys, threading, time

from serving import stream

port = int(sys.argv[1])
long_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 900
short_count = int(sys.argv[3]) if len(sys.argv) > 3 else 3
short_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 10
short_after_ms = int(sys.argv[5]) if len(sys.argv) > 5 else 0



running = []
first = threading.Thread(target=stream, args=(port, {"prompt": "The meaning of life is", "max_tokens": 150, "stream": True, "seed": 1}, running))
first.start()
while len(running) < 10:
    time.sleep(0.001)
prompts = [list(range(100, 100 + long_tokens))] + [list(range(200 + 50 * i, 200 + 50 * i + short_tokens)) for i in range(short_count)]
times = [[] for _ in prompts]
threads = [threading.Thread(target=stream, args=(port, {"prompt": p, "max_tokens": 16, "stream": True, "seed": 2 + i}, times[i])) for i, p in enumerate(prompts)]
start = time.perf_counter()
threads[0].start()
time.sleep(short_after_ms / 1000)
shorts_sent = time.perf_counter()
for t in threads[1:]:
    t.start()
for t in threads:
    t.join()
first.join()
gaps = [1000 * (b - a) for a, b in zip(running, running[1:])]
print(json.dumps({
    "long_first_token_ms": round(1000 * (times[0][0] - start)),
    "long_done_ms": round(1000 * (times[0][-1] - start)),
    "short_first_token_ms": [round(1000 * (t[0] - shorts_sent)) for t in times[1:]],
    "short_done_ms": [round(1000 * (t[-1] - shorts_sent)) for t in times[1:]],
    "running_longest_gap_ms": round(max(gaps)),
    "running_median_gap_ms": round(statistics.median(gaps), 1),
    "running_gaps_over_100_ms": [(i, round(1000 * (running[i] - start)), round(g)) for i, g in enumerate(gaps) if g > 100],
}))
