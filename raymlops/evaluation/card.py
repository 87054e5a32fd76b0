"""The model card: one self-contained HTML page per version, with its plots inline.

It shows what a reviewer asks before approving a model: the gate verdict, rule by rule;
the metrics at the chosen threshold and how that threshold was chosen; the ROC,
precision-recall and calibration curves; the confusion matrix; metrics per slice;
fairness per group; feature importance; and where the model came from (the training
data's digest and profile, the config, the code commit). It opens offline: no script,
no external resource.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from raymlops._internal import html as h


def _metric_rows(metrics: dict[str, float]) -> list[list[object]]:
    return [[name, h.fmt(value)] for name, value in sorted(metrics.items())]


def _verdict(gate: dict[str, Any]) -> str:
    rules = gate.get("rules") or []
    badge = "" if gate.get("passed") else "bad"
    parts = [f"<p><span class='badge {badge}'>{'PASS' if gate.get('passed') else 'REJECT'}"
             "</span></p>"]
    if rules:
        parts.append(h.table(
            ["rule", "value", "bound", "verdict", "reason"],
            [[r.get("rule"), h.fmt(r.get("value")), r.get("bound", ""),
              "pass" if r.get("passed") else "fail", r.get("reason", "")] for r in rules],
            row_classes=[None if r.get("passed") else "bad" for r in rules]))
    else:
        parts += [f"<p>{h.escape(reason)}</p>" for reason in gate.get("reasons", [])]
    return "".join(parts)


def _curves(report: dict[str, Any]) -> str:
    curves = report.get("curves") or {}
    parts = []
    roc, pr, cal = curves.get("roc"), curves.get("pr"), curves.get("calibration")
    if roc and roc.get("fpr"):
        parts.append(h.figure(h.line_chart(
            {"model": (roc["fpr"], roc["tpr"])}, title="ROC curve",
            x_label="false positive rate", y_label="true positive rate", diagonal=True),
            f"ROC AUC {h.fmt(report['metrics'].get('roc_auc'))}"))
    if pr and pr.get("recall"):
        parts.append(h.figure(h.line_chart(
            {"model": (pr["recall"], pr["precision"])}, title="precision-recall curve",
            x_label="recall", y_label="precision"),
            f"PR AUC {h.fmt(report['metrics'].get('pr_auc'))}"))
    if cal and cal.get("rows"):
        xs = [s for s in cal["mean_score"] if s is not None]
        ys = [p for s, p in zip(cal["mean_score"], cal["positive_rate"], strict=True)
              if s is not None]
        parts.append(h.figure(h.line_chart(
            {"model": (xs, ys)}, title="calibration", x_label="mean predicted probability",
            y_label="share of positives", diagonal=True, markers=True),
            f"expected calibration error {h.fmt(cal.get('ece'))} over {len(xs)} bins"))
    confusion = curves.get("confusion")
    if confusion:
        parts.append("<h3>Confusion matrix at the threshold</h3>" + h.table(
            ["", "decided negative", "decided positive"],
            [["actual negative", confusion["tn"], confusion["fp"]],
             ["actual positive", confusion["fn"], confusion["tp"]]]))
    return "".join(parts)


def _slices(report: dict[str, Any]) -> str:
    slices = report.get("slices") or {}
    if not slices:
        return ""
    key = "roc_auc" if report.get("task") == "classification" else "rmse"
    parts = ["<h2>Metrics per slice</h2>"]
    for column, groups in slices.items():
        rows = [[group, int(stats.get("rows", 0)), *(h.fmt(stats.get(m)) for m in
                                                     ("accuracy", "f1", key))]
                for group, stats in groups.items()]
        parts.append(f"<h3>{h.escape(column)}</h3>")
        parts.append(h.table(["slice", "rows", "accuracy", "f1", key], rows))
        values = [(g, s[key]) for g, s in groups.items() if s.get(key) is not None]
        if values:
            parts.append(h.figure(h.bar_chart(values, title=f"{key} per slice of {column}")))
    return "".join(parts)


def _fairness(report: dict[str, Any]) -> str:
    fairness = report.get("fairness") or {}
    parts = ["<h2>Fairness per group</h2>"] if fairness else []
    for column, numbers in fairness.items():
        groups = numbers.get("groups", {})
        parts.append(f"<h3>{h.escape(column)}</h3>")
        parts.append(h.table(["group", "rows", "judged", "selection rate", "TPR", "FPR"], [
            [g, v.get("rows"), "yes" if v.get("judged", True) else "no (too few rows)",
             h.fmt(v.get("selection_rate")), h.fmt(v.get("tpr")), h.fmt(v.get("fpr"))]
            for g, v in groups.items()]))
        if numbers.get("not_judged"):
            parts.append(f"<p>The measures compare the groups with at least "
                         f"{h.escape(numbers.get('min_rows'))} rows "
                         "(evaluation.fairness_min_rows).</p>")
        parts.append(h.table(["measure", "value"], [
            [m, h.fmt(numbers.get(m))] for m in ("demographic_parity_difference",
                                                 "demographic_parity_ratio",
                                                 "equalized_odds_difference",
                                                 "disparate_impact_ratio")]))
        rates = [(g, v["selection_rate"]) for g, v in groups.items()
                 if v.get("selection_rate") is not None]
        if rates:
            parts.append(h.figure(h.bar_chart(rates, title=f"selection rate by {column}")))
    return "".join(parts)


def _provenance(card: dict[str, Any]) -> str:
    profile = card.get("profile") or {}
    rows = []
    for column, stats in profile.items():
        if stats.get("kind") == "number":
            summary = f"mean {h.fmt(stats.get('mean'))}, std {h.fmt(stats.get('std'))}"
        elif stats.get("kind") == "category":
            summary = f"{stats.get('distinct')} distinct"
        else:
            summary = str(stats.get("reason", ""))
        rows.append([column, stats.get("kind"), stats.get("nulls", ""), summary])
    return ("<h2>Where it came from</h2>"
            + h.table(["", ""], [["training data digest", card.get("dataset_digest", "")],
                                 ["code commit", card.get("commit", "")],
                                 ["MLflow run", card.get("mlflow_run_id", "")],
                                 ["positive class", card.get("positive_label", "")]])
            + (h.table(["column", "kind", "missing", "summary"], rows) if rows else "")
            + "<h3>Config</h3><pre>"
            + h.escape(json.dumps(card.get("config", {}), indent=2, default=str)) + "</pre>")


def render(card: dict[str, Any]) -> str:
    """The HTML of a card. ``card`` holds ``model``, ``version``, ``report`` (the
    evaluation report), ``gate``, ``importance``, ``dataset_digest``, ``profile``,
    ``config``, ``commit``, ``mlflow_run_id``."""
    report = card["report"]
    threshold = report.get("threshold") or {}
    latency = ", ".join(f"{size.removeprefix('batch_')} rows {ms:.2f} ms" for size, ms in
                        (report.get("latency_ms") or {}).items()) or "not measured"
    body = [
        "<h2>Gate verdict</h2>", _verdict(card.get("gate") or report.get("gate") or {}),
        "<h2>Metrics on the holdout split</h2>",
        f"<p>{report.get('rows')} rows; decision threshold {h.fmt(threshold.get('value'))} "
        f"({h.escape(threshold.get('reason', 'not a classifier'))}); batch scoring "
        f"{h.fmt(report.get('rows_per_s'))} rows/s; latency per batch {h.escape(latency)}.</p>",
        h.table(["metric", "value"], _metric_rows(report.get("metrics", {}))),
        _curves(report), _slices(report), _fairness(report),
    ]
    importance = card.get("importance") or {}
    if importance.get("values"):
        body.append("<h2>Feature importance</h2>")
        body.append(h.figure(h.bar_chart(list(importance["values"].items()),
                                         title=importance.get("method", "")),
                             importance.get("note", "")))
    body.append(_provenance(card))
    return h.page(f"Model card: {card['model']} version {card['version']}", "".join(body),
                  subtitle=card.get("subtitle"))


def write(card: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(card))
    return path


def write_for(result: Any, *, model: str, version: str, run_dir: Path, dataset_digest: str,
              profile: dict[str, Any], config: Any, mlflow_run_id: str, tracking_uri: str,
              model_uri: str, test_dir: Path) -> Path:
    """The card of one evaluated version, next to its evaluation report."""
    import mlflow
    import numpy as np
    import pandas as pd

    from raymlops.config import config_snapshot
    from raymlops.evaluation.importance import importance
    from raymlops.names import COMMIT_TAG, LABEL

    mlflow.set_tracking_uri(tracking_uri)
    loaded = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    report = json.loads(Path(result.report).read_text())
    frame = pd.read_parquet(test_dir)
    if len(frame) > 2000:
        frame = frame.sample(2000, random_state=0)
    normalized = loaded.features.normalize(frame, raw=False).frame
    try:
        ranked = importance(loaded, normalized, frame[LABEL].to_numpy(dtype=np.float64),
                            config.data.task)
    except Exception as exc:  # noqa: BLE001 - a card without importance beats no card
        ranked = {"method": "not computed", "values": {}, "note": f"{type(exc).__name__}: {exc}"}
    run = mlflow.MlflowClient().get_run(mlflow_run_id)
    card = {"model": model, "version": version, "report": report,
            "gate": report.get("gate"), "importance": ranked, "dataset_digest": dataset_digest,
            "profile": profile, "config": config_snapshot(config),
            "commit": run.data.tags.get(COMMIT_TAG, "unknown"), "mlflow_run_id": mlflow_run_id,
            "positive_label": (f"{loaded.meta['positive_label']!r} "
                               f"({loaded.meta.get('positive_reason') or 'given'})")
            if loaded.meta.get("positive_label") else
            (f"{config.data.positive_label!r} (data.positive_label)"
             if config.data.positive_label is not None else "1 / true"),
            "subtitle": f"{config.data.task}, {config.train.framework}, trained by run "
                        f"{loaded.meta.get('run_id', '?')}"}
    return write(card, run_dir / "reports" / "model_card.html")
