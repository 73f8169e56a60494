"""README's promises stay true: .ci/run runs exactly README's test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fenced_commands(text: str) -> list[str]:
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if inside and line.strip():
            lines.append(line.strip())
    return lines


def test_ci_runs_readme_test_command():
    readme = _fenced_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    ci_lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    test_command = ci_lines[-1]
    assert "pytest" in test_command
    assert test_command in readme, f"README does not show the CI test command {test_command!r}"


def test_ci_lints_and_type_checks_before_the_tests():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    position = {command: lines.index(command) for command in ("python3 -m ruff check .", "python3 -m ruff format --check .", "python3 -m mypy")}
    install = next(i for i, line in enumerate(lines) if line.startswith("python3 -m pip install") and "lint" in line)
    assert install < min(position.values()) and max(position.values()) < len(lines) - 1
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "[tool.mypy]" in pyproject and "[tool.ruff" in pyproject and "lint = [" in pyproject


def test_readme_run_command_starts_the_app():
    readme = _fenced_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert any("streamlit run app.py" in line and "pip install" in line for line in readme)
