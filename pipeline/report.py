"""``RUN_DIR/report.html``: one self-contained page about a run (no network, no external files).

``write_report(run_dir)`` draws the run's plots (``pipeline.plots``) and writes one HTML page with
them embedded as base64 PNG: the config summary, the training phase table, the front per search
iteration, the hypervolume curve, the generated architectures against their budgets (measured and
predicted), the fine-tuned models with their ONNX files (and, when an int8 hardware profile is
configured, their fp32 against INT8 figures from the deploy bundles), and the final front as a table that sorts
on a click of its header (a few lines of inline JavaScript). A section whose data the run does not
hold yet says so instead of failing, so the page can be written for a partial run.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pipeline import results
from pipeline.atomic import write_text_atomic
from pipeline.errors import ResultsError
from pipeline.run_dir import RunDir
from pipeline.schema import LATENCY_PREFIX, deployed_top1_columns

#: config keys shown in the summary, per section (the whole config is in config.yaml)
SUMMARY_KEYS = {
    "run": ("name", "seed"),
    "data": ("dataset", "path", "batch_size"),
    "supernet": ("early_exits", "dense_skips", "parallel_blocks", "stage_widths", "resolutions"),
    "train": ("epochs_scale", "distillation", "num_workers", "threads_per_worker"),
    "search": ("space", "objectives", "max_evaluations", "initial_size", "candidates_per_iteration"),
    "generate": ("budget_metrics", "budgets", "samples_per_budget"),
    "finetune": ("source", "max_archs", "max_epochs"),
}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td.t,th.t{text-align:left}table.sortable th{cursor:pointer}table.sortable th:hover{background:#e4e4ff}
img{max-width:100%;border:1px solid #eee}.missing{color:#888;font-style:italic}
"""

_SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var up = th.getAttribute("data-dir") !== "asc";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-dir"); });
      th.setAttribute("data-dir", up ? "asc" : "desc");
      rows.sort(function (a, b) {
        var x = a.cells[column].textContent, y = b.cells[column].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var order = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return up ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def html_table(frame: pd.DataFrame, columns: Sequence[str] | None = None, sortable: bool = False,
               table_id: str | None = None) -> str:
    """``frame`` (its ``columns`` that exist) as an HTML table; text columns are left-aligned."""
    columns = [c for c in (columns or frame.columns) if c in frame.columns]
    text = {c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])}
    head = "".join(f'<th class="{"t" if c in text else ""}">{html.escape(c)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"t" if c in text else ""}">{_cell(row[c])}</td>' for c in columns) + "</tr>"
        for _, row in frame.iterrows()
    )
    attributes = (' class="sortable"' if sortable else "") + (f' id="{table_id}"' if table_id else "")
    return f"<table{attributes}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def embedded_png(path: Path, alt: str) -> str:
    """An ``<img>`` carrying ``path`` as a base64 data URL (empty when the plot was not drawn)."""
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _missing(what: str) -> str:
    return f'<p class="missing">{html.escape(what)}</p>'


def config_section(run: RunDir) -> str:
    """The config keys of ``SUMMARY_KEYS`` as a two-column table."""
    if not run.config_file.is_file():
        return _missing("no config.yaml in this run directory")
    config = yaml.safe_load(run.config_file.read_text(encoding="utf-8")) or {}
    rows = [{"setting": f"{section}.{key}", "value": _config_value(config.get(section, {}).get(key))}
            for section, keys in SUMMARY_KEYS.items() for key in keys
            if isinstance(config.get(section), dict) and key in config[section]]
    return html_table(pd.DataFrame(rows, columns=["setting", "value"]))


def _config_value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v if not isinstance(v, dict) else v.get("name", v)) for v in value)
    return "" if value is None else str(value)


def training_section(run: RunDir) -> str:
    """The phase table (epochs, peak lr, last accuracies per part) and the training plot."""
    try:
        metrics = results.train_metrics(run.root)
    except ResultsError:
        return _missing("the supernet has not been trained yet (no train_metrics.parquet)")
    keys = [c for c in ("phase", "part") if c in metrics]
    accuracy = [c for c in ("top1_max", "top1_min", "top1_sampled_mean") if c in metrics]
    aggregations: dict[str, tuple[str, str]] = {"epochs": (keys[0], "size")} if keys else {}
    if "lr" in metrics:
        aggregations["peak lr"] = ("lr", "max")
    aggregations.update({c: (c, "last") for c in accuracy})
    table = metrics.groupby(keys, sort=False).agg(**aggregations).reset_index() if keys else metrics.tail(1)
    return html_table(table) + embedded_png(run.plot("training_phases.png"), "training phases")


def search_section(run: RunDir) -> str:
    """The front after each iteration (plot and sizes) and the hypervolume curve."""
    try:
        stacked = results.fronts(run.root)
        sizes = stacked.groupby("front_iteration").size().rename("front size").reset_index()
        curve = results.hypervolume_curve(run.root)
    except (ResultsError, KeyError):
        return _missing("no search results yet (no fronts/ or archive.parquet)")
    table = sizes.merge(curve.rename(columns={"iteration": "front_iteration"}), on="front_iteration", how="left")
    return (
        "<h3>Front per iteration</h3>" + embedded_png(run.plot("front.png"), "front per iteration")
        + html_table(table.drop(columns=["front_size"], errors="ignore"))
        + "<h3>Hypervolume</h3>" + embedded_png(run.plot("hypervolume.png"), "hypervolume curve")
    )


