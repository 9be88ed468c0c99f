"""Sandbox reports: JSON (every check with its requests, answers and timing), JUnit XML, and
the conformance summary and SVG badge a middleware can publish.

The token never reaches a report: requests were recorded with it replaced by ``$VAR``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

import orjson
import pybadges

from arsync import __version__
from arsync.erp import contract
from arsync.sandbox.checks import VERDICTS, Report


def to_json(report: Report) -> bytes:
    document: dict[str, Any] = {
        "tool": f"arsync-sandbox/{__version__}",
        "target": report.base_url,
        "runId": report.run_id,
        "writePrefix": f"SBX-{report.run_id}",
        "startedAt": report.started_at.isoformat(),
        "tokenShownAs": f"${report.token_env}",
        "summary": report.counts()
        | {"mandatoryFailed": len(report.failed), "shouldWarnings": len(report.should_warnings)},
        "warnings": report.warnings,
        "latency": report.latency,
        "conformance": conformance_of(report),
        "checks": [r.as_dict() for r in report.results],
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str)


def to_junit(report: Report) -> bytes:
    counts = report.counts()
    suite = ET.Element(
        "testsuite",
        name="arsync sandbox",
        tests=str(len(report.results)),
        failures=str(counts["FAIL"]),
        skipped=str(counts["SKIP"]),
        errors="0",
        timestamp=report.started_at.isoformat(),
        time=f"{sum(r.duration_ms for r in report.results) / 1000:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="target", value=report.base_url)
    ET.SubElement(properties, "property", name="runId", value=report.run_id)
    for warning in report.warnings:
        ET.SubElement(properties, "property", name="warning", value=warning)
    for result in report.results:
        group = result.name.split(".")[0] if "." in result.name else "general"
        case = ET.SubElement(
            suite, "testcase", classname=f"sandbox.{group}", name=result.name, time=f"{result.duration_ms / 1000:.3f}"
        )
        ET.SubElement(ET.SubElement(case, "properties"), "property", name="tier", value=result.tier)
        if result.verdict == "FAIL":
            failure = ET.SubElement(case, "failure", message=result.reason, type="ContractViolation")
            failure.text = "\n".join(
                line
                for line in (
                    f"expected: {result.expected!r}",
                    f"actual: {result.actual!r}",
                    f"path: {result.path}" if result.path else "",
                    f"reproduce: {result.curl}" if result.curl else "",
                )
                if line
            )
        elif result.verdict == "SKIP":
            ET.SubElement(case, "skipped", message=result.reason)
        elif result.verdict == "WARN":
            ET.SubElement(case, "system-out").text = f"WARN ({result.tier}): {result.reason}"
    document: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return document


def conformance_of(report: Report) -> dict[str, Any]:
    writes = any(r.name.endswith(".push") and r.verdict != "SKIP" for r in report.results)
    return conformance_summary(
        report.base_url, report.started_at, writes, [(r.tier, r.verdict) for r in report.results]
    )


def conformance_summary(
    target: str, checked_at: datetime, writes_checked: bool, tiers: list[tuple[str, str]]
) -> dict[str, Any]:
    """What a shared run proves: the contract version, when, and its counts per tier."""

    def counted(tier: str) -> dict[str, int]:
        return {v.lower(): sum(1 for t, verdict in tiers if t == tier and verdict == v) for v in VERDICTS}

    must, should = counted("MUST"), counted("SHOULD")
    return {
        "tool": f"arsync-sandbox/{__version__}",
        "contract": "Nudge REST contract",
        "schemaVersion": contract.SCHEMA_VERSION,
        "target": target,
        "checkedAt": checked_at.isoformat(),
        "writesChecked": writes_checked,
        "conforms": must["fail"] == 0,
        "must": must,
        "should": should,
        "checks": len(tiers),
    }


def badge_svg(summary: dict[str, Any]) -> str:
    """A shields-style badge: green when no MUST check failed, amber with SHOULD warnings."""
    warnings = summary["should"]["warn"] + summary["should"]["fail"]
    if not summary["conforms"]:
        right, color = f"{summary['must']['fail']} MUST failed", "#c62828"
    elif warnings:
        right, color = f"conforms · {warnings} warning{'s' if warnings != 1 else ''}", "#ef8f00"
    else:
        right, color = "conforms", "#2e7d32"
    svg: str = pybadges.badge(
        left_text=f"Nudge contract v{summary['schemaVersion']}", right_text=right, right_color=color,
        whole_title=f"arsync Developer Sandbox, {summary['checkedAt'][:10]}",
    )  # fmt: skip
    return svg
