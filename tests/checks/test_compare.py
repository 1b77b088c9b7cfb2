"""Executed outputs against stored ones: volatile text, numbers with tolerance, images, errors."""

from __future__ import annotations

import copy

import pytest

from panbinder.checks.compare import OutputComparison
from panbinder.checks.normalise import normalise

from .material import error, figure, image, notebook, result, stderr, stdout


@pytest.fixture
def comparison() -> OutputComparison:
    return OutputComparison()


def test_a_notebook_compared_with_itself_is_the_same(comparison):
    nb = notebook([stdout("mean 1.25\n"), result("array([1, 2, 3])")], "text", [image(figure())])
    found = comparison.compare_notebooks("a.ipynb", nb, copy.deepcopy(nb))
    assert found.same and found.diff == ""


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("<Detector object at 0x7f3a2b1c0d10>", "<Detector object at 0x7fe0aa01c2b8>"),
        ("written at 2026-11-30T02:14:07.331+00:00\n", "written at 2026-12-02T02:11:59.004+00:00\n"),
        ("run on Mon Nov 30 02:14:07 UTC 2026", "run on Wed Dec  2 02:11:59 UTC 2026"),
        ("saved /tmp/tmpa1b2c3d4/frames.h5\n", "saved /tmp/tmpz9y8x7w6/frames.h5\n"),
        (
            "CPU times: user 12 ms, sys: 3 ms, total: 15 ms\nWall time: 15.2 ms\n",
            "CPU times: user 40 ms\nWall time: 1.1 s\n",
        ),
        (
            "1.23 ms ± 4.5 µs per loop (mean ± std. dev. of 7 runs, 1,000 loops each)",
            "2.01 ms ± 9 µs per loop (mean ± std. dev. of 7 runs, 100 loops each)",
        ),
        ("fit converged, took 3.2 s\n", "fit converged, took 12.75 s\n"),
    ],
)
def test_volatile_text_is_not_a_difference(comparison, before, after):
    stored, executed = notebook([stdout(before)]), notebook([stdout(after)])
    assert comparison.compare_notebooks("a.ipynb", stored, executed).same


def test_a_duration_that_is_data_is_compared():
    """'exposure 10 s' is a measurement, not a timing: it is not normalised away."""
    assert normalise("exposure 10 s") == "exposure 10 s"
    comparison = OutputComparison()
    found = comparison.compare_notebooks(
        "a.ipynb", notebook([stdout("exposure 10 s\n")]), notebook([stdout("exposure 20 s\n")])
    )
    assert [d.kind for d in found.differences] == ["number"]


def test_numbers_within_tolerance_pass_and_outside_fail_naming_both_values(comparison):
    stored = notebook([stdout("peak at 3.14159265 eV, width 0.25\n")])
    close = notebook([stdout("peak at 3.14159266 eV, width 0.25\n")])  # 3e-9 relative
    far = notebook([stdout("peak at 3.14200000 eV, width 0.25\n")])
    assert comparison.compare_notebooks("fit.ipynb", stored, close).same
    found = comparison.compare_notebooks("fit.ipynb", stored, far)
    [difference] = found.differences
    assert (difference.kind, difference.cell, difference.cell_id) == ("number", 0, "cell-0")
    assert "3.14159265 became 3.14200000" in difference.detail
    assert "3.14159265" in difference.stored and "3.14200000" in difference.executed
    assert "3.14159265" in found.diff and "3.14200000" in found.diff and "cell 0" in found.diff


def test_the_tolerance_is_a_setting():
    stored, executed = notebook([result("0.5001")]), notebook([result("0.5002")])
    assert not OutputComparison().compare_notebooks("a", stored, executed).same
    assert OutputComparison(rel_tol=1e-3).compare_notebooks("a", stored, executed).same


def test_changed_words_are_a_text_difference(comparison):
    found = comparison.compare_notebooks(
        "a", notebook([stdout("converged\n")]), notebook([stdout("diverged\n")])
    )
    assert [(d.kind, d.stored, d.executed) for d in found.differences] == [("text", "converged", "diverged")]


