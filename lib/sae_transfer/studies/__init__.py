"""One folder per chapter. Each holds ``measure`` (``measure(setup, ...) -> plain data``, tables, headline
numbers), ``figures`` (plain data in, a Figure out), ``prose`` (the "In short" box from the headline), and
what that study alone needs. A study imports the layers below it, never another study."""
