"""Summarise the results.json of many runs: mean ± std over seeds, base-to-new tables.

    python parse_test_res.py ROOT [--ci95] [--csv PATH] [--metrics accuracy ece ...]
                             [--mode auto|base2new|generic] [--seeds 1 2 3] [--plots DIR]

Base-to-new mode reads ``ROOT/<split>/<dataset>/shots_<k>/<trainer>/<config>/seed<n>/``
with split ``train_base`` (base classes) and ``test_new`` (new classes), as CoOp's scripts lay
them out. Generic mode groups any tree by the directory above each ``seed<n>`` folder (e.g.
``output/evaluation/<trainer>/<config>/<dataset>/seed<n>``). ``auto`` picks base-to-new when
ROOT has a ``train_base`` or ``test_new`` folder.

A group's expected seeds are those given by ``--seeds``, otherwise every seed found for the
same method (trainer, config and shots, over all datasets and both splits) or, in generic
mode, among the groups sharing a parent folder. Groups missing any of them, and seed folders
without a readable results.json, are listed and left out of every average; their own rows
average the seeds they have and are marked incomplete. Missing results do not change the
exit status (0); a missing ROOT, no runs at all or an unknown metric do (1).
"""
import argparse
import csv
import io
import json
import math
import os
import os.path as osp
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from calibration.metrics import PERCENT_KEYS
from runtime.files import atomic_write

SEED_FOLDER = re.compile(r"^seed(\d+)$")
SPLITS = ("train_base", "test_new")
DEFAULT_METRICS = ("accuracy", "ece")


@dataclass
class Run:
    """One seed folder and the metrics of its results.json (None when unreadable)."""

    path: str
    seed: int
    metrics: Optional[Dict[str, float]]
    problem: str = ""


@dataclass
class Summary:
    """Mean and spread (population std, or its 95% interval) over seeds."""

    mean: float
    spread: float
    n: int


@dataclass
class Experiment:
    """One dataset × method in the base-to-new layout, with its runs per split and seed."""

    dataset: str
    shots: str
    trainer: str
    config: str
    runs: Dict[str, Dict[int, Run]] = field(default_factory=lambda: {s: {} for s in SPLITS})

    @property
    def method(self) -> Tuple[str, str, str]:
        return (self.trainer, self.config, self.shots)


def read_run(path: str, seed: int) -> Run:
    """The run in seed folder ``path``; a missing or broken results.json is recorded."""
    results_path = osp.join(path, "results.json")
    if not osp.isfile(results_path):
        return Run(path, seed, None, "no results.json")
    try:
        with open(results_path) as f:
            metrics = json.load(f)["metrics"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return Run(path, seed, None, f"unreadable results.json ({error})")
    return Run(path, seed, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})


def find_runs(root: str) -> Dict[str, List[Run]]:
    """Seed folders under ``root``, grouped by the folder above them (relative, '/'-joined)."""
    groups: Dict[str, List[Run]] = defaultdict(list)
    for folder, subfolders, _ in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        seeds = [d for d in subfolders if SEED_FOLDER.match(d)]
        for name in seeds:
            group = osp.relpath(folder, root).replace(os.sep, "/")
            groups[group].append(read_run(osp.join(folder, name),
                                          int(SEED_FOLDER.match(name).group(1))))
        subfolders[:] = [d for d in subfolders if d not in seeds]
    for runs in groups.values():
        runs.sort(key=lambda run: run.seed)
    return dict(groups)


def summarise(values: Sequence[float], ci95: bool) -> Optional[Summary]:
    """Mean ± population std (CoOp's convention), or ± 1.96·std/√n with ``ci95``."""
    if not values:
        return None
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return Summary(mean, 1.96 * std / math.sqrt(n) if ci95 else std, n)


def metric_summary(runs: Sequence[Run], key: str, ci95: bool) -> Optional[Summary]:
    return summarise([r.metrics[key] for r in runs if r.metrics and key in r.metrics], ci95)


def harmonic_mean(base: Optional[float], new: Optional[float]) -> Optional[float]:
    """H = 2BN / (B + N); 0 when both are 0."""
    if base is None or new is None:
        return None
    return 2 * base * new / (base + new) if base + new else 0.0


def format_value(key: str, value: Optional[float]) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if key in PERCENT_KEYS else f"{value:.4f}"


def format_summary(key: str, summary: Optional[Summary], expected_n: int) -> str:
    if summary is None:
        return "n/a"
    text = f"{format_value(key, summary.mean)} ± {format_value(key, summary.spread)}"
    return text + (f" (n={summary.n})" if summary.n != expected_n else "")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def seeds_text(seeds) -> str:
    return ", ".join(f"seed{s}" for s in sorted(seeds))


