#!/usr/bin/python3
"""Side-by-side timings: ardent's C++ benchmarks against the plain-PyTorch references.

For every round and configuration the C++ measurement and the Python one run back to back
(interleaved, the order alternating per round), so that slow drifts of the machine (clock,
temperature, other load) hit both sides alike. Both sides use the same thread count. The medians
over rounds are printed as a Markdown table.

    /usr/bin/python3 benchmarks/python/compare.py --threads 2 --rounds 3
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import torch

import ard_reference
import pgd_reference

REPO_ROOT = Path(__file__).resolve().parents[2]


def cpu_model():
    """The CPU model name from /proc/cpuinfo, or 'unknown'."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown'


def run_cpp(binary, name, counter, threads):
    """One timed iteration of the C++ benchmark `name` (after the program's own warm-up);
    returns its JSON counter `counter`."""
    # Google Benchmark appends suffixes such as '/manual_time' to the names the filter sees.
    pattern = f'^{re.escape(name)}(/.*)?$'
    env = dict(os.environ, ARDENT_BENCHMARK_THREADS=str(threads))
    proc = subprocess.run([str(binary), f'--benchmark_filter={pattern}', '--benchmark_format=json',
                           '--benchmark_min_time=0.01'],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f'{binary} failed on {name} (exit {proc.returncode}):\n{proc.stderr}')
    # The report is the first JSON object with a 'benchmarks' list; anything the program printed
    # around it is skipped.
    decoder = json.JSONDecoder()
    for match in re.finditer(r'\{', proc.stdout):
        try:
            report, _ = decoder.raw_decode(proc.stdout, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(report, dict) and 'benchmarks' in report:
            for entry in report['benchmarks']:
                if entry.get('run_type', 'iteration') == 'iteration' and counter in entry:
                    return float(entry[counter])
            break
    sys.exit(f'{binary}: no benchmark {name} with counter {counter!r} in its output:\n'
             f'{proc.stdout}{proc.stderr}')


def python_pgd(model_name, batch, steps):
    """Seconds per step of the reference PGD: one timed attack after one untimed one."""
    model, x, labels, eps, alpha = pgd_reference.setup(model_name, batch)
    return pgd_reference.time_pgd_step(model, x, labels, eps, alpha, steps, repeats=1)


def interleave(round_index, cpp, python):
    """Runs both measurements, C++ first in even rounds and Python first in odd ones."""
    if round_index % 2 == 0:
        c = cpp()
        return c, python()
    p = python()
    return cpp(), p


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--binary', type=Path,
                        default=REPO_ROOT / 'build/benchmarks/ardent_benchmarks')
    parser.add_argument('--models', default='small_cnn,mobilenet_v2,resnet18')
    parser.add_argument('--batches', default='128')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--threads', type=int, default=os.cpu_count())
    parser.add_argument('--steps', type=int, default=2, help='PGD steps per Python attack')
    parser.add_argument('--no-ard', action='store_true', help='skip the ARD step comparison')
    args = parser.parse_args()

    models = [m for m in args.models.split(',') if m]
    batches = [int(b) for b in args.batches.split(',') if b]
    unknown = set(models) - set(pgd_reference.SETTINGS)
    if unknown:
        parser.error(f'unknown models: {", ".join(sorted(unknown))}')
    if not args.binary.is_file():
        sys.exit(f'C++ benchmark binary not found: {args.binary}\n'
                 'Build it with: cmake --build build --target ardent_benchmarks '
                 '(or pass its path with --binary)')

    torch.set_num_threads(args.threads)
    print(f'CPU: {cpu_model()}')
    print(f'threads: {args.threads}')
    print(f'torch: {torch.__version__}')
    print()

    pgd = {(m, b): ([], []) for m in models for b in batches}  # (python, ardent) s/step
    ard = {b: ([], []) for b in batches}  # (python, ardent) img/s
    binary, threads = args.binary, args.threads
    for r in range(args.rounds):
        for (m, b), (py, cpp) in pgd.items():
            name = f'ArdentPgd/{m}/{b}'
            c, p = interleave(r,
                              lambda: run_cpp(binary, name, 'seconds_per_step', threads),
                              lambda: python_pgd(m, b, args.steps))
            cpp.append(c)
            py.append(p)
            print(f'round {r + 1}: PGD {m}/{b}: python {p:.4f} s/step, '
                  f'ardent {c:.4f} s/step', flush=True)
        if args.no_ard:
            continue
        for b, (py, cpp) in ard.items():
            name = f'ArdStep/{b}'
            c, p = interleave(r,
                              lambda: run_cpp(binary, name, 'images_per_second', threads),
                              lambda: ard_reference.time_ard_step(b, repeats=1))
            cpp.append(c)
            py.append(p)
            print(f'round {r + 1}: ARD {b}: python {p:.1f} img/s, ardent {c:.1f} img/s',
                  flush=True)

    med = statistics.median
    print()
    print('| model | batch | threads | python s/step | ardent s/step '
          '| speed-up (python/ardent) |')
    print('|---|---:|---:|---:|---:|---:|')
    for (m, b), (py, cpp) in pgd.items():
        print(f'| {m} | {b} | {args.threads} | {med(py):.4f} | {med(cpp):.4f} '
              f'| {med(py) / med(cpp):.2f}x |')
    if not args.no_ard:
        print()
        print('| ARD step | batch | threads | python img/s | ardent img/s '
              '| ratio (ardent/python) |')
        print('|---|---:|---:|---:|---:|---:|')
        for b, (py, cpp) in ard.items():
            print(f'| MobileNetV2 <- ResNet18 | {b} | {args.threads} | {med(py):.1f} '
                  f'| {med(cpp):.1f} | {med(cpp) / med(py):.2f}x |')


if __name__ == '__main__':
    main()
