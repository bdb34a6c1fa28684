#!/usr/bin/env python3
"""Turns part 2 of the study (scripts/reproduce.sh teacher sweep seeds recipe claims pair) into the part-2
section of docs/reproduction_results.md and three plots.

Every number comes from a JSON or CSV file in docs/reproduction_data/part2 that the study's programs
wrote; nothing is typed in. A run that has not been made yet is listed as such, never estimated.

usage: study2_report.py DATA_DIR DOCS_DIR"""
import csv
import json
import pathlib
import re
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

data = pathlib.Path(sys.argv[1])
docs = pathlib.Path(sys.argv[2])
images = docs / "images"
images.mkdir(parents=True, exist_ok=True)
MARKER = "<!-- part 2: written by scripts/study2_report.py -->"
ATTACKS = ["PGD-20", "BIM-20", "CW-Linf-20", "APGD-CE", "APGD-T"]
METHODS = {"madry": "Madry AT", "ard": "ARD", "rslad": "RSLAD", "kd": "KD (clean)", "natural": "natural",
           "ard_official": "ard_official", "ard_t4": "ARD, T = 4"}


def evaluation(name):
    """clean, each attack and the worst case of one model, or None when it has not been evaluated."""
    path = data / f"{name}.eval.json"
    if not path.exists():
        return None
    report = json.loads(path.read_text())
    row = {"clean": report["clean_accuracy"], "worst": report["worst_case_accuracy"], "samples": report["samples"]}
    for attack in report["attacks"]:
        row[attack["name"].split(" ")[0]] = attack["robust_accuracy"]
    return row


def seed_runs(stem):
    """(seed, name) of the runs of `stem` that differ only in the seed: seed 0 is `stem` itself (listed
    even when not made yet), seed k is `<stem>_seed<k>` (scripts/reproduce.sh seeds, PAIR_SEEDS)."""
    others = (p.name[:-len(".eval.json")] for p in data.glob(f"{stem}_seed*.eval.json"))
    return [(0, stem)] + sorted((int(name[len(stem) + 5:]), name) for name in others if name[len(stem) + 5:].isdigit())


def seed_worst_cases(stem):
    """The worst case of every seed of `stem` evaluated so far."""
    return [r["worst"] for r in (evaluation(name) for _, name in seed_runs(stem)) if r]


def history(name):
    path = data / f"{name}.metrics.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def pct(x):
    return "n/a" if x is None else f"{100 * x:.1f}%"


def table(rows, first_columns):
    """rows: (cells of the first columns, evaluation or None)."""
    out = ["| " + " | ".join(first_columns + ["clean"] + ATTACKS + ["worst case"]) + " |",
           "| " + " | ".join("---" for _ in range(len(first_columns) + len(ATTACKS) + 2)) + " |"]
    for cells, r in rows:
        if r is None:
            out.append("| " + " | ".join(cells) + " | not run yet |" + " |" * (len(ATTACKS) + 1))
        else:
            out.append("| " + " | ".join(cells + [pct(r["clean"])] + [pct(r.get(a)) for a in ATTACKS] +
                                         [f"**{pct(r['worst'])}**"]) + " |")
    return out


lines = [MARKER, "", "## Part 2: a strong teacher, longer schedules, seeds", ""]
samples = next((r["samples"] for r in map(evaluation, ["teacher_strong", "teacher_weak"]) if r), None)
lines.append(f"Linf epsilon 0.1, the first {samples} Fashion-MNIST test images; the worst case (in bold) is "
             "the accuracy when every attack is tried on each image, and the number the conclusions use.")
lines.append("")
lines.append("### Teachers")
lines.append("")
lines += table([(["weak: SmallCNN w32, 2 epochs Madry AT"], evaluation("teacher_weak")),
                (["strong: SmallCNN w64, Madry AT"], evaluation("teacher_strong"))], ["teacher"])
lines.append("")

def study_worst(name):
    """The study suite's worst case on the AutoAttack's images, or None."""
    path = data / f"{name}.autoattack_images.study.json"
    return json.loads(path.read_text())["worst_case_accuracy"] if path.exists() else None


