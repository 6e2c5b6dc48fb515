"""Cell-by-cell comparison of executed notebooks: what counts as a difference and what is volatile by nature."""
from __future__ import annotations

import copy

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from dsenv.compare import compare


def nb(*outputs_per_cell, sources=None):
    cells = [new_markdown_cell("# title")]
    for i, outputs in enumerate(outputs_per_cell):
        cell = new_code_cell(sources[i] if sources else f"cell_{i}()", execution_count=i + 1)
        cell.outputs = outputs
        cells.append(cell)
    return new_notebook(cells=cells)


def stream(text, name="stdout"):
    return new_output("stream", name=name, text=text)


def result(data, count=1):
    return new_output("execute_result", data=data, execution_count=count)


def test_identical_runs_are_equal_whatever_the_execution_counts_and_metadata():
    a = nb([stream("hello\n")], [result({"text/plain": "42"}, 2)])
    b = copy.deepcopy(a)
    b.cells[2].execution_count = 17
    b.cells[2].outputs[0]["execution_count"] = 17
    b.cells[1].metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00"}
    assert compare(a, b).equal


def test_a_changed_value_is_reported_in_its_cell_with_a_short_diff():
    a = nb([stream("0.1234\n")], [stream("same\n")])
    b = nb([stream("0.9876\n")], [stream("same\n")])
    report = compare(a, b)
    assert [d.cell for d in report.differences] == [1]
    assert "0.1234" in report.differences[0].detail and "0.9876" in report.differences[0].detail


def test_memory_addresses_and_durations_are_volatile():
    a = nb([result({"text/plain": "<Foo object at 0x7f3a2b1c0d90>"})],
           [stream("[CV 1/5] END C=1;, score=0.9 total time=   0.1s\nWall time: 12.3 ms\n")])
    b = nb([result({"text/plain": "<Foo object at 0x7f99aa11bb22>"})],
           [stream("[CV 1/5] END C=1;, score=0.9 total time=   0.4s\nWall time: 9.1 ms\n")])
    assert compare(a, b).equal


def test_stream_chunks_split_differently_are_the_same_text():
    a = nb([stream("line 1\nline 2\n")])
    b = nb([stream("line 1\n"), stream("line 2\n")])
    assert compare(a, b).equal


def test_rtol_allows_float_noise_but_not_other_text():
    a = nb([stream("loss 0.30000000\n")])
    b = nb([stream("loss 0.30000001\n")])
    assert not compare(a, b).equal
    assert compare(a, b, rtol=1e-6).equal
    c = nb([stream("gain 0.30000001\n")])
    assert not compare(a, c, rtol=1e-6).equal


def test_images_are_compared_by_hash_with_a_note():
    a = nb([new_output("display_data", data={"image/png": "AAAA", "text/plain": "<Figure>"})])
    b = nb([new_output("display_data", data={"image/png": "BBBB", "text/plain": "<Figure>"})])
    report = compare(a, b)
    assert [d.kind for d in report.differences] == ["image"]
    assert report.notes and "image/png" in report.notes[0]
    assert compare(a, copy.deepcopy(a)).equal


def test_widget_model_ids_are_ignored():
    a = nb([new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "abc"},
                                             "text/plain": "IntSlider(value=3)"})])
    b = nb([new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "xyz"},
                                             "text/plain": "IntSlider(value=3)"})])
    assert compare(a, b).equal


def _frame(fit_time: str, score: str) -> dict:
    html = ('<table border="1" class="dataframe"><thead><tr><th></th><th>mean_fit_time</th><th>mean_test_score</th>'
            f'</tr></thead><tbody><tr><th>0</th><td>{fit_time}</td><td>{score}</td></tr></tbody></table>')
    return {"text/html": html, "text/plain": f"   mean_fit_time  mean_test_score\n0  {fit_time}  {score}"}


def test_dataframe_timing_columns_are_ignored_but_other_columns_are_not():
    a = nb([result(_frame("0.000663", "0.91"))])
    b = nb([result(_frame("0.000349", "0.91"))])
    assert compare(a, b).equal
    c = nb([result(_frame("0.000663", "0.95"))])
    assert not compare(a, c).equal


def test_a_changed_source_or_a_missing_cell_is_a_difference():
    a = nb([stream("x\n")], sources=["print('x')"])
    b = nb([stream("x\n")], sources=["print('y')"])
    assert [d.kind for d in compare(a, b).differences] == ["source"]
    c = nb([stream("x\n")], [stream("y\n")])
    assert "structure" in [d.kind for d in compare(a, c).differences]


def test_an_error_output_differs_from_a_result():
    a = nb([result({"text/plain": "1"})])
    b = nb([new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])])
    assert not compare(a, b).equal