# ---------------------------------------------------------------------- base-to-new mode


def collect_experiments(groups: Dict[str, List[Run]], problems: List[str]
                        ) -> Dict[Tuple[str, ...], Experiment]:
    """Experiments keyed by (dataset, trainer, config, shots); off-layout groups are noted."""
    experiments: Dict[Tuple[str, ...], Experiment] = {}
    for group, runs in sorted(groups.items()):
        parts = group.split("/")
        if len(parts) != 5 or parts[0] not in SPLITS or not parts[2].startswith("shots_"):
            problems.append(f"`{group}`: not in the base-to-new layout "
                            "(<split>/<dataset>/shots_<k>/<trainer>/<config>), skipped")
            continue
        split, dataset, shots, trainer, config = parts
        key = (dataset, trainer, config, shots)
        experiment = experiments.setdefault(key, Experiment(dataset, shots, trainer, config))
        experiment.runs[split] = {run.seed: run for run in runs}
    return experiments


def expected_seeds_by_method(experiments, seeds_arg) -> Dict[Tuple[str, str, str], set]:
    expected: Dict[Tuple[str, str, str], set] = defaultdict(set)
    for experiment in experiments.values():
        if seeds_arg:
            expected[experiment.method] = set(seeds_arg)
        else:
            for runs in experiment.runs.values():
                expected[experiment.method] |= set(runs)
    return expected


def check_experiment(experiment: Experiment, expected: set, problems: List[str]) -> bool:
    """Whether every expected seed has results in both splits; notes what is missing."""
    complete = True
    name = (f"{experiment.dataset} · {experiment.trainer}/{experiment.config} · "
            f"{experiment.shots}")
    for split in SPLITS:
        runs = experiment.runs[split]
        missing = expected - set(runs)
        if missing:
            complete = False
            problems.append(f"{name} · {split}: missing {seeds_text(missing)}")
        for seed in sorted(runs):
            if runs[seed].metrics is None:
                complete = complete and seed not in expected
                problems.append(f"{name} · {split}: `{runs[seed].path}` has "
                                f"{runs[seed].problem}")
            elif seed not in expected:
                problems.append(f"{name} · {split}: seed{seed} is not among the expected "
                                "seeds, left out")
    return complete


def base2new_columns(metrics: Sequence[str]) -> List[str]:
    columns = []
    for key in metrics:
        columns += [f"base {key}", f"new {key}", f"avg {key}"]
        if key == "accuracy":
            columns.append("H")
    return columns


