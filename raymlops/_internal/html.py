"""Self-contained HTML reports: an inline-CSS page, escaped tables and inline SVG charts.

Reports (validation, model card, drift) must open offline: nothing here references an
external resource (no CDN, no script, no web font, no stylesheet link); charts are SVG
strings built in plain Python, with native ``<title>`` tooltips instead of JavaScript.
Every piece of text goes through :func:`escape`; wrap HTML you built yourself in
:class:`Raw` so that :func:`table` and :func:`figure` insert it as-is.
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Mapping, Sequence

import numpy as np

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:2em auto;max-width:1100px;padding:0 1em;color:#222;line-height:1.4}
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.subtitle{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}tr.drift td,tr.bad td{background:#fdecea}
.badge{display:inline-block;padding:.1em .6em;border-radius:.8em;color:#fff;
background:#2e7d32}.badge.drift,.badge.bad{background:#c62828}
.badge.warn{background:#ef6c00}
section.item{border-left:4px solid #ddd;padding:.2em 1em;margin:1.2em 0}
section.item.drift,section.item.bad{border-left-color:#c62828;background:#fffafa}
figure{margin:.5em 0}figcaption{color:#555;font-size:.9em}
svg text{font-family:inherit}
"""


class Raw(str):
    """HTML that is already rendered: :func:`escape` returns it unchanged."""

    __slots__ = ()


def escape(value: object) -> str:
    """Text for an HTML element or a quoted attribute (``<``, ``&`` and quotes escaped)."""
    if isinstance(value, Raw):
        return str(value)
    return _html.escape(str(value), quote=True)


def fmt(value: object, digits: int = 4) -> str:
    """A number to ``digits`` significant digits; ``None``/NaN to an empty string."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool | int | np.integer):
        return str(value)
    if isinstance(value, float | np.floating):
        return f"{float(value):.{digits}g}"
    return str(value)


def percent(share: float | None, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage (``0.9`` -> ``"90.0%"``); ``None`` -> ``""``."""
    return "" if share is None else f"{100 * share:.{digits}f}%"


def page(title: str, body: str, *, subtitle: str | None = None) -> str:
    """A complete HTML document; ``body`` is HTML built with the helpers here."""
    sub = f"<p class='subtitle'>{escape(subtitle)}</p>" if subtitle else ""
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><h1>{escape(title)}</h1>{sub}{body}</body></html>\n"
    )


