"""Reading rendered article HTML in tests: the start tags and their attributes, in order."""

from __future__ import annotations

from html.parser import HTMLParser


class Elements(HTMLParser):
    """`Elements(markup).elements`: (tag, attributes) of every start tag, in document order."""

    def __init__(self, markup: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag
