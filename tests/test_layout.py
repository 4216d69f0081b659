"""The book's figure and table rules: legibility is checked, numbers are formatted alike."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mer_lib.errors import ParameterError  # noqa: E402
from mer_lib.layout import (MIN_FONT_PT, MINUS, NBSP, PAGE_WIDTH_IN, book_style, count, figure_problems, glue_figure,  # noqa: E402
                            markdown_table, number, p_value, page_figure)


def test_a_page_figure_in_the_book_style_is_legible():
    book_style()
    fig, ax = page_figure(2, 1, height=4)
    ax[0].plot([0, 1], [1, 2], label="A2E")
    ax[0].legend()
    ax[1].set_xlabel("ε (L∞, standardised units)")
    ax[1].set_title("a title")
    assert fig.get_size_inches()[0] == PAGE_WIDTH_IN
    assert figure_problems(fig) == []
    plt.close(fig)


def test_a_wide_figure_or_small_text_is_named_and_refused():
    fig, ax = plt.subplots(figsize=(16, 3))
    ax.set_title("tiny", fontsize=7)
    problems = figure_problems(fig)
    assert any("16.00 in wide" in p for p in problems)
    assert any("[7.0] pt" in p for p in problems)
    with pytest.raises(ParameterError, match="figure 'fig-demo' is not legible on the page: it is 16.00 in wide"):
        glue_figure("fig-demo", fig)
    assert not plt.fignum_exists(fig.number)          # refused figures are closed, not leaked


def test_invisible_or_empty_text_does_not_count():
    fig, ax = page_figure()
    ax.text(0, 0, "", fontsize=4)
    hidden = ax.text(0, 0, "hidden", fontsize=4)
    hidden.set_visible(False)
    assert figure_problems(fig) == []
    assert MIN_FONT_PT == 9.0
    plt.close(fig)


@pytest.mark.parametrize("p, text", [(4.567024e-32, "< 1e-4"), (9.99e-5, "< 1e-4"), (1e-4, "1.0e-4"),
                                     (0.00312, "3.1e-3"), (0.0456, "0.046"), (0.57, "0.57"), (1.0, "1"),
                                     (float("nan"), "–")])
def test_p_values_print_alike_and_never_break_over_two_lines(p, text):
    got = p_value(p)
    assert got.replace(NBSP, " ").replace(MINUS, "-") == text
    assert " " not in got and "-" not in got                 # no break opportunity inside a p-value


def test_numbers_and_counts():
    assert number(0.066412) == "0.0664" and number(12) == "12" and number(np.int64(3)) == "3"
    assert number(None) == "–" and number(np.nan) == "–" and number(True) == "yes"
    assert number(1.84e-06, 2) == f"1.8e{MINUS}06"
    assert count(1, "seed") == "1 seed" and count(0, "clip") == "0 clips" and count(3, "is", "are") == "3 are"


def test_markdown_table_renames_selects_and_formats():
    frame = pd.DataFrame({"avg_r": [0.66412, 0.5], "p": [4e-32, 0.2], "system": ["A2E", "A2M2E"], "raw": [1, 2]})
    text = markdown_table(frame, {"system": "system", "avg_r": "avg r (test)", "p": "p (t-test)"},
                          formats={"p": p_value})
    lines = text.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["system", "avg r (test)", "p (t-test)"]
    assert "0.664" in lines[2] and f"<{NBSP}1e{MINUS}4" in lines[2] and "raw" not in text
    assert lines[1].startswith("|:") and lines[1].rstrip("|").endswith(":")     # text left, numbers right
    with pytest.raises(ParameterError, match=r"no column\(s\) \['delta_mae'\]"):
        markdown_table(frame, {"delta_mae": "ΔMAE"})
