#!/usr/bin/env python3
"""One line per kernel launch from Nsight Compute's CSV (--csv --page raw --print-units base), and their total time.

Usage: ncu-table.py NCU.csv

Prints the launch's grid and block, and whichever of these metrics the CSV holds: registers per thread, duration (µs),
DRAM bytes read (MB), DRAM throughput, SM throughput and achieved occupancy (% of peak), waves per multiprocessor,
and the groups per multiprocessor that registers and shared memory each allow.
"""
import csv
import sys

COLUMNS = [
    # (metric, heading, width, scale, format)
    ("launch__registers_per_thread", "regs", 5, 1, ".0f"),
    ("gpu__time_duration.sum", "µs", 8, 1e-3, ".1f"),  # nanoseconds in base units
    ("dram__bytes_read.sum", "MB read", 8, 1e-6, ".2f"),
    ("dram__throughput.avg.pct_of_peak_sustained_elapsed", "DRAM %", 7, 1, ".1f"),
    ("sm__throughput.avg.pct_of_peak_sustained_elapsed", "SM %", 6, 1, ".1f"),
    ("sm__warps_active.avg.pct_of_peak_sustained_active", "occup. %", 8, 1, ".1f"),
    ("launch__waves_per_multiprocessor", "waves", 6, 1, ".2f"),
    ("launch__occupancy_limit_registers", "lim regs", 8, 1, ".0f"),
    ("launch__occupancy_limit_shared_mem", "lim smem", 8, 1, ".0f"),
]


def number(row, key):
    try:
        return float(row[key].replace(",", ""))
    except (KeyError, ValueError):
        return float("nan")


def main(path):
    # ncu prints its own lines (==PROF==, the program's output) around the CSV, whose lines are all quoted.
    lines = [line for line in open(path, encoding="utf-8", errors="replace") if line.startswith('"')]
    rows = [r for r in csv.DictReader(lines) if r.get("Kernel Name", "").startswith("Kernel_")]
    if not rows:
        print(f"no kernel launches in {path}")
        return 1
    present = [c for c in COLUMNS if c[0] in rows[0]]
    print(f"{'kernel':24} {'grid':>12} {'block':>8} " + " ".join(f"{heading:>{width}}" for _, heading, width, _, _ in present))
    total = 0.0
    for r in rows:
        total += number(r, "gpu__time_duration.sum") / 1e3
        cells = " ".join(f"{number(r, metric) * scale:{width}{fmt}}" for metric, _, width, scale, fmt in present)
        print(f"{r['Kernel Name'][:24]:24} {r.get('Grid Size', ''):>12} {r.get('Block Size', ''):>8} {cells}")
    print(f"{len(rows)} launches, {total:.1f} µs of device time in all")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
