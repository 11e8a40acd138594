"""Great Expectations Data Docs pages for kept validation results, made to work with no network.

The pages are rendered by GX's own Data Docs renderer (``ValidationResultsPageRenderer`` and its
Jinja page view). GX's page templates load bootstrap, jQuery, vega and fonts from public CDNs and
its logo from S3; here those templates are replaced by local ones (GX's bundled stylesheet plus a
small one of ours, no scripts), and every remaining link that is not an anchor within the page or
the link back to the run summary is removed. A page therefore never references the network.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

REPORT_CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#222}
.container-fluid{padding:1em 2em}.row{display:flex;flex-wrap:wrap;gap:1em}
.col-lg-2{flex:0 0 14em}.col-md-10{flex:1 1 40em;min-width:0}
table{border-collapse:collapse;margin:.5em 0;width:100%}th,td{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top}.card{border:1px solid #ddd;border-radius:4px;margin:0 0 1em;padding:.5em 1em}
.text-danger{color:#a00}.text-success{color:#060}.collapse{display:block}.d-none{display:none}
.ge-nav{background:#234;color:#fff;padding:.6em 2em}.ge-nav a{color:#fff}
code,pre{background:#f4f4f4;padding:0 .2em}
.fas.fa-check-circle::before,.fas.fa-check::before{content:"\\2714";color:#060}
.fas.fa-times::before{content:"\\2716";color:#a00}
"""

# Templates of GX's Data Docs that reference the network, replaced by local ones.
OVERRIDES: dict[str, str] = {
    "page.j2": """<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0"/>
<title>Validation: {{ page_title | default('Great Expectations validation') }}</title>
<style>{% include 'data_docs_default_styles.css' %}</style>
<style>{{ report_css }}</style>
</head><body>
{% include 'top_navbar.j2' %}
<div class="container-fluid pt-4 pb-4 pl-5 pr-5"><div class="row">
{% include 'sidebar.j2' %}
<div class="col-md-10 col-lg-10 col-xs-12 pl-md-4 pr-md-3">
{% for section in sections %}{% set section_loop = loop -%}{% include 'section.j2' %}{% endfor %}
</div></div></div>
</body></html>
""",
    "js_script_imports.j2": "",
    "favicon.j2": "",
    "cloud-footer.j2": "",
    "ge_info.j2": "",
    "page_action_card.j2": "",
    "top_navbar.j2": """<nav class="ge-nav"><a href="{{ back_link }}">&larr; Run summary</a>
 &middot; Great Expectations validation result (Data Docs)</nav>
""",
}

_ATTRIBUTE = re.compile(r"""\s(href|src)\s*=\s*("[^"]*"|'[^']*')""", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*['"]?[a-z]+:[^)]*\)""", re.IGNORECASE)


def strip_links(page: str, allowed: frozenset[str]) -> str:
    """Remove every ``href``/``src`` that is not an in-page anchor or in ``allowed``, and CSS URLs."""
    def keep(match: re.Match[str]) -> str:
        value = match.group(2)[1:-1]
        return match.group(0) if value.startswith("#") or value in allowed else ""
    return _CSS_URL.sub("none", _ATTRIBUTE.sub(keep, page))


def render_validation_page(gx_result: Mapping[str, Any], back_link: str = "../index.html") -> str:
    """The Data Docs page of one GX validation result (as kept in JSON), network-free.

    Raises:
        ValueError: when ``gx_result`` is not a GX suite validation result.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        expectationSuiteValidationResultSchema,
    )
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView
    from jinja2 import ChoiceLoader, DictLoader

    if "results" not in gx_result or "suite_name" not in gx_result:
        raise ValueError("gx_result: not a Great Expectations suite validation result")
    loaded = expectationSuiteValidationResultSchema.load(dict(gx_result))
    result = loaded if isinstance(loaded, ExpectationSuiteValidationResult) \
        else ExpectationSuiteValidationResult(**loaded)
    document = ValidationResultsPageRenderer().render(result)
    view = DefaultJinjaPageView()
    assert view.env.loader is not None
    view.env.loader = ChoiceLoader([DictLoader(OVERRIDES), view.env.loader])
    page = view.render(document, back_link=back_link, report_css=REPORT_CSS,
                       page_title=str(gx_result.get("suite_name")))
    return strip_links(page, frozenset({back_link}))
