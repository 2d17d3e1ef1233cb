"""The validation reports: validation.json (machine-readable), validation.html (one
self-contained page a person can open from a pipeline's artifacts: inline CSS, no
scripts, no external assets) and quarantine.json (which clips were left out, why)."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asdflow.validation.validate import ExpectationResult, ValidationResult

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3} .pass{color:#17702e;font-weight:600} .fail{color:#b00020;font-weight:600}
.banner{padding:.6em 1em;border-radius:4px;display:inline-block}
.banner.pass{background:#e6f4ea} .banner.fail{background:#fdecea}
code{font-size:.95em} ul{margin:0;padding-left:1.2em}
"""


def write_json(result: "ValidationResult", path: Path) -> Path:
    """Everything but the kept manifest's records (saved as manifest.csv when quarantining)."""
    data = result.model_dump(mode="json", exclude={"kept_manifest"})
    data["kept_clips"] = len(result.kept_manifest.records)
    path.write_text(json.dumps(data, indent=2))
    return path


def write_quarantine(result: "ValidationResult", path: Path) -> Path:
    data = {
        "n_clips": result.n_clips,
        "n_kept": result.n_kept,
        "n_quarantined": len(result.quarantined),
        "note": "nothing was deleted or moved; these clips are only left out of the kept manifest",
        "quarantined": [q.model_dump(mode="json") for q in result.quarantined],
    }
    path.write_text(json.dumps(data, indent=2))
    return path


def write_html(result: "ValidationResult", path: Path) -> Path:
    verdict = "PASSED" if result.success else "FAILED"
    css_class = "pass" if result.success else "fail"
    summary = (
        f"{result.n_clips} clips, {len(result.failing_clips)} failing"
        + (f", {len(result.quarantined)} quarantined, {result.n_kept} kept" if result.quarantine else "")
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>asdflow data validation</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>asdflow data validation</h1>",
        f'<p class="banner {css_class}">{verdict}: {escape(summary)}'
        + (" (quarantine on)" if result.quarantine else "")
        + "</p>",
        "<h2>Expectations</h2>",
        _expectation_table(result.expectations),
    ]
    if result.quarantine:
        parts += ["<h2>Dataset-level expectations on the kept clips</h2>", _expectation_table(result.after_quarantine)]
    parts += ["<h2>Failing clips</h2>", _clip_table(result.failing_clips)]
    if result.quarantine:
        rows = {q.clip_id: q.reasons for q in result.quarantined}
        parts += [
            "<h2>Quarantined clips (left out of the kept manifest; nothing deleted)</h2>",
            _clip_table(rows, with_paths={q.clip_id: q.path for q in result.quarantined}),
        ]
    parts.append(f"<p>Elapsed: {result.elapsed_s:.2f} s. Clip statistics: <code>{escape(result.clip_stats_csv)}</code></p>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _expectation_table(items: list["ExpectationResult"]) -> str:
    rows = [
        "<table><tr><th>result</th><th>expectation</th><th>description</th><th>failing</th><th>observed</th></tr>"
    ]
    for e in items:
        status = '<span class="pass">pass</span>' if e.success else '<span class="fail">FAIL</span>'
        failing = "".join(f"<li>{escape(f)}</li>" for f in e.failing)
        observed = escape(e.error or e.observed or "")
        rows.append(
            f"<tr><td>{status}</td><td><code>{escape(e.expectation)}</code><br><small>{escape(e.key)}</small></td>"
            f"<td>{escape(e.description)}</td><td>{'<ul>' + failing + '</ul>' if failing else ''}</td>"
            f"<td>{observed}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _clip_table(reasons: dict[str, list[str]], with_paths: dict[str, str] | None = None) -> str:
    if not reasons:
        return "<p>None.</p>"
    head = "<th>clip</th><th>path</th><th>reasons</th>" if with_paths else "<th>clip</th><th>reasons</th>"
    rows = [f"<table><tr>{head}</tr>"]
    for cid, why in reasons.items():
        items = "".join(f"<li>{escape(r)}</li>" for r in why)
        path_cell = f"<td><code>{escape(with_paths.get(cid, ''))}</code></td>" if with_paths else ""
        rows.append(f"<tr><td>{escape(cid)}</td>{path_cell}<td><ul>{items}</ul></td></tr>")
    rows.append("</table>")
    return "\n".join(rows)
