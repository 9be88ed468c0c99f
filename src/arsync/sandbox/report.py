"""Sandbox reports: JSON (every check with its requests, answers and timing) and JUnit XML.

The token never reaches a report: requests were recorded with it replaced by ``$VAR``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import orjson

from arsync import __version__
from arsync.sandbox.checks import Report


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
