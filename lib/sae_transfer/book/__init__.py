"""The book machinery: chapters and their parameters (``chapters``), papermill execution into run directories
(``runner``), the Jupyter Book build and status page (``build``), what a chapter records (``report``), benchmark
records (``bench``), Colab notebooks (``launch``), the introduction's findings (``findings``, ``summary_figure``)
and the PDF. Nothing below this package imports it."""
