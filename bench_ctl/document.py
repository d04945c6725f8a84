"""A report as a list of blocks, rendered to Markdown and to HTML from the same content."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list  # str or (str, [str, ...]) for a nested list
    loose: bool = False  # a blank line between items, as the seed's Interpretation has


@dataclass
class Table:
    frame: pd.DataFrame
    floatfmt: str = ".2f"


@dataclass
class Image:
    title: str
    filename: str
    data_uri: str | None = None


@dataclass
class Document:
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> None:
        self.blocks.extend(blocks)


def to_markdown(doc: Document) -> str:
    parts: list[str] = []
    for b in doc.blocks:
        if isinstance(b, Heading):
            parts.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            parts.append(b.text)
        elif isinstance(b, Bullets):
            lines = []
            for item in b.items:
                text, sub = (item, []) if isinstance(item, str) else item
                entry = [f"- {text}"] + [f"  - {s}" for s in sub]
                lines.append("\n".join(entry))
            parts.append(("\n\n" if b.loose else "\n").join(lines))
        elif isinstance(b, Table):
            parts.append(b.frame.to_markdown(index=False, floatfmt=b.floatfmt))
        elif isinstance(b, Image):
            parts.append(f"![{b.title}]({b.filename})")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#1b1f24}
h1{border-bottom:2px solid #d0d7de;padding-bottom:.3em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:1em 0;font-size:.85em;max-width:100%}
th,td{border:1px solid #d0d7de;padding:4px 6px;text-align:right}
th{background:#f6f8fa;overflow-wrap:anywhere;vertical-align:bottom;min-width:3.5em}
td{white-space:nowrap}
td.text{text-align:left}img{max-width:100%;border:1px solid #d0d7de;margin:.5em 0}
figure{margin:1em 0}figcaption{color:#57606a;font-size:.9em}
"""


def to_html(doc: Document, title: str) -> str:
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
           f"<style>{CSS}</style></head><body>"]
    for b in doc.blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>")
            for item in b.items:
                text, sub = (item, []) if isinstance(item, str) else item
                inner = "".join(f"<li>{_inline(s)}</li>" for s in sub)
                out.append(f"<li>{_inline(text)}" + (f"<ul>{inner}</ul>" if inner else "") + "</li>")
            out.append("</ul>")
        elif isinstance(b, Table):
            fmt = "{:" + b.floatfmt + "}"
            out.append(b.frame.to_html(index=False, float_format=fmt.format, na_rep="—", border=0, escape=True))
        elif isinstance(b, Image):
            src = b.data_uri or b.filename
            out.append(f"<figure><img alt='{html.escape(b.title)}' src='{src}'><figcaption>{html.escape(b.title)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)
