#!/usr/bin/env python3
"""A long prompt joining a busy server: how long a streamed sequence waits between two tokens while it joins.

Usage: bench/serve-join.py PORT [PROMPT_TOKENS]   (a `nativegpt2 serve --model synthetic:gpt2` listening on PORT)

One request streams 120 tokens; after its tenth, a second request with a prompt of PROMPT_TOKENS token ids (default 900)
asks for 8. Prints one JSON line: the joiner's time to its first token, the first request's longest and median gap
between tokens, how many of its gaps overlapped the join, and the gaps over 40 ms (index, ms).
"""
import json, statistics, sys, threading, time

from serving import stream

port = int(sys.argv[1])
prompt_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 900



running, joining = [], []
first = threading.Thread(target=stream, args=(port, {"prompt": "The meaning of life is", "max_tokens": 120, "stream": True, "seed": 1}, running))
first.start()
while len(running) < 10:
    time.sleep(0.001)
start = time.perf_counter()
second = threading.Thread(target=stream, args=(port, {"prompt": list(range(100, 100 + prompt_tokens)), "max_tokens": 8, "stream": True, "seed": 2}, joining))
second.start()
second.join()
first.join()
gaps = [1000 * (b - a) for a, b in zip(running, running[1:])]
print(json.dumps({
    "joiner_first_token_ms": round(1000 * (joining[0] - start)),
    "longest_gap_ms": round(max(gaps)),
    "median_gap_ms": round(statistics.median(gaps), 1),
    "gaps_while_joining": sum(1 for a, b in zip(running, running[1:]) if b > start and a < joining[0]),
    "gaps_over_40_ms": [(i, round(g)) for i, g in enumerate(gaps) if g > 40],
}))