def table(headers: Sequence[object], rows: Sequence[Sequence[object]], *,
          row_classes: Sequence[str | None] | None = None) -> str:
    """An HTML table; cells are escaped (numbers via :func:`fmt`) unless they are Raw."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        css = row_classes[i] if row_classes is not None and i < len(row_classes) else None
        attr = f" class='{escape(css)}'" if css else ""
        cells = "".join(f"<td>{_cell(c)}</td>" for c in row)
        body.append(f"<tr{attr}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure(chart: str, caption: str = "") -> str:
    """A chart (SVG from the functions below) with an escaped caption."""
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{chart}{cap}</figure>"


def grouped_bar_chart(categories: Sequence[str], series: Mapping[str, Sequence[float]], *,
                      title: str = "", x_label: str = "", y_label: str = "",
                      width: int = 640, height: int = 280) -> str:
    """Vertical bars, one group per category and one bar per series, with a legend."""
    names = list(series)
    for name in names:
        if len(series[name]) != len(categories):
            raise ValueError(f"series {name!r} has {len(series[name])} values for "
                             f"{len(categories)} categories")
    if not categories or not names:
        return _empty_chart(title, width, height)
    rotate = len(categories) > 6
    left, right, top, bottom = 56, 12, 34, 84 if rotate else 52
    width = max(width, left + right + len(categories) * max(len(names) * 7, 16))
    plot_w, plot_h = width - left - right, height - top - bottom
    values = {n: [_finite(v) for v in series[n]] for n in names}
    y_max = _nice_max(max(max(v) for v in values.values()))
    parts = [_svg_open(title, width, height), _title(title, width),
             _legend(names, width - right, 16), _y_axis(y_max, left, top, plot_w, plot_h)]
    group_w = plot_w / len(categories)
    bar_w = min(group_w * 0.8 / len(names), 48.0)
    for i, category in enumerate(categories):
        x0 = left + (i + 0.5) * group_w - bar_w * len(names) / 2
        for j, name in enumerate(names):
            v = values[name][i]
            h = plot_h * v / y_max
            parts.append(
                f"<rect x='{x0 + j * bar_w:.1f}' y='{top + plot_h - h:.1f}' "
                f"width='{max(bar_w - 1, 1):.1f}' height='{h:.1f}' "
                f"fill='{PALETTE[j % len(PALETTE)]}'><title>{escape(category)} | "
                f"{escape(name)}: {fmt(v, 3)}</title></rect>")
        cx, ly = left + (i + 0.5) * group_w, top + plot_h + 14
        label = escape(_truncate(str(category), 14 if rotate else max(int(group_w / 7), 3)))
        if rotate:
            parts.append(f"<text x='{cx:.1f}' y='{ly:.1f}' font-size='11' text-anchor='end' "
                         f"transform='rotate(-40 {cx:.1f} {ly:.1f})'>{label}</text>")
        else:
            parts.append(f"<text x='{cx:.1f}' y='{ly:.1f}' font-size='11' "
                         f"text-anchor='middle'>{label}</text>")
    parts.append(_axis_labels(x_label, y_label, left=left, top=top, plot_w=plot_w,
                              plot_h=plot_h, height=height))
    return "".join(parts) + "</svg>"


def histogram_pair(edges: Sequence[float], reference: Sequence[float],
                   current: Sequence[float], *, names: tuple[str, str] = ("reference", "current"),
                   title: str = "", x_label: str = "", y_label: str = "share",
                   width: int = 640, height: int = 260) -> str:
    """Two histograms overlaid on shared bins: ``len(edges) - 1`` counts or shares each."""
    n_bins = len(edges) - 1
    if n_bins < 1:
        return _empty_chart(title, width, height)
    for name, vals in zip(names, (reference, current), strict=True):
        if len(vals) != n_bins:
            raise ValueError(f"{name}: {len(vals)} values for {n_bins} bins")
    left, right, top, bottom = 56, 12, 34, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    lo, hi = float(edges[0]), float(edges[-1])
    span = hi - lo if hi > lo else 1.0
    y_max = _nice_max(max(_finite(v) for v in [*reference, *current]))
    parts = [_svg_open(title, width, height), _title(title, width),
             _legend(list(names), width - right, 16, 0.5),
             _y_axis(y_max, left, top, plot_w, plot_h)]
    for j, (name, vals) in enumerate(zip(names, (reference, current), strict=True)):
        for i in range(n_bins):
            x0 = left + plot_w * (float(edges[i]) - lo) / span
            x1 = left + plot_w * (float(edges[i + 1]) - lo) / span
            v = _finite(vals[i])
            h = plot_h * v / y_max
            parts.append(
                f"<rect x='{x0:.1f}' y='{top + plot_h - h:.1f}' width='{max(x1 - x0, 0.5):.1f}' "
                f"height='{h:.1f}' fill='{PALETTE[j]}' fill-opacity='0.5' "
                f"stroke='{PALETTE[j]}' stroke-width='0.8'><title>{escape(name)} "
                f"[{fmt(float(edges[i]), 3)}, {fmt(float(edges[i + 1]), 3)}]: "
                f"{fmt(v, 3)}</title></rect>")
    for k in range(5):
        value = lo + (hi - lo) * k / 4
        x = left + plot_w * k / 4
        anchor = "end" if k == 4 else "middle"
        parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top + plot_h}' "
                     f"y2='{top + plot_h + 4}' stroke='#444'/>"
                     f"<text x='{x:.1f}' y='{top + plot_h + 16}' font-size='11' "
                     f"text-anchor='{anchor}'>{escape(_tick(value))}</text>")
    parts.append(_axis_labels(x_label, y_label, left=left, top=top, plot_w=plot_w,
                              plot_h=plot_h, height=height))
    return "".join(parts) + "</svg>"


def line_chart(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
               title: str = "", x_label: str = "", y_label: str = "", diagonal: bool = False,
               markers: bool = False, width: int = 420, height: int = 320) -> str:
    """Curves on the unit square (ROC, precision-recall, calibration): name -> (xs, ys)."""
    if not any(len(xs) for xs, _ in series.values()):
        return _empty_chart(title, width, height)
    left, right, top, bottom = 56, 12, 34, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [_svg_open(title, width, height), _title(title, width),
             _legend(list(series), width - right, 16), _y_axis(1.0, left, top, plot_w, plot_h)]
    if diagonal:
        parts.append(f"<line x1='{left}' y1='{top + plot_h}' x2='{left + plot_w}' y2='{top}' "
                     "stroke='#999' stroke-dasharray='4 3'/>")
    for j, (name, (xs, ys)) in enumerate(series.items()):
        color = PALETTE[j % len(PALETTE)]
        points = [(left + plot_w * _finite(x), top + plot_h * (1 - _finite(y)))
                  for x, y in zip(xs, ys, strict=True)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f"<polyline points='{path}' fill='none' stroke='{color}' "
                     f"stroke-width='2'><title>{escape(name)}</title></polyline>")
        if markers:
            parts += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{color}'/>"
                      for x, y in points]
    for k in range(5):
        x = left + plot_w * k / 4
        parts.append(f"<text x='{x:.1f}' y='{top + plot_h + 16}' font-size='11' "
                     f"text-anchor='middle'>{k / 4:g}</text>")
    parts.append(_axis_labels(x_label, y_label, left=left, top=top, plot_w=plot_w,
                              plot_h=plot_h, height=height))
    return "".join(parts) + "</svg>"


def bar_chart(items: Mapping[str, float] | Sequence[tuple[str, float]], *, title: str = "",
              x_label: str = "", width: int = 640, bar_height: int = 18,
              max_items: int = 30) -> str:
    """Horizontal bars, one per ``label -> value`` (counts, importances), in the given order."""
    pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
    pairs = [(str(k), _finite(v, keep_sign=True)) for k, v in pairs[:max_items]]
    if not pairs:
        return _empty_chart(title, width, 120)
    left, right, top, bottom = 170, 60, 30, 36 if x_label else 14
    height = top + bottom + len(pairs) * (bar_height + 4)
    plot_w = width - left - right
    lo, hi = min(0.0, *(v for _, v in pairs)), max(0.0, *(v for _, v in pairs))
    span = hi - lo if hi > lo else 1.0
    zero = left + plot_w * (0.0 - lo) / span
    parts = [_svg_open(title, width, height), _title(title, width)]
    for i, (label, v) in enumerate(pairs):
        y = top + i * (bar_height + 4)
        x = left + plot_w * (min(v, 0.0) - lo) / span
        w = plot_w * abs(v) / span
        parts.append(
            f"<text x='{left - 6}' y='{y + bar_height * 0.72:.1f}' font-size='11' "
            f"text-anchor='end'>{escape(_truncate(label, 26))}</text>"
            f"<rect x='{x:.1f}' y='{y}' width='{max(w, 0.5):.1f}' height='{bar_height}' "
            f"fill='{PALETTE[0]}'><title>{escape(label)}: {fmt(v, 4)}</title></rect>"
            f"<text x='{(x + w if v >= 0 else zero) + 4:.1f}' y='{y + bar_height * 0.72:.1f}' "
            f"font-size='11'>{escape(fmt(v, 3))}</text>")
    bottom_y = top + len(pairs) * (bar_height + 4)
    parts.append(f"<line x1='{zero:.1f}' x2='{zero:.1f}' y1='{top - 2}' y2='{bottom_y}' "
                 "stroke='#444'/>")
    if x_label:
        parts.append(f"<text x='{left + plot_w / 2:.1f}' y='{height - 8}' font-size='12' "
                     f"text-anchor='middle'>{escape(x_label)}</text>")
    return "".join(parts) + "</svg>"


def shared_bins(reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray,
                *, bins: int = 20, quantiles: tuple[float, float] = (1.0, 99.0)) -> list[float]:
    """Bin edges shared by two samples: ``bins`` equal bins between pooled percentiles.

    Non-finite values are ignored; a (nearly) constant sample gets one unit-wide bin
    around its value; no finite value at all gives no edges.
    """
    pooled = np.concatenate([np.asarray(reference, dtype=float).ravel(),
                             np.asarray(current, dtype=float).ravel()])
    pooled = pooled[np.isfinite(pooled)]
    if pooled.size == 0:
        return []
    lo, hi = (float(q) for q in np.percentile(pooled, quantiles))
    if not hi > lo:
        lo, hi = float(pooled.min()), float(pooled.max())
    if not hi > lo:
        return [lo - 0.5, lo + 0.5]
    return [float(e) for e in np.linspace(lo, hi, bins + 1)]


def bin_shares(values: Sequence[float] | np.ndarray, edges: Sequence[float]) -> list[float]:
    """Share of the finite values in each bin; values beyond the edges count in the end bins."""
    if len(edges) < 2:
        return []
    arr = np.asarray(values, dtype=float).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return [0.0] * (len(edges) - 1)
    counts, _ = np.histogram(np.clip(arr, edges[0], edges[-1]), bins=np.asarray(edges))
    return [float(c) for c in counts / arr.size]


def _cell(value: object) -> str:
    if isinstance(value, Raw):
        return str(value)
    return escape(fmt(value))


def _finite(value: object, *, keep_sign: bool = False) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    if not math.isfinite(v):
        return 0.0
    return v if keep_sign else max(v, 0.0)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 1)] + "\u2026"


def _nice_max(value: float) -> float:
    """The top of a y axis at or above ``value``: a multiple of :func:`_nice_step`."""
    if not (math.isfinite(value) and value > 0):
        return 1.0
    step = _nice_step(value)
    return step * max(math.ceil(value / step - 1e-9), 1)


def _nice_step(value: float) -> float:
    raw = value / 4
    scale = 10 ** math.floor(math.log10(raw))
    return next(m * scale for m in (1, 2, 5, 10) if raw <= m * scale * (1 + 1e-9))


def _tick(value: float) -> str:
    size = abs(value)
    if size >= 1e9:
        return f"{value / 1e9:.3g}G"
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:.3g}"


def _svg_open(title: str, width: int, height: int) -> str:
    label = escape(title or "chart")
    # Inline SVG in HTML needs no xmlns: the page holds no URL at all.
    return (f"<svg viewBox='0 0 {width} {height}' "
            f"width='{width}' height='{height}' role='img' aria-label='{label}'>"
            f"<title>{label}</title>")


def _title(title: str, width: int) -> str:
    if not title:
        return ""
    return (f"<text x='8' y='18' font-size='13' font-weight='bold'>"
            f"{escape(_truncate(title, max(width // 8, 10)))}</text>")


def _legend(names: Sequence[str], right_x: int, y: int, opacity: float = 1.0) -> str:
    parts, x = [], float(right_x)
    for j in reversed(range(len(names))):
        label = escape(_truncate(str(names[j]), 20))
        x -= 22 + 7 * min(len(str(names[j])), 20)
        parts.append(f"<rect x='{x:.1f}' y='{y - 9}' width='12' height='12' "
                     f"fill='{PALETTE[j % len(PALETTE)]}' fill-opacity='{opacity}'/>"
                     f"<text x='{x + 16:.1f}' y='{y + 1}' font-size='11'>{label}</text>")
    return "".join(parts)


def _y_axis(y_max: float, left: int, top: int, plot_w: int, plot_h: int) -> str:
    parts = [f"<line x1='{left}' x2='{left}' y1='{top}' y2='{top + plot_h}' stroke='#444'/>",
             f"<line x1='{left}' x2='{left + plot_w}' y1='{top + plot_h}' y2='{top + plot_h}' "
             "stroke='#444'/>"]
    step = _nice_step(y_max)
    for k in range(round(y_max / step) + 1):
        value = step * k
        y = top + plot_h - plot_h * value / y_max
        parts.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{y:.1f}' y2='{y:.1f}' "
                     f"stroke='#e5e5e5'/><text x='{left - 5}' y='{y + 4:.1f}' font-size='11' "
                     f"text-anchor='end'>{escape(_tick(value))}</text>")
    return "".join(parts)


def _axis_labels(x_label: str, y_label: str, *, left: int, top: int, plot_w: int,
                 plot_h: int, height: int) -> str:
    parts = []
    if x_label:
        parts.append(f"<text x='{left + plot_w / 2:.1f}' y='{height - 6}' font-size='12' "
                     f"text-anchor='middle'>{escape(x_label)}</text>")
    if y_label:
        cy = top + plot_h / 2
        parts.append(f"<text x='14' y='{cy:.1f}' font-size='12' text-anchor='middle' "
                     f"transform='rotate(-90 14 {cy:.1f})'>{escape(y_label)}</text>")
    return "".join(parts)


def _empty_chart(title: str, width: int, height: int, message: str = "no data") -> str:
    height = min(height, 120)
    return (_svg_open(title, width, height) + _title(title, width)
            + f"<text x='{width / 2:.0f}' y='{height / 2:.0f}' font-size='13' fill='#777' "
            f"text-anchor='middle'>{escape(message)}</text></svg>")