aa_lines = ["| teacher | images | clean | APGD-CE | APGD-T | FAB-T | Square | worst case | study suite, same images |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
for name, label in (("teacher_weak", "weak"), ("teacher_strong", "strong")):
    path = data / f"{name}.autoattack.json"
    if not path.exists():
        aa_lines.append(f"| {label} | not run yet | | | | | | | |")
        continue
    report = json.loads(path.read_text())
    # "Square-5000 (Linf, eps 0.1)" -> "Square": the query count is part of the attack's name.
    by_name = {re.sub(r"-\d+$", "", a["name"].split(" ")[0]): a["robust_accuracy"] for a in report["attacks"]}
    aa_lines.append(f"| {label} | {report['samples']} | {pct(report['clean_accuracy'])} | " +
                    " | ".join(pct(by_name.get(a)) for a in ("APGD-CE", "APGD-T", "FAB-T", "Square")) +
                    f" | **{pct(report['worst_case_accuracy'])}** | {pct(study_worst(name))} |")
lines.append("The standard AutoAttack of both teachers (APGD-CE and APGD-T of 100 steps, FAB-T, Square with 5,000 "
             "queries; each attack's column is the accuracy under it alone, the worst case under all four), and "
             "the worst case of the study's 20-step suite on the same images:")
lines.append("")
lines += aa_lines
lines.append("")

lines.append("### Teacher strength x method x student width (seed 0)")
lines.append("")
rows = []
for width in (8, 16):
    rows.append(([METHODS["madry"], "none", str(width)], evaluation(f"madry_w{width}")))
    for method in ("ard", "rslad"):
        for teacher in ("weak", "strong"):
            rows.append(([METHODS[method], teacher, str(width)], evaluation(f"{method}_{teacher}_w{width}")))
lines += table(rows, ["method", "teacher", "width"])
lines.append("")

lines.append("### Noise: ARD (strong teacher) against Madry AT, three seeds")
lines.append("")
lines.append("| width | method | seeds done | worst case per seed | mean | spread (max - min) |")
lines.append("| --- | --- | --- | --- | --- | --- |")
verdicts = []
for width in (16, 8):
    summary = {}
    for label, stem in (("Madry AT", f"madry_w{width}"), ("ARD (strong teacher)", f"ard_strong_w{width}")):
        worst = seed_worst_cases(stem)
        summary[label] = worst
        if worst:
            lines.append(f"| {width} | {label} | {len(worst)} | {', '.join(pct(w) for w in worst)} | "
                         f"{pct(statistics.mean(worst))} | {pct(max(worst) - min(worst))} |")
        else:
            lines.append(f"| {width} | {label} | 0 | not run yet | | |")
    madry, ard = summary["Madry AT"], summary["ARD (strong teacher)"]
    if len(madry) == 3 and len(ard) == 3:
        gap = statistics.mean(ard) - statistics.mean(madry)
        spread = max(max(madry) - min(madry), max(ard) - min(ard))
        verdict = "exceeds" if abs(gap) > spread else "does not exceed"
        verdicts.append(f"Width {width}: mean difference (ARD - Madry AT) {100 * gap:+.1f} points, which {verdict} "
                        f"the larger spread ({100 * spread:.1f} points).")
    else:
        verdicts.append(f"Width {width}: the seed comparison is incomplete; no verdict is drawn from it yet.")
lines.append("")
lines += [f"- {v}" for v in verdicts]
lines.append("")

def long_runs(stem):
    """(epochs, name) of the long runs of `stem` (scripts/reproduce.sh long: <stem>_e<LONG_EPOCHS>), or a
    10-epoch placeholder when there is none."""
    runs = sorted((int(p.name[len(stem) + 2:-len(".eval.json")]), p.name[:-len(".eval.json")])
                  for p in data.glob(f"{stem}_e*.eval.json") if p.name[len(stem) + 2:-len(".eval.json")].isdigit())
    return runs or [(10, f"{stem}_e10")]


lines.append("### The long schedule: ARD (strong teacher) against Madry AT, seed 0")
lines.append("")
long_rows = []
for width in (16, 8):
    for label, stem in (("Madry AT", f"madry_w{width}"), ("ARD (strong teacher)", f"ard_strong_w{width}")):
        for epochs, name in [(len(history(stem)) or "5", stem)] + long_runs(stem):
            long_rows.append(([label, str(width), str(epochs)], evaluation(name)))
lines += table(long_rows, ["method", "width", "epochs"])
lines.append("")

lines.append("### The recipe (width 16, strong teacher, seed 0)")
lines.append("")
lines += table([(["ard (batch-mean KL, T = 30)"], evaluation("ard_strong_w16")),
                (["ard_official (element-mean KL, train-mode attack)"], evaluation("ard_official_strong_w16")),
                (["ard, T = 4"], evaluation("ard_t4_strong_w16"))], ["recipe"])
lines.append("")

lines.append("### KD on clean images (width 16, seed 0)")
lines.append("")
lines += table([(["natural training"], evaluation("natural_w16")),
                (["KD from the strong teacher (clean images only)"], evaluation("kd_strong_w16"))], ["method"])
lines.append("")

lines.append("### The paper's pair, reduced: ResNet18 teacher, MobileNetV2 student")
lines.append("")
pair_report = data / "pair_teacher.report.json"
if pair_report.exists():
    t = json.loads(pair_report.read_text())
    lines.append(f"ResNet18 of width {t['teacher_width']} ({t['parameters']:,} parameters) trained by Madry AT; "
                 f"{t['train_images']:,} training images, {t['epochs']} epochs, SGD at {t['lr']}, batch {t['batch_size']}, "
                 f"evaluated on {t['eval_images']:,} test images.")
    student_report = data / "pair_madry.report.json"
    if student_report.exists():
        m = json.loads(student_report.read_text())
        lines.append(f"Students: MobileNetV2 of width multiplier {m['width_multiplier']} ({m['parameters']:,} "
                     "parameters), same data, epochs and optimizer.")
    lines.append("")
# The teacher has seed 0 only.
pair_rows = [(["ResNet18 teacher (Madry AT)", "0"], evaluation("pair_teacher"))]
pair_students = (("MobileNetV2, Madry AT", "pair_madry"), ("MobileNetV2, ARD from the ResNet18", "pair_ard"))
for label, stem in pair_students:
    pair_rows += [([label, str(seed)], evaluation(name)) for seed, name in seed_runs(stem)]
lines += table(pair_rows, ["model", "seed"])
lines.append("")
for label, stem in pair_students:
    worst = seed_worst_cases(stem)
    if len(worst) > 1:
        lines.append(f"- {label}: mean worst case {pct(statistics.mean(worst))} over {len(worst)} seeds, "
                     f"spread {pct(max(worst) - min(worst))}.")
lines.append("")

# Per-epoch PGD-20 of each run (the programs' own per-epoch evaluation).
lines.append("### Per epoch (PGD-20 on the same images, from each run's metrics.csv)")
lines.append("")
curves = {}
for width in (8, 16):
    for name, label in [(f"madry_w{width}", "Madry AT")] + [
            (f"{m}_{t}_w{width}", f"{METHODS[m]} ({t})") for m in ("ard", "rslad") for t in ("weak", "strong")]:
        made = [run for _, run in long_runs(name) if history(run)]  # a long run holds the first epochs too
        h = history(made[-1]) if made else history(name)
        if h:
            curves[(width, label)] = [(int(float(e["epoch"])), float(e["test_pgd20"])) for e in h]
epochs = sorted({e for c in curves.values() for e, _ in c})
labels = sorted({label for _, label in curves})
if curves:
    lines.append("| width | run | " + " | ".join(f"epoch {e}" for e in epochs) + " |")
    lines.append("| --- | --- | " + " | ".join("---" for _ in epochs) + " |")
    for (width, label), c in sorted(curves.items()):
        by_epoch = dict(c)
        lines.append(f"| {width} | {label} | " + " | ".join(pct(by_epoch.get(e)) for e in epochs) + " |")
else:
    lines.append("No part-2 run has finished an epoch yet.")
lines.append("")

# Merge into docs/reproduction_results.md after part 1's section.
results = docs / "reproduction_results.md"
part1 = results.read_text().split(MARKER)[0].rstrip("\n") if results.exists() else ""
results.write_text(part1 + "\n\n" + "\n".join(lines) + "\n")


def save_plot(fig, ax, xlabel, ylabel, title, filename):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(images / filename, dpi=120)
    plt.close(fig)


# Plot 1: robust accuracy (PGD-20) against epochs, per method and teacher, one panel per width.
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
for ax, width in zip(axes, (8, 16)):
    for (w, label), c in sorted(curves.items()):
        if w == width:
            ax.plot([e for e, _ in c], [100 * a for _, a in c], marker="o", label=label)
    save_plot(fig, ax, "epoch", "PGD-20 accuracy (%)", f"students of width {width}", "study2_robust_vs_epoch.png")

# Plot 2: worst-case accuracy against student width; the mean over the seeds there are, with bars from
# the lowest to the highest seed.
fig, ax = plt.subplots(figsize=(6, 4))
for name, label in [("madry", "Madry AT")] + [(f"{m}_{t}", f"{METHODS[m]} ({t})") for m in ("ard", "rslad")
                                              for t in ("weak", "strong")]:
    points = []
    for w in (8, 16):
        seeds = seed_worst_cases(f"{name}_w{w}")
        if seeds:
            points.append((w, statistics.mean(seeds), min(seeds), max(seeds), len(seeds)))
    if points:
        n = max(p[4] for p in points)
        ax.errorbar([p[0] for p in points], [100 * p[1] for p in points],
                    yerr=[[100 * (p[1] - p[2]) for p in points], [100 * (p[3] - p[1]) for p in points]],
                    marker="o", capsize=4, label=label + (f" (mean of {n} seeds)" if n > 1 else ""))
save_plot(fig, ax, "student width", "worst-case accuracy (%)", "Robust accuracy against student size (5 epochs)",
          "study2_robust_vs_width.png")

# Plot 3: clean against worst-case accuracy of every evaluated model, one colour per kind of model.
def kind(name):
    for prefix, label in (("teacher", "teachers"), ("pair", "paper's pair (reduced)"), ("madry", "Madry AT"),
                          ("rslad", "RSLAD"), ("ard", "ARD (all recipes)"), ("kd", "KD (clean)"),
                          ("natural", "natural")):
        if name.startswith(prefix):
            return label
    return "other"


fig, ax = plt.subplots(figsize=(6, 4))
points = {}
for path in sorted(data.glob("*.eval.json")):
    r = evaluation(path.name[:-len(".eval.json")])
    points.setdefault(kind(path.name), []).append((100 * r["clean"], 100 * r["worst"]))
for label, xy in points.items():
    ax.scatter([x for x, _ in xy], [y for _, y in xy], s=16, label=label)
save_plot(fig, ax, "clean accuracy (%)", "worst-case accuracy (%)", "Clean against robust (every model)",
          "study2_clean_vs_robust.png")
