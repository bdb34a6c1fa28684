#!/usr/bin/env python3
"""Report of scripts/time_to_robustness.sh: per method, the training CPU-seconds (sum of the
cpu_seconds column of metrics.csv) and the final clean and worst-case accuracy (the study suite's
eval.json), mean and range over seeds, against ARD with PGD-10; and a plot of PGD-20 accuracy
(per epoch) and worst-case accuracy (final) against CPU-seconds.

    time_to_robustness.py DATA_DIR PLOT.png
"""
import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

LABELS = {
    'pgd10': 'PGD-10', 'fgsm_rs': 'FGSM-RS', 'nfgsm': 'N-FGSM', 'warm3': 'warm-started PGD-3',
}


def load(data):
    runs = defaultdict(list)
    for eval_path in sorted(data.glob('*.eval.json')):
        name = eval_path.name[:-len('.eval.json')]
        method, seed = name.rsplit('_s', 1)
        with open(data / f'{name}.metrics.csv') as f:
            rows = list(csv.DictReader(f))
        report = json.loads(eval_path.read_text())
        cpu, curve = 0.0, []
        for row in rows:
            cpu += float(row['cpu_seconds'])
            curve.append((cpu, float(row['test_pgd20'])))
        runs[method].append({
            'seed': int(seed), 'cpu': cpu, 'curve': curve, 'clean': report['clean_accuracy'],
            'worst': report['worst_case_accuracy'],
            'collapsed': any(float(r.get('guard_collapse', 0) or 0) > 0 for r in rows)})
    return runs


def label(method):
    recipe, attack = method.split('_', 1)
    return f"{'ARD' if recipe == 'ard' else 'Madry AT'}, {LABELS.get(attack, attack)}"


def table(runs):
    base = runs.get('ard_pgd10')
    base_cpu = statistics.mean(r['cpu'] for r in base) if base else None
    base_worst = statistics.mean(r['worst'] for r in base) if base else None
    lines = ['| method | seeds | training CPU-s (mean) | vs ARD PGD-10 | clean (mean) | worst case (mean) | '
             'worst case (min-max) | vs ARD PGD-10 | guard stopped |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for method in sorted(runs, key=lambda m: (not m.startswith('ard'), m)):
        rs = runs[method]
        cpu = statistics.mean(r['cpu'] for r in rs)
        worst = [r['worst'] for r in rs]
        lines.append(
            f"| {label(method)} | {len(rs)} | {cpu:.0f} | "
            f"{cpu / base_cpu:.2f}x |" if base_cpu else f"| {label(method)} | {len(rs)} | {cpu:.0f} | n/a |")
        lines[-1] += (f" {100 * statistics.mean(r['clean'] for r in rs):.1f}% | {100 * statistics.mean(worst):.1f}% | "
                      f"{100 * min(worst):.1f}-{100 * max(worst):.1f}% | "
                      + (f"{100 * (statistics.mean(worst) - base_worst):+.1f} pt |" if base_worst is not None else "n/a |")
                      + f" {sum(r['collapsed'] for r in rs)} of {len(rs)} |")
    return '\n'.join(lines)


def plot(runs, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for i, method in enumerate(sorted(runs)):
        colour = colours[i % len(colours)]
        ax = axes[0] if method.startswith('ard') else axes[1]
        for j, r in enumerate(runs[method]):
            xs, ys = zip(*r['curve'])
            ax.plot(xs, [100 * y for y in ys], color=colour, alpha=0.35, label=None)
            ax.scatter([r['cpu']], [100 * r['worst']], color=colour, marker='o',
                       label=label(method) if j == 0 else None)
    for ax, title in zip(axes, ['ARD (teacher: models/fashion_teacher.pt)', 'Madry AT']):
        ax.set_title(title)
        ax.set_xlabel('training CPU-seconds')
        ax.set_ylabel('accuracy (%)')
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle('Lines: PGD-20 accuracy after each epoch; dots: final worst case over the study suite '
                 '(1,000 test images, eps 0.1)', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    data, png = Path(sys.argv[1]), Path(sys.argv[2])
    runs = load(data)
    if not runs:
        sys.exit(f'no runs in {data}')
    text = table(runs)
    print(text)
    (data / 'report.md').write_text(text + '\n')
    try:
        plot(runs, png)
        print(f'plot written to {png}')
    except ImportError:
        print('matplotlib is missing: no plot (apt-get install python3-matplotlib)')


if __name__ == '__main__':
    main()
