"""Recompute calibration metrics and reliability diagrams from what a run saved.

    python -m calibration.report LOCATION [LOCATION2] [--bins N] [--plot OUT.png]

A LOCATION is a predictions ``.npz`` (metrics recomputed from the probabilities), a
``results*.json`` (metrics and bins as stored), or a run directory (its ``results.json``,
or its ``predictions.npz`` when ``--bins`` asks for bins the results file does not hold).
Two locations, e.g. a train_base and a test_new run directory, are tabulated side by side
and drawn as one base/new figure.
"""
import argparse
import os.path as osp
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from .metrics import (DEFAULT_NUM_BINS, METRIC_KEYS, BinStats, calibration_metrics,
                      format_metric, reliability_bins)
from .records import (load_predictions, predictions_filename, read_results,
                      results_filename)
from .reliability import save_reliability_figure


@dataclass
class Evaluation:
    """Metrics and equal-width bins of one evaluation, with where they were read from."""

    source: str
    metrics: Dict[str, float]
    bins: BinStats
    title: str


def from_predictions(path: str, num_bins: Optional[int] = None) -> Evaluation:
    """Recompute every calibration metric and the bins from a predictions ``.npz``."""
    arrays = load_predictions(path)
    num_bins = num_bins or DEFAULT_NUM_BINS
    probs, labels = arrays["probs"], arrays["labels"]
    metrics = calibration_metrics(probs, labels, num_bins=num_bins)
    title = osp.basename(osp.dirname(osp.abspath(path))) or osp.basename(path)
    return Evaluation(path, dict(metrics), reliability_bins(probs, labels, num_bins), title)


def from_results(path: str) -> Evaluation:
    """Metrics and bins as a run stored them in its results file."""
    record = read_results(path)
    if "reliability" not in record:
        raise ValueError(f'"{path}" holds no per-bin statistics; use the run\'s predictions '
                         ".npz (TEST.SAVE_PREDICTIONS True) instead")
    provenance = record.get("provenance", {})
    classes = {"base": "base classes", "new": "new classes"}.get(
        provenance.get("subsample_classes"), "all classes")
    title = (f"{provenance.get('dataset', '?')} · {provenance.get('trainer', '?')} · "
             f"{classes} ({record.get('split', '?')})")
    return Evaluation(path, dict(record["metrics"]), BinStats.from_json(record["reliability"]),
                      title)


def load_evaluation(location: str, num_bins: Optional[int] = None,
                    split: str = "test") -> Evaluation:
    """The evaluation at ``location`` (see the module docstring for what it may be)."""
    if location.endswith(".npz"):
        return from_predictions(location, num_bins)

    if osp.isdir(location):
        results_path = osp.join(location, results_filename(split))
        predictions_path = osp.join(location, predictions_filename(split))
    elif osp.isfile(location):
        results_path = location
        stem = osp.basename(location).replace("results", "predictions", 1)
        predictions_path = osp.join(osp.dirname(location), osp.splitext(stem)[0] + ".npz")
    else:
        raise FileNotFoundError(f'"{location}" is neither a file nor a directory')

    has_predictions = osp.isfile(predictions_path)
    if osp.isfile(results_path):
        try:
            evaluation = from_results(results_path)
        except ValueError:
            if not has_predictions:
                raise
        else:
            if num_bins is None or evaluation.bins.num_bins == num_bins:
                return evaluation
            if not has_predictions:
                raise ValueError(f'"{results_path}" holds {evaluation.bins.num_bins} bins, '
                                 f'not {num_bins}, and there is no "{predictions_path}" to '
                                 "recompute them from")
    if has_predictions:
        return from_predictions(predictions_path, num_bins)
    raise FileNotFoundError(f'Neither "{results_path}" nor "{predictions_path}" exists')


def metrics_table(evaluations: Sequence[Evaluation], labels: Sequence[str]) -> str:
    """A markdown table: one row per metric, one column per evaluation."""
    keys = [k for k in METRIC_KEYS if any(k in e.metrics for e in evaluations)]
    keys += sorted({k for e in evaluations for k in e.metrics} - set(keys))
    lines = ["| metric | " + " | ".join(labels) + " |",
             "|---|" + "---:|" * len(labels)]
    for key in keys:
        cells = [format_metric(key, e.metrics[key]) if e.metrics.get(key) is not None
                 else "n/a" for e in evaluations]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m calibration.report",
        description="Recompute calibration metrics (and a reliability diagram) from a "
                    "predictions .npz, a results.json or a run directory.")
    parser.add_argument("locations", nargs="+", metavar="LOCATION",
                        help="one location, or two (e.g. base and new) to put side by side")
    parser.add_argument("--bins", type=int, default=None,
                        help=f"equal-width bins (default: as stored, else {DEFAULT_NUM_BINS})")
    parser.add_argument("--split", default="test",
                        help="which evaluation of a run directory to read (default: test)")
    parser.add_argument("--labels", nargs="+", default=None,
                        help="column and panel titles (default: base new for two locations)")
    parser.add_argument("--plot", default=None, metavar="OUT.png",
                        help="write the reliability diagram(s) to this PNG")
    args = parser.parse_args(argv)

    if len(args.locations) > 2:
        parser.error("give one location, or two to compare")
    if args.bins is not None and args.bins < 1:
        parser.error("--bins must be a positive integer")
    default_labels = ["base", "new"] if len(args.locations) == 2 else ["value"]
    labels = args.labels or default_labels
    if len(labels) != len(args.locations):
        parser.error("--labels needs one label per location")

    try:
        evaluations = [load_evaluation(loc, args.bins, args.split) for loc in args.locations]
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    for label, evaluation in zip(labels, evaluations):
        print(f"{label}: {evaluation.source}")
    print()
    print(metrics_table(evaluations, labels))

    if args.plot:
        titles = ([e.title for e in evaluations] if args.labels is None and len(evaluations) == 1
                  else [f"{label}: {e.title}" for label, e in zip(labels, evaluations)])
        panels = [(e.bins, title) for e, title in zip(evaluations, titles)]
        print(f"\nReliability diagram written to {save_reliability_figure(panels, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