def test_stream_chunks_are_joined_and_stderr_is_ignored_by_default():
    stored = notebook([stdout("a = 1\nb = 2\n"), stderr("Warning: old\n")])
    executed = notebook([stdout("a = 1\n"), stderr("Warning: new\n"), stdout("b = 2\n")])
    assert OutputComparison().compare_notebooks("a", stored, executed).same
    found = OutputComparison(compare_stderr=True).compare_notebooks("a", stored, executed)
    assert [d.kind for d in found.differences] == ["text"]


def test_a_re_rendered_identical_figure_passes(comparison):
    stored, again = figure(compress=9, meta="matplotlib 3.9"), figure(compress=1, meta="matplotlib 3.10")
    assert stored != again  # different bytes, same pixels
    assert comparison.compare_notebooks("fig.ipynb", notebook([image(stored)]), notebook([image(again)])).same


def test_a_changed_figure_fails_with_the_fraction_of_changed_pixels(comparison):
    found = comparison.compare_notebooks(
        "fig.ipynb", notebook([image(figure())]), notebook([image(figure(changed=True))])
    )
    [difference] = found.differences
    assert difference.kind == "image" and "% of pixels changed" in difference.detail
    fraction = float(difference.detail.split("%")[0]) / 100
    assert 0.03 < fraction < 0.2  # the red box alone is 36x26 of 200x120 pixels: 3.9 %
    assert "image/png" in found.diff and "cell 0" in found.diff


def test_a_resized_figure_names_both_sizes(comparison):
    found = comparison.compare_notebooks(
        "f", notebook([image(figure())]), notebook([image(figure(size=(210, 120)))])
    )
    assert "200x120 to 210x120" in found.differences[0].detail


def test_a_cell_that_raised_is_named_and_the_cells_after_it_are_not_compared(comparison):
    stored = notebook([stdout("loaded\n")], [stdout("fitted\n")], [stdout("plotted\n")])
    executed = notebook([stdout("loaded\n")], [error("KeyError", "'energy'")], [])
    found = comparison.compare_notebooks("a.ipynb", stored, executed)
    assert [(d.kind, d.cell, d.executed) for d in found.differences] == [("error", 1, "KeyError: 'energy'")]


def test_an_expected_error_stored_with_the_notebook_is_no_difference(comparison):
    stored = notebook([error("ValueError", "negative counts")])
    assert comparison.compare_notebooks("a", stored, copy.deepcopy(stored)).same


def test_an_error_in_a_cell_stored_without_outputs_is_still_caught(comparison):
    stored = notebook([], [stdout("done\n")])
    executed = notebook([error("ImportError", "no module named h5py")], [])
    found = comparison.compare_notebooks("a", stored, executed)
    assert [(d.kind, d.cell) for d in found.differences] == [("error", 0)]


def test_missing_outputs_and_a_different_number_of_results(comparison):
    found = comparison.compare_notebooks(
        "a", notebook([stdout("x\n")], [result("1")]), notebook([], [result("1"), result("2")])
    )
    assert [(d.kind, d.cell) for d in found.differences] == [("missing", 0), ("outputs", 1)]


def test_long_values_are_shortened():
    long = "value " * 200
    found = OutputComparison(shown_chars=50).compare_notebooks(
        "a", notebook([stdout(long)]), notebook([stdout(long + "x")])
    )
    assert len(found.differences[0].stored) == 50 and found.differences[0].stored.endswith("…")


def test_integers_are_compared_exactly_and_padding_around_numbers_is_layout(comparison):
    counts = comparison.compare_notebooks(
        "a", notebook([stdout("events: 1000000\n")]), notebook([stdout("events: 1000001\n")])
    )
    assert [(d.kind, d.detail) for d in counts.differences] == [("number", "1000000 became 1000001")]
    stored = notebook([result("array([1.        , 2.00000001])")])
    executed = notebook([result("array([1.        , 2.00000002])")])
    assert comparison.compare_notebooks("a", stored, executed).same
    padded = notebook([result("   energy  counts\n0     1.5      10\n")])
    repadded = notebook([result("       energy  counts\n0  1.5000001      10\n")])
    assert comparison.compare_notebooks("a", padded, repadded).same