def base2new_report(groups, metrics, ci95, seeds_arg, problems) -> Tuple[str, List[dict]]:
    """Markdown tables (average over datasets, then per dataset) and the CSV rows."""
    experiments = collect_experiments(groups, problems)
    expected = expected_seeds_by_method(experiments, seeds_arg)
    spread = "ci95" if ci95 else "std"
    per_dataset_rows, csv_rows = [], []
    means_by_method: Dict[Tuple[str, str, str], List[Tuple[str, Dict]]] = defaultdict(list)
    datasets_by_method: Dict[Tuple[str, str, str], List[str]] = defaultdict(list)

    for key in sorted(experiments):
        experiment = experiments[key]
        seeds = expected[experiment.method]
        complete = check_experiment(experiment, seeds, problems)
        datasets_by_method[experiment.method].append(experiment.dataset)
        split_runs = {s: [r for r in experiment.runs[s].values()
                          if r.metrics is not None and r.seed in seeds] for s in SPLITS}

        cells, record, means = [], {}, {}
        for metric in metrics:
            base = metric_summary(split_runs["train_base"], metric, ci95)
            new = metric_summary(split_runs["test_new"], metric, ci95)
            means[metric] = (base.mean if base else None, new.mean if new else None)
            average = (base.mean + new.mean) / 2 if base and new else None
            cells += [format_summary(metric, base, len(seeds)),
                      format_summary(metric, new, len(seeds)), format_value(metric, average)]
            for label, summary in (("base", base), ("new", new)):
                record[f"{label}_{metric}"] = summary.mean if summary else None
                record[f"{label}_{metric}_{spread}"] = summary.spread if summary else None
            record[f"avg_{metric}"] = average
            if metric == "accuracy":
                h = harmonic_mean(*means[metric])
                cells.append(format_value(metric, h))
                record["H"] = h
        if complete:
            means_by_method[experiment.method].append((experiment.dataset, means))

        found = {s: sorted(r.seed for r in split_runs[s]) for s in SPLITS}
        status = f"{len(seeds)}" if complete else (
            f"incomplete: base {len(found['train_base'])}/{len(seeds)}, "
            f"new {len(found['test_new'])}/{len(seeds)}")
        per_dataset_rows.append([experiment.dataset, experiment.trainer, experiment.config,
                                 experiment.shots, status] + cells)
        csv_rows.append(dict(
            dataset=experiment.dataset, trainer=experiment.trainer, config=experiment.config,
            shots=experiment.shots, complete=complete, expected_seeds=seeds_text(seeds),
            base_seeds=seeds_text(found["train_base"]), new_seeds=seeds_text(found["test_new"]),
            datasets="", **record))

    average_rows = []
    for method in sorted(datasets_by_method):
        included = means_by_method.get(method, [])
        excluded = sorted(set(datasets_by_method[method]) - {d for d, _ in included})
        if not included:
            problems.append(f"{'/'.join(method)}: no complete dataset, no average")
            continue
        cells, record = [], {}
        for metric in metrics:
            base = _mean([m[metric][0] for _, m in included])
            new = _mean([m[metric][1] for _, m in included])
            average = (base + new) / 2 if base is not None and new is not None else None
            cells += [format_value(metric, base), format_value(metric, new),
                      format_value(metric, average)]
            record.update({f"base_{metric}": base, f"new_{metric}": new,
                           f"avg_{metric}": average})
            if metric == "accuracy":
                h = harmonic_mean(base, new)
                cells.append(format_value(metric, h))
                record["H"] = h
        datasets = f"{len(included)}" + (f" (excl. {', '.join(excluded)})" if excluded else "")
        trainer, config, shots = method
        average_rows.append([trainer, config, shots, datasets] + cells)
        csv_rows.append(dict(dataset="average", trainer=trainer, config=config, shots=shots,
                             complete=not excluded, expected_seeds=seeds_text(expected[method]),
                             base_seeds="", new_seeds="",
                             datasets=" ".join(d for d, _ in included), **record))

    columns = base2new_columns(metrics)
    text = [f"### Average over datasets (mean ± {spread} over seeds per dataset, then the "
            "mean over complete datasets)",
            "",
            markdown_table(["trainer", "config", "shots", "datasets"] + columns, average_rows)
            if average_rows else "(no complete dataset)",
            "",
            "### Per dataset",
            "",
            markdown_table(["dataset", "trainer", "config", "shots", "seeds"] + columns,
                           per_dataset_rows)]
    return "\n".join(text), csv_rows


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    return None if any(v is None for v in values) or not values else sum(values) / len(values)


# ---------------------------------------------------------------------- generic mode


def generic_report(groups, metrics, ci95, seeds_arg, problems) -> Tuple[str, List[dict]]:
    """One row per group (folder above the seed folders), plus averages of sibling groups."""
    spread = "ci95" if ci95 else "std"
    siblings: Dict[str, set] = defaultdict(set)
    for group, runs in groups.items():
        siblings[osp.dirname(group)] |= {run.seed for run in runs}

    rows, csv_rows = [], []
    complete_means: Dict[str, List[Tuple[str, Dict[str, Optional[float]]]]] = defaultdict(list)
    for group in sorted(groups):
        runs = groups[group]
        expected = set(seeds_arg) if seeds_arg else siblings[osp.dirname(group)]
        missing = expected - {run.seed for run in runs}
        if missing:
            problems.append(f"`{group}`: missing {seeds_text(missing)}")
        complete = not missing
        for run in runs:
            if run.metrics is None:
                complete = complete and run.seed not in expected
                problems.append(f"`{group}`: `{run.path}` has {run.problem}")
            elif run.seed not in expected:
                problems.append(f"`{group}`: seed{run.seed} is not among the expected seeds, "
                                "left out")

        usable = [run for run in runs if run.metrics is not None and run.seed in expected]
        cells, record, means = [], {}, {}
        for metric in metrics:
            summary = metric_summary(usable, metric, ci95)
            cells.append(format_summary(metric, summary, len(expected)))
            means[metric] = summary.mean if summary else None
            record[metric] = means[metric]
            record[f"{metric}_{spread}"] = summary.spread if summary else None
        if complete:
            complete_means[osp.dirname(group)].append((group, means))
        found = sorted(run.seed for run in usable)
        status = f"{len(found)}" if complete else f"incomplete: {len(found)}/{len(expected)}"
        rows.append([group, status] + cells)
        csv_rows.append(dict(group=group, complete=complete, expected_seeds=seeds_text(expected),
                             seeds=seeds_text(found), **record))

    for parent in sorted(complete_means):
        members = complete_means[parent]
        total = sum(1 for g in groups if osp.dirname(g) == parent)
        if total < 2:
            continue
        record = {m: _mean([means[m] for _, means in members]) for m in metrics}
        label = f"{parent or '.'}/* average of {len(members)}/{total}"
        rows.append([label, ""] + [format_value(m, record[m]) for m in metrics])
        csv_rows.append(dict(group=f"{parent or '.'}/*", complete=len(members) == total,
                             expected_seeds="", seeds="", **record))

    text = [f"### Runs grouped by the folder above seed<n> (mean ± {spread} over seeds; "
            "averages over complete groups)", "",
            markdown_table(["group", "seeds"] + list(metrics), rows)]
    return "\n".join(text), csv_rows


