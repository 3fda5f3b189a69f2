"""Sphinx extension: part headings in the single-page build that the PDF is printed from.

Sphinx's single-page builder inlines every toctree's documents into the root page and drops the toctree's caption,
so the PDF ran its two parts together with no heading between them, and its outline (written by Chromium from the
headings) listed the chapters of both parts on one level. Here each captioned toctree becomes a section titled by
its caption before it is inlined: the part is a heading, its chapters are one level below it, in the page and in
the PDF's bookmarks. The HTML book (one page per chapter) is left as it is."""

from docutils import nodes
from sphinx import addnodes
from sphinx.util.nodes import make_id


def _parts(app) -> None:
    if app.builder.name != "singlehtml":
        return
    import sphinx.builders.singlehtml as single

    inline = single.inline_all_toctrees

    def inline_with_parts(builder, docnameset, docname, tree, colorfunc, traversed):
        if docname == builder.config.root_doc:
            tree = tree.deepcopy()
            for toctree in list(tree.findall(addnodes.toctree)):
                caption = toctree.get("caption")
                if caption:
                    part = nodes.section(ids=[make_id(app.env, tree, "part", caption)], names=[caption],
                                         classes=["book-part"])
                    part += nodes.title(caption, caption)
                    # Jupyter Book wraps each toctree in a compound node: the section takes the wrapper's place
                    wrapper = toctree.parent if isinstance(toctree.parent, nodes.compound) else toctree
                    wrapper.parent.replace(wrapper, part)
                    part += wrapper
        return inline(builder, docnameset, docname, tree, colorfunc, traversed)

    single.inline_all_toctrees = inline_with_parts


def setup(app):
    app.connect("builder-inited", _parts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