def generated_section(run: RunDir) -> str:
    """Generated architectures against their budgets: measured and predicted cost and top-1."""
    try:
        frame = results.generated(run.root)
    except ResultsError:
        return _missing("nothing generated yet (no generated.parquet)")
    metrics = sorted({m for value in frame.get("budget_metric", pd.Series(dtype=str)).dropna()
                      for m in str(value).split(",")})
    columns = ["budget", "budget_metric"] + [c for m in metrics for c in (m, f"predicted_{m}")]
    columns += ["meets_budget", "predicted_top1", "top1", "arch_id"]
    return embedded_png(run.plot("generated.png"), "generated architectures") + html_table(
        frame.sort_values("budget") if "budget" in frame else frame, columns)


def finetuned_section(run: RunDir) -> str:
    """The fine-tuned models: accuracy, size and their ONNX files (relative links)."""
    try:
        frame = results.finetuned(run.root).copy()
    except ResultsError:
        return _missing("nothing fine-tuned yet (no finetuned.parquet)")
    if "onnx_path" in frame:
        frame["onnx file"] = [_onnx_note(run, path) for path in frame["onnx_path"]]
    columns = ["arch_id", "status", "top1_before", "top1", "val_top1", "params_m", "macs_m", "best_epochs",
               "onnx file", "onnx_max_abs_diff"]
    return html_table(frame, columns)


def precision_section(run: RunDir) -> str:
    """fp32 against INT8 per fine-tuned subnet and int8 profile: top-1, drop, latency and their ratio."""
    table = results.precision_comparison(run.root).rename(columns={
        "fp32_top1": "fp32 top-1", "int8_top1": "INT8 top-1", "top1_drop": "drop (points)",
        "agreement": "agreement %", "fp32_ms": "fp32 ms", "int8_ms": "INT8 ms", "int8_ratio": "INT8/fp32 latency"})
    note = ("<p>Top-1 measured by ONNX Runtime on the test split for each file of the subnet's deploy bundle "
            "(<code>models/&lt;arch_id&gt;/card.json</code>); both files timed under the profile's settings.</p>")
    return note + html_table(table.drop(columns=["params_m"])) + embedded_png(run.plot("precision.png"),
                                                                               "fp32 against INT8")


def _onnx_note(run: RunDir, path: Any) -> str:
    if not isinstance(path, str) or not path:
        return ""
    file = Path(path)
    size = f" ({file.stat().st_size / 1024:.0f} KiB)" if file.is_file() else " (missing)"
    try:
        return f"{file.relative_to(run.root)}{size}"
    except ValueError:
        return f"{file}{size}"


def front_section(run: RunDir) -> str:
    """The final front as a sortable table (click a header)."""
    try:
        frame = results.front(run.root)
    except ResultsError:
        return _missing("no final front yet (no front.parquet)")
    latency = [c for c in frame.columns if c.startswith(LATENCY_PREFIX)]
    columns = ["arch_id", "top1", *deployed_top1_columns(frame.columns), "params_m", "macs_m", *latency,
               "predicted_top1", "iteration", "source"]
    ordered = frame.sort_values("top1", ascending=False) if "top1" in frame else frame
    return html_table(ordered, columns, sortable=True, table_id="front")


def _has_int8_figures(run: RunDir) -> bool:
    """Whether the run's fine-tuned rows hold deploy-bundle figures of an int8 profile."""
    try:
        return bool(results.int8_profiles(results.finetuned(run.root)))
    except ResultsError:
        return False


def render_report(run_dir: str | Path) -> str:
    """The report page of ``run_dir`` as HTML text (the plots must already be drawn)."""
    run = RunDir(Path(run_dir))
    sections = [
        ("Configuration", config_section(run)),
        ("Supernet training phases", training_section(run)),
        ("Search", search_section(run)),
        ("Generated architectures against their budgets", generated_section(run)),
        ("Fine-tuned models", finetuned_section(run)),
    ]
    if _has_int8_figures(run):
        sections.append(("Fine-tuned models: fp32 against INT8", precision_section(run)))
    sections.append(("Final front", front_section(run)))
    body = "".join(f"<h2>{html.escape(title)}</h2>{content}" for title, content in sections)
    title = html.escape(f"NAS run {run.root.name}")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{title}</h1><p>{html.escape(str(run.root))}</p>"
            f"{body}<script>{_SORT_JS}</script></body></html>\n")


def write_report(run_dir: str | Path) -> Path:
    """Draw the run's plots, then write ``RUN_DIR/report.html`` atomically; returns its path."""
    from pipeline.plots import plot_run

    plot_run(run_dir)
    page = RunDir(Path(run_dir)).report
    write_text_atomic(page, render_report(run_dir))
    return page


def render_comparison(run_dirs: Sequence[str | Path]) -> str:
    """``results.compare_runs`` for several runs as one self-contained, sortable HTML page."""
    table = html_table(results.compare_runs(run_dirs), sortable=True, table_id="compare")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Run comparison</title>"
            f"<style>{_STYLE}</style></head><body><h1>Run comparison</h1>"
            f"<p>Hypervolumes share one normalisation: the pooled front of these runs.</p>{table}"
            f"<script>{_SORT_JS}</script></body></html>\n")


def write_comparison(run_dirs: Sequence[str | Path], path: str | Path) -> Path:
    """Write ``render_comparison(run_dirs)`` to ``path`` atomically; returns it."""
    return write_text_atomic(path, render_comparison(run_dirs))
