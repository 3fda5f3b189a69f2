"""The runner's failure path: a failing cell names chapter, cell and exception, keeps the partial notebook and
leaves no results.json behind."""

import json

import pytest

from sae_transfer.book.chapters import Chapter, Parameter
from sae_transfer.book.runner import ChapterFailed, command_line, run_chapter

NOTEBOOK = """\
---
kernelspec:
  display_name: Python (sae-transfer)
  language: python
  name: sae-transfer
---

# Failing

```{code-cell} ipython3
:tags: [parameters]

n: int = 1  # a number
run_dir: str = ""
```

```{code-cell} ipython3
from sae_transfer.book.report import Report
rep = Report(run_dir)
rep.number("n_squared", n * n)
```

```{code-cell} ipython3
if n > 1:
    raise ZeroDivisionError("boom at n=%d" % n)
rep.save()
```
"""


@pytest.fixture
def chapter(tmp_path):
    src = tmp_path / "failing.md"
    src.write_text(NOTEBOOK)
    return Chapter("failing", "Failing", src, (Parameter("n", "int", 1, "a number"),))


def test_successful_run_writes_results_with_provenance(chapter, tmp_path):
    out = tmp_path / "ok"
    results = run_chapter(chapter, {"n": 1}, out, progress=False)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["numbers"] == {"n_squared": 1} == results["numbers"]
    meta = on_disk["meta"]
    assert meta["params"] == {"n": 1} and meta["wall_seconds"] > 0 and meta["peak_rss_mb"] > 10
    assert meta["versions"]["torch"].startswith("2.13") and meta["commit"]
    nb = json.loads((out / "failing.ipynb").read_text())
    assert nb["metadata"]["sae_transfer"]["fingerprint"] == meta["fingerprint"]
    tags = [c["metadata"].get("tags", []) for c in nb["cells"]]
    # the injected cell names the scratch directory the run executed in: never on the page
    assert any("injected-parameters" in t and "remove-cell" in t for t in tags)
    assert any("parameters" in t and "hide-input" in t for t in tags)


def test_failing_cell_is_reported_and_leaves_the_good_run_alone(chapter, tmp_path):
    out = tmp_path / "bad"
    run_chapter(chapter, {"n": 1}, out, progress=False)  # a previous good run...
    good = (out / "results.json").read_text()
    with pytest.raises(ChapterFailed) as e:
        run_chapter(chapter, {"n": 3}, out, progress=False)  # ...stays whole; the failure is kept beside it
    msg = str(e.value)
    assert "chapter 'failing' failed in cell" in msg and "ZeroDivisionError: boom at n=3" in msg
    assert (out / "results.json").read_text() == good
    assert not (tmp_path / "bad.failed" / "results.json").exists()
    assert (tmp_path / "bad.failed" / "failing.ipynb").exists()  # partial notebook kept for inspection


def test_command_line_spells_out_non_defaults(chapter):
    assert command_line(chapter, {"n": 1}) == "python -m sae_transfer run failing"
    assert command_line(chapter, {"n": 4}) == "python -m sae_transfer run failing -p n 4"


def test_report_names_are_one_namespace(tmp_path):
    """A table and a figure of one name would be two glue keys of one name: Jupyter Book fails on it."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from sae_transfer.book.report import Report

    rep = Report(tmp_path)
    rep.table("layers", pd.DataFrame({"a": [1.0]}))
    with pytest.raises(ValueError, match="'layers' recorded twice"):
        rep.figure("layers", plt.figure())
    rep.number("n", 1)
    with pytest.raises(ValueError, match="'n' recorded twice"):
        rep.number("n", 2)


def test_a_table_shows_three_significant_digits_and_values_that_would_round_to_zero(tmp_path):
    """Learning rates of 3e-4 and 3e-5 printed as 0.000 on the real family's predict page; #40 asked for three
    significant digits in place of 4-6 decimals."""
    import pandas as pd

    from sae_transfer.book.report import Report

    df = pd.DataFrame({"lr": [0.0, 3e-4, 3e-5], "delta CE": [4.8081, 0.0001, 6.2], "tokens": [1234567, 8, 90],
                       "share": [0.61234, float("nan"), 1234.56]}, index=["a", "b", "c"])
    html = Report(tmp_path).table("cases", df).to_html()
    assert ">0.0003<" in html and ">3e-05<" in html and ">0<" in html  # the column of small values
    assert ">4.81<" in html and ">0.0001<" in html and ">6.20<" in html  # three significant digits, zeros kept
    assert ">1,234,567<" in html and ">8<" in html  # integers whole
    assert ">0.612<" in html and ">1,235<" in html  # a whole part is never cut to three digits
    assert "nan" not in html.lower().replace("nanos", "")  # missing is blank
    assert ">4.8<" in Report(tmp_path / "two").table("cases", df, digits=2).to_html()
    repeated = Report(tmp_path / "r").table("cases", df.set_axis(["a", "a", "b"])).to_html()
    assert ">0.0003<" in repeated  # also where the index repeats a label (the predict page's is a MultiIndex)