# ---------------------------------------------------------------------- output


def write_csv(path: str, rows: List[dict]) -> str:
    """Write rows as CSV; an existing file with other content is kept under a dated name."""
    columns: List[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})

    if osp.exists(path):
        with open(path, newline="") as old:
            if old.read() == text.getvalue():
                return path
        stem, extension = osp.splitext(path)
        kept = f"{stem}-{time.strftime('%Y-%m-%d-%H-%M-%S')}{extension}"
        os.replace(path, kept)
        print(f"The previous {osp.basename(path)} is kept as {kept}", file=sys.stderr)
    with atomic_write(path) as staging, open(staging, "w", newline="") as f:
        f.write(text.getvalue())
    return path


def write_base_new_plots(groups: Dict[str, List[Run]], directory: str,
                         problems: List[str]) -> List[str]:
    """One side-by-side base/new reliability figure per experiment and seed with both runs."""
    from calibration.report import load_evaluation
    from calibration.reliability import save_reliability_figure

    experiments = collect_experiments(groups, [])
    written = []
    for (dataset, trainer, config, shots), experiment in sorted(experiments.items()):
        base_runs, new_runs = experiment.runs["train_base"], experiment.runs["test_new"]
        for seed in sorted(set(base_runs) & set(new_runs)):
            base, new = base_runs[seed], new_runs[seed]
            if base.metrics is None or new.metrics is None:
                continue
            try:
                panels = [(load_evaluation(run.path).bins, f"{label}: {dataset} · {trainer}")
                          for label, run in (("base", base), ("new", new))]
            except (OSError, ValueError) as error:
                problems.append(f"no diagram for {dataset} {trainer} seed{seed}: {error}")
                continue
            name = f"{dataset}_{trainer}_{config}_{shots}_seed{seed}.png"
            written.append(save_reliability_figure(panels, osp.join(directory, name)))
    return written


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="output tree to summarise (e.g. output/base2new)")
    parser.add_argument("--ci95", action="store_true",
                        help="report the 95%% confidence interval 1.96·std/√n instead of std")
    parser.add_argument("--csv", default=None, metavar="PATH", help="also write a CSV here")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS),
                        help="metric keys of results.json to report (default: accuracy ece)")
    parser.add_argument("--mode", choices=("auto", "base2new", "generic"), default="auto")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="seeds every group must have (default: inferred, see above)")
    parser.add_argument("--plots", default=None, metavar="DIR",
                        help="base-to-new mode: write a base/new reliability figure per "
                             "experiment and seed into DIR")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isdir(args.root):
        print(f'error: "{args.root}" is not a directory', file=sys.stderr)
        return 1
    groups = find_runs(args.root)
    if not groups:
        print(f'error: no seed<n> folders under "{args.root}"', file=sys.stderr)
        return 1
    known = {k for runs in groups.values() for r in runs if r.metrics for k in r.metrics}
    unknown = [m for m in args.metrics if m not in known]
    if known and unknown:
        print(f"error: no results.json under {args.root} has the metric(s) {unknown}; "
              f"known: {sorted(known)}", file=sys.stderr)
        return 1

    mode = args.mode
    if mode == "auto":
        mode = "base2new" if any(osp.isdir(osp.join(args.root, s)) for s in SPLITS) else "generic"
    problems: List[str] = []
    report = base2new_report if mode == "base2new" else generic_report
    text, rows = report(groups, args.metrics, args.ci95, args.seeds, problems)

    num_runs = sum(len(runs) for runs in groups.values())
    percent = [m for m in args.metrics if m in PERCENT_KEYS]
    print(f"## {args.root}: {num_runs} runs ({'base-to-new' if mode == 'base2new' else mode})")
    print()
    print(text)
    print()
    print(f"Percent: {', '.join(percent) or 'none'}. H = 2BN/(B+N) of the mean base and new "
          "accuracy; avg = (base + new) / 2; a dataset average is the mean of the per-dataset "
          "means." if mode == "base2new" else f"Percent: {', '.join(percent) or 'none'}.")

    if mode == "base2new" and args.plots:
        for path in write_base_new_plots(groups, args.plots, problems):
            print(f"Reliability figure: {path}")
    if problems:
        print("\n### Missing or incomplete results (left out of the averages)\n")
        print("\n".join(f"- {p}" for p in problems))
    if args.csv:
        print(f"\nCSV written to {write_csv(args.csv, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
