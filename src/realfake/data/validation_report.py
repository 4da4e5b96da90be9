"""A validation report a person can read offline: one self-contained HTML page (no script, no
CDN, no icon font) with every expectation of every suite, PASS or FAIL in words, and the counts
behind it (how many rows failed out of how many, or the value observed), plus examples of failing
images. Great Expectations' Data Docs are built beside it; their index needs a CDN to list results.
"""

from __future__ import annotations

import html
from typing import Any

#: Failing rows shown per expectation.
EXAMPLES = 5


def observed(result: dict[str, Any]) -> str:
    """What an expectation measured, in words: "3 of 3,000 rows fail" or "observed 0.04"."""
    r = result.get("result") or {}
    info = result.get("exception_info") or {}
    if info.get("raised_exception"):
        return f"could not be evaluated: {info.get('exception_message')}"
    if "unexpected_count" in r:
        n, total = r["unexpected_count"], r.get("element_count")
        return f"{n:,} of {total:,} rows fail" if total is not None else f"{n:,} rows fail"
    if "observed_value" in r:
        return f"observed {r['observed_value']}"
    return "no count reported"


def examples(result: dict[str, Any]) -> list[str]:
    """Up to :data:`EXAMPLES` failing rows, each as "path (column=value, ...)"."""
    out = []
    for item in ((result.get("result") or {}).get("partial_unexpected_index_list") or [])[:EXAMPLES]:
        if isinstance(item, dict):
            key = item.get("path", item.get("split"))
            rest = ", ".join(f"{k}={v}" for k, v in item.items() if k != "path")
            out.append(f"{key} ({rest})" if rest else str(key))
    return out


def name(result: dict[str, Any]) -> str:
    """The expectation's readable name (its ``meta.name``), else its type."""
    cfg = result.get("expectation_config") or {}
    return (cfg.get("meta") or {}).get("name") or cfg.get("type", "expectation")


def render(results: dict[str, dict[str, Any]], summary: dict[str, Any], dataset: str) -> str:
    """The whole page for GE's results by suite (``to_json_dict`` form) and the stage's summary."""
    e = html.escape
    failed = summary.get("failed_expectations", 0)
    verdict = "PASSED" if summary.get("success") else "FAILED"
    head = (f"<h1>Data validation {verdict}</h1><p>{e(dataset)}: {summary.get('expectations', 0)} expectations, "
            f"{failed} not met; {summary.get('images_scanned', 0):,} images scanned, "
            f"{summary.get('validated_images', 0):,} validated, {summary.get('dropped_images', 0):,} dropped "
            "(listed in dropped.csv).</p>")
    sections = []
    for suite, vr in results.items():
        rows = []
        for res in vr.get("results", []):
            ok = bool(res.get("success"))
            cfg = res.get("expectation_config") or {}
            kwargs = {k: v for k, v in (cfg.get("kwargs") or {}).items() if k != "batch_id"}
            shown = "".join(f"<li>{e(x)}</li>" for x in examples(res))
            rows.append(
                f"<tr class=\"{'pass' if ok else 'fail'}\"><td class=\"status\">{'PASS' if ok else 'FAIL'}</td>"
                f"<td>{e(name(res))}<div class=\"check\">{e(cfg.get('type', ''))} {e(str(kwargs))}</div></td>"
                f"<td>{e(observed(res))}{f'<ul>{shown}</ul>' if shown else ''}</td></tr>"
            )
        n_fail = sum(not r.get("success") for r in vr.get("results", []))
        sections.append(f"<h2>Suite <code>{e(suite)}</code>: {len(rows) - n_fail} of {len(rows)} met</h2>"
                        "<table><tr><th>result</th><th>expectation</th><th>observed</th></tr>"
                        f"{''.join(rows)}</table>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>realfake: data validation {verdict}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px; color: #1d1d1f; }}
table {{ border-collapse: collapse; width: 100%; margin-bottom: 24px; }}
th, td {{ text-align: left; padding: 6px 10px; border-bottom: 1px solid #ddd; vertical-align: top; }}
.status {{ font-weight: 700; width: 4em; }}
.pass .status {{ color: #1b6e3a; }} .fail .status {{ color: #b3261e; }} .fail {{ background: #fdecea; }}
.check {{ color: #5f6368; font-size: 12px; font-family: monospace; }}
ul {{ margin: 4px 0; padding-left: 18px; font-size: 13px; }}
</style></head><body>
{head}
{''.join(sections)}
<p>Great Expectations' own Data Docs: <a href="data_docs/index.html">data_docs/index.html</a> (its index table
needs the internet); the raw results: <a href="results.json">results.json</a>.</p>
</body></html>
"""
