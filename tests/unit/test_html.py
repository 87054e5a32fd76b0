from __future__ import annotations

import re

import numpy as np
import pytest

from raymlops._internal import html

NASTY = '<b>&"x"'


def charts(label: str = NASTY) -> dict[str, str]:
    return {
        "grouped": html.grouped_bar_chart([label, "b"], {"reference": [0.4, 0.6],
                                                         label: [0.7, 0.3]},
                                          title=label, x_label=label, y_label=label),
        "histogram": html.histogram_pair([0.0, 1.0, 2.0], [0.5, 0.5], [0.2, 0.8],
                                         names=(label, "current"), title=label, x_label=label),
        "bars": html.bar_chart({label: 3.0, "other": 1.0}, title=label, x_label=label),
    }


def full_page() -> str:
    body = html.table(["column", NASTY], [[NASTY, 0.123456], [html.Raw("<i>ok</i>"), None]],
                      row_classes=["drift", None])
    body += "".join(html.figure(svg, caption=NASTY) for svg in charts().values())
    return html.page(NASTY, body, subtitle=NASTY)


def test_text_is_escaped_everywhere():
    page = full_page()
    assert NASTY not in page and "<b>" not in page
    assert "&lt;b&gt;&amp;&quot;x&quot;" in page
    assert "<i>ok</i>" in page  # Raw cells are inserted as-is
    assert "0.1235" in page


def test_page_opens_offline():
    page = full_page()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert page.startswith("<!doctype html>") and "<style>" in page


@pytest.mark.parametrize("kind", ["grouped", "histogram", "bars"])
def test_each_chart_is_one_svg(kind):
    svg = charts()[kind]
    assert svg.startswith("<svg") and svg.endswith("</svg>") and svg.count("<svg") == 1
    assert "<rect" in svg and "nan" not in svg.lower()
    coords = [float(v) for v in re.findall(r" (?:x|y|width|height)='([-\d.]+)'", svg)]
    assert coords and all(np.isfinite(coords))


def test_charts_handle_empty_input():
    for svg in (html.grouped_bar_chart([], {}), html.grouped_bar_chart([], {"a": []}),
                html.histogram_pair([], [], []), html.histogram_pair([1.0], [], []),
                html.bar_chart({}), html.bar_chart([])):
        assert svg.startswith("<svg") and "no data" in svg


def test_charts_handle_a_single_category_and_odd_values():
    assert "<rect" in html.grouped_bar_chart(["only"], {"reference": [1.0], "current": [1.0]})
    assert "<rect" in html.grouped_bar_chart(["zero"], {"reference": [0.0]})
    assert "<rect" in html.bar_chart([("x", 0.0)])
    assert "<rect" in html.bar_chart([("neg", -2.0), ("pos", 1.0), ("nan", float("nan"))])
    assert "<rect" in html.histogram_pair([5.0, 5.0], [1.0], [1.0])  # zero-width range


def test_mismatched_series_are_an_error():
    with pytest.raises(ValueError, match="categories"):
        html.grouped_bar_chart(["a", "b"], {"reference": [1.0]})
    with pytest.raises(ValueError, match="bins"):
        html.histogram_pair([0.0, 1.0, 2.0], [1.0], [0.5, 0.5])


def test_shared_bins_and_shares():
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 1, 1000), rng.normal(3, 1, 1000)
    edges = html.shared_bins(ref, cur, bins=20)
    assert len(edges) == 21 and edges[0] < 0 < 3 < edges[-1]
    for sample in (ref, cur):
        assert sum(html.bin_shares(sample, edges)) == pytest.approx(1.0)  # tails in end bins
    assert html.shared_bins([2.0, 2.0], [2.0, np.nan]) == [1.5, 2.5]
    assert html.shared_bins([], [np.nan]) == []
    assert html.bin_shares([], [0.0, 1.0, 2.0]) == [0.0, 0.0]
    assert html.bin_shares([1.0], []) == []


def test_formatting_helpers():
    assert html.fmt(None) == "" and html.fmt(float("nan")) == ""
    assert html.fmt(3) == "3" and html.fmt(0.000123456) == "0.0001235"
    assert html.percent(0.9) == "90.0%" and html.percent(None) == ""
    assert html.escape(html.Raw("<b>")) == "<b>" and html.escape("<b>") == "&lt;b&gt;"
