"""A report as a list of blocks, rendered to Markdown and to HTML from the same content."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field

import pandas as pd

from .tables import INTEGER_COLUMNS

MISSING = "—"  # a missing value in every table, Markdown and HTML alike (never nan)


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
    md_items: int | None = None  # report.md shows this many (report.html all)


@dataclass
class Table:
    frame: pd.DataFrame
    floatfmt: str = ".2f"
    md_rows: int | None = None  # report.md shows this many rows (report.html all, paged and sortable)
    integers: bool = True  # whole-number columns (INTEGER_COLUMNS) without decimals; the seed's table keeps 8.00


@dataclass
class HtmlOnly:
    """Blocks that report.html holds and report.md only points to (a large sweep's every table)."""
    blocks: list


MORE_ROWS = "every row is in results.csv and report.html"


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


def _whole(frame: pd.DataFrame) -> pd.DataFrame:
    """Float columns of INTEGER_COLUMNS that hold whole numbers, as integers (8, not 8.00)."""
    out = frame.copy()
    for col in out.columns:
        if col in INTEGER_COLUMNS and pd.api.types.is_float_dtype(out[col]) and (out[col].dropna() % 1 == 0).all():
            out[col] = out[col].astype("Int64")
    return out


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".2f", integers: bool = True) -> str:
    """A table in Markdown: missing values as MISSING, whole-number columns without decimals."""
    out = _whole(frame) if integers else frame
    # A number column stays aligned as numbers even where every value is missing.
    align = ["decimal" if pd.api.types.is_numeric_dtype(out[c]) and not pd.api.types.is_bool_dtype(out[c]) else "left"
             for c in out.columns]
    out = out.astype(object).where(out.notna(), None)
    return out.to_markdown(index=False, floatfmt=floatfmt, missingval=MISSING, colalign=align)


def to_markdown(doc: Document) -> str:
    parts: list[str] = []
    for b in doc.blocks:
        if isinstance(b, HtmlOnly):
            continue
        if isinstance(b, Heading):
            parts.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            parts.append(b.text)
        elif isinstance(b, Bullets):
            lines = []
            items = b.items if b.md_items is None else b.items[:b.md_items]
            for item in items:
                text, sub = (item, []) if isinstance(item, str) else item
                entry = [f"- {text}"] + [f"  - {s}" for s in sub]
                lines.append("\n".join(entry))
            if len(items) < len(b.items):
                lines.append(f"- ... and {len(b.items) - len(items)} more ({MORE_ROWS.replace('row', 'item')})")
            parts.append(("\n\n" if b.loose else "\n").join(lines))
        elif isinstance(b, Table):
            shown = b.frame if b.md_rows is None else b.frame.head(b.md_rows)
            parts.append(markdown_table(shown, b.floatfmt, b.integers))
            if len(shown) < len(b.frame):
                parts.append(f"({len(shown)} of {len(b.frame)} rows shown; {MORE_ROWS}.)")
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
.paged th{cursor:pointer}.paged th:hover{background:#eaeef2}.pager{font-size:.85em;color:#57606a}
.pager button{margin:0 .3em}
"""

# Tables above STATIC_ROWS rows travel as JSON and are drawn by this script, a page at a time,
# sorted by a click on a column (again: the other way). No network: nothing is fetched.
STATIC_ROWS = 200
PAGE_ROWS = 100
PAGER_JS = r"""
(function(){
function fmt(v,f){if(v===null||v===undefined)return '\u2014';if(typeof v!=='number')return String(v);
 var m=/\.(\d+)([fg])/.exec(f||'');if(!m||Number.isInteger(v)&&m[2]==='g')return String(v);
 return m[2]==='f'?v.toFixed(+m[1]):String(+v.toPrecision(+m[1]));}
document.querySelectorAll('div.paged').forEach(function(box){
 var d=JSON.parse(box.querySelector('script').textContent),rows=d.rows,page=0,key=-1,dir=1,per=d.page;
 var table=document.createElement('table'),info=document.createElement('div');info.className='pager';
 var prev=document.createElement('button'),next=document.createElement('button'),span=document.createElement('span');
 prev.textContent='previous';next.textContent='next';info.append(prev,span,next);
 function draw(){var n=Math.max(1,Math.ceil(rows.length/per));page=Math.min(Math.max(page,0),n-1);
  var h='<thead><tr>'+d.columns.map(function(c,i){return '<th data-i="'+i+'">'+c.replace(/[<&]/g,function(x){return x=='<'?'&lt;':'&amp;'})
   +(i===key?(dir>0?' \u25b2':' \u25bc'):'')+'</th>'}).join('')+'</tr></thead><tbody>';
  rows.slice(page*per,(page+1)*per).forEach(function(r){h+='<tr>'+r.map(function(v){var t=fmt(v,d.fmt);
   return '<td'+(typeof v==='string'?' class="text"':'')+'>'+t.replace(/[<&]/g,function(x){return x=='<'?'&lt;':'&amp;'})+'</td>'}).join('')+'</tr>'});
  table.innerHTML=h+'</tbody>';span.textContent=' rows '+(rows.length?page*per+1:0)+'\u2013'+Math.min(rows.length,(page+1)*per)+' of '+rows.length+' ';
  table.querySelectorAll('th').forEach(function(th){th.onclick=function(){var i=+th.dataset.i;dir=(i===key)?-dir:1;key=i;
   rows.sort(function(a,b){var x=a[i],y=b[i];if(x===y)return 0;if(x===null)return 1;if(y===null)return -1;return (x<y?-1:1)*dir});page=0;draw();}});}
 prev.onclick=function(){page--;draw()};next.onclick=function(){page++;draw()};
 box.append(info,table);draw();});
})();
"""


def _paged_table(b: Table) -> str:
    """A large table as JSON for PAGER_JS (pandas writes the JSON in C: fast at any size)."""
    values = b.frame.to_json(orient="values", double_precision=10)
    columns = json.dumps([str(c) for c in b.frame.columns])
    data = f'{{"columns":{columns},"fmt":{json.dumps(b.floatfmt)},"page":{PAGE_ROWS},"rows":{values}}}'
    return f"<div class='paged'><script type='application/json'>{data.replace('</', '<' + chr(92) + '/')}</script></div>"


def to_html(doc: Document, title: str) -> str:
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
           f"<style>{CSS}</style></head><body>"]
    blocks = [x for b in doc.blocks for x in (b.blocks if isinstance(b, HtmlOnly) else [b])]
    paged = False
    for b in blocks:
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
        elif isinstance(b, Table) and len(b.frame) > STATIC_ROWS:
            out.append(_paged_table(b))
            paged = True
        elif isinstance(b, Table):
            fmt = "{:" + b.floatfmt + "}"
            frame = _whole(b.frame) if b.integers else b.frame
            out.append(frame.to_html(index=False, float_format=fmt.format, na_rep=MISSING, border=0, escape=True))
        elif isinstance(b, Image):
            src = b.data_uri or b.filename
            out.append(f"<figure><img alt='{html.escape(b.title)}' src='{src}'><figcaption>{html.escape(b.title)}</figcaption></figure>")
    if paged:
        out.append(f"<script>{PAGER_JS}</script>")
    out.append("</body></html>")
    return "\n".join(out)
