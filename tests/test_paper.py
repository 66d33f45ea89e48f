"""Figures for a paper (cometa.results.paper): sizes, fonts, colours and titles of the restyled figures."""
from __future__ import annotations

import pytest

import cometa
from cometa.results import paper


@pytest.fixture(scope="module")
def run(tiny_run):
    return cometa.open_run(tiny_run)


def test_style_figure_for_a_paper(run):
    fig = run.eer_per_round()
    styled = paper.style_figure(fig, width=500, font_size=9, font_family="Times", colors={"cometa": "#000000"})
    assert styled.layout.width == 500 and styled.layout.height == round(fig.layout.height * 500 / 900)
    assert styled.layout.font.size == 9 and styled.layout.font.family == "Times" and styled.layout.title.text is None
    for a, b in zip(fig.data, styled.data):
        if a.legendgroup == "cometa":
            assert b.line.color == "#000000"
        else:
            assert b.line.color == a.line.color
    assert fig.layout.width is None and fig.layout.title.text  # the source figure is untouched
    assert paper.style_figure(fig, width=400, height=300, titles=True).layout.title.text == fig.layout.title.text
    assert paper.parse_colors("baseline:#111111; cometa=rgb(1, 2, 3)") == {"baseline": "#111111",
                                                                          "cometa": "rgb(1, 2, 3)"}
    with pytest.raises(ValueError, match="not name:colour"):
        paper.parse_colors("cometa")
