#!/usr/bin/env python3
"""Holds a rerun of part 2 of the study against the committed numbers.

A rerun writes into its own folders, so that the committed files are not skipped or overwritten:

    STUDY2_DATA=/tmp/rerun STUDY2_DIR=/tmp/rerun-runs scripts/reproduce.sh claims
    scripts/study2_compare.py docs/reproduction_data/part2 /tmp/rerun

For every model evaluated in the rerun, prints the committed and the rerun clean and worst-case
accuracy, their difference, and the largest per-epoch PGD-20 difference of its training run. The
runs are seeded and single-threaded, so on the same kind of machine they repeat exactly; elsewhere a
difference is judged against the seed spread of docs/reproduction.md.

usage: study2_compare.py COMMITTED_DIR RERUN_DIR"""
import csv
import json
import pathlib
import sys


def accuracies(path):
    report = json.loads(path.read_text())
    return report["clean_accuracy"], report["worst_case_accuracy"]


def pgd20_per_epoch(path):
    if not path.exists():
        return {}
    with open(path) as f:
        return {row["epoch"]: float(row["test_pgd20"]) for row in csv.DictReader(f)}


def main(committed, rerun):
    names = sorted(p.name[:-len(".eval.json")] for p in rerun.glob("*.eval.json"))
    if not names:
        sys.exit(f"study2_compare.py: no evaluation (*.eval.json) in {rerun}")
    print("| run | clean: committed | rerun | worst case: committed | rerun | difference | max per-epoch PGD-20 difference |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    largest = 0.0
    for name in names:
        theirs = committed / f"{name}.eval.json"
        if not theirs.exists():
            print(f"| {name} | not committed | | | | | |")
            continue
        clean_c, worst_c = accuracies(theirs)
        clean_r, worst_r = accuracies(rerun / f"{name}.eval.json")
        epochs_c = pgd20_per_epoch(committed / f"{name}.metrics.csv")
        epochs_r = pgd20_per_epoch(rerun / f"{name}.metrics.csv")
        shared = epochs_c.keys() & epochs_r.keys()
        per_epoch = f"{100 * max(abs(epochs_c[e] - epochs_r[e]) for e in shared):.1f} points" if shared else "n/a"
        largest = max(largest, abs(worst_r - worst_c))
        print(f"| {name} | {100 * clean_c:.1f}% | {100 * clean_r:.1f}% | {100 * worst_c:.1f}% | {100 * worst_r:.1f}% | "
              f"{100 * (worst_r - worst_c):+.1f} points | {per_epoch} |")
    print(f"\nlargest worst-case difference: {100 * largest:.1f} points")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))
