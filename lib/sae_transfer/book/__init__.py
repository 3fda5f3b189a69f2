"""The book machinery: chapters and their parameters (``chapters``), papermill execution into run directories
(``runner``), the Jupyter Book build and status page (``build``), what a chapter records (``report``), run
provenance (``provenance``) and benchmark records (``bench``). Science modules never import this package."""
