"""Do SAEs trained on a base language model still work on its finetunes? The computation behind the book.

Layout: ``paths`` and ``io`` (where things live, atomic writes), ``provenance`` (versions, commit, device),
``chapters`` and ``runner`` (parameterised notebooks executed with papermill), ``report`` (numbers and figures
a chapter records), ``zoo`` (the offline model zoo), ``models`` (one loader for model pairs and SAEs).
"""

__version__ = "0.1.0"
