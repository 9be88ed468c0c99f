"""Commits happen at the edges: a feature's models, schemas, repository and service take the
caller's session and never open or commit a transaction of their own; flows, tasks and the
request, UI and CLI helpers do."""

from __future__ import annotations

import ast
from pathlib import Path

import arsync

PACKAGE = Path(arsync.__file__).parent
INSIDE_THE_CALLERS_TRANSACTION = {"models.py", "schemas.py", "repository.py", "service.py"}
TRANSACTION_OPENERS = {"transaction", "exclusive_transaction"}


def transaction_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Name) and function.id in TRANSACTION_OPENERS:
            found.append(f"{function.id}() at line {node.lineno}")
        elif isinstance(function, ast.Attribute) and function.attr in TRANSACTION_OPENERS | {"commit"}:
            found.append(f".{function.attr}() at line {node.lineno}")
    return sorted(found, key=lambda call: int(call.rsplit(" ", 1)[1]))


def test_no_service_or_repository_opens_or_commits_a_transaction() -> None:
    checked = [path for path in PACKAGE.rglob("*.py") if path.name in INSIDE_THE_CALLERS_TRANSACTION]
    assert len(checked) > 15  # the walk found the features
    offenders = {str(path.relative_to(PACKAGE)): calls for path in checked if (calls := transaction_calls(path))}
    assert offenders == {}


def test_the_check_sees_a_transaction_and_a_commit(tmp_path: Path) -> None:
    module = tmp_path / "service.py"
    module.write_text("def save(f, s):\n    with transaction(f) as t:\n        t.add(1)\n    s.commit()\n")
    assert transaction_calls(module) == ["transaction() at line 2", ".commit() at line 4"]
