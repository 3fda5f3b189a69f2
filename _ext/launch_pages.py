"""Sphinx extension: launch buttons (Colab) on chapter pages only. The introduction and the workshop page are
executed notebooks too, but they read the book's own chapter runs and benchmark records, so a fresh runtime has
nothing to launch; ``launch/`` holds copies of the chapter pages alone."""

NO_LAUNCH = ("book/intro", "book/workshop")


def _drop_launch_buttons(app, pagename, templatename, context, doctree):
    if pagename in NO_LAUNCH and "header_buttons" in context:
        context["header_buttons"][:] = [b for b in context["header_buttons"] if b.get("label") != "launch-buttons"]


def setup(app):
    app.connect("html-page-context", _drop_launch_buttons, priority=502)  # after the theme adds them (501)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
