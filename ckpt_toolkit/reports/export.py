"""HTML export of executed report notebooks (nbconvert), self-contained and safe to share.

* no code cells or prompts by default (``include_code=True`` keeps them);
* images are embedded (base64 PNG / inline SVG), so the HTML is one file;
* the ``ckpt_report`` template (``templates/ckpt_report``) is nbconvert's lab template with every
  script that would load from a CDN removed (require.js, MathJax, Mermaid, the widget manager),
  so the report opens with the network off; :func:`external_urls` checks it;
* text coming from run names and manifests is escaped: stream and plain-text outputs are escaped
  by nbconvert, tables are rendered with escaping by :mod:`ckpt_toolkit.reports.figures`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

TEMPLATES = Path(__file__).with_name("templates")
#: nbconvert warns about every figure without alt text; the reports' figures carry titles.
_QUIET = logging.getLogger("ckpt_toolkit.reports.nbconvert")
_QUIET.setLevel(logging.ERROR)
TEMPLATE_NAME = "ckpt_report"

_URL_ATTR = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]+)""", re.I)
_CSS_URL = re.compile(r"""@import\s+(?:url\()?["']?((?:https?:)?//[^"')\s]+)""", re.I)


def external_urls(html: str) -> list[str]:
    """Every ``src``/``href``/CSS ``@import`` in ``html`` that points at the network."""
    return _URL_ATTR.findall(html) + _CSS_URL.findall(html)


def notebook_to_html(
    notebook: str | Path,
    out_path: str | Path | None = None,
    *,
    include_code: bool = False,
    footer: str = "",
) -> Path:
    """Render an executed notebook to a self-contained HTML file next to it (or ``out_path``).

    ``footer`` (plain text, escaped) is written at the bottom of the page, e.g. the parameters.
    """
    import nbformat
    from nbconvert import HTMLExporter

    nb_path = Path(notebook)
    nb = nbformat.read(nb_path, as_version=4)
    # widget state would only render with the CDN widget manager; the HTML shows static output
    nb.metadata.pop("widgets", None)
    exporter = HTMLExporter(
        template_name=TEMPLATE_NAME,
        extra_template_basedirs=[str(TEMPLATES)],
        exclude_input=not include_code,
        exclude_input_prompt=not include_code,
        exclude_output_prompt=True,
        embed_images=True,
        log=_QUIET,
    )
    resources = {"metadata": {"name": nb_path.stem}, "ckpt_meta": footer}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    out = Path(out_path) if out_path is not None else nb_path.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out
