"""Every command and variable the README names exists: a make target, a management command, or an
environment variable that analytics_site/settings.py reads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
MAKE = re.compile(r"(?:^|[\s;&(])make ([a-z][\w-]*)")
MANAGE = re.compile(r"manage\.py ([a-z][a-z0-9_]*)")
TABLE_VARIABLE = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \|", re.MULTILINE)
MAKE_RULE = re.compile(r"^([a-z][\w-]*)\s*:(?!=)", re.MULTILINE)
ENV_READERS = {"env_bool", "env_int", "env_list"}


def readme_code(text: str) -> list[str]:
    """The README's code: inline spans and fenced blocks (prose may say "make" in passing)."""
    return CODE_SPAN.findall(FENCED.sub("", text)) + FENCED.findall(text)


def readme_make_targets(text: str) -> set[str]:
    return {target for code in readme_code(text) for target in MAKE.findall(code)}


def readme_commands(text: str) -> set[str]:
    """`manage.py <command>` in code, and the names in the "Management commands:" sentence."""
    commands = {command for code in readme_code(text) for command in MANAGE.findall(code)}
    listing = re.search(r"^Management commands:(.*?)\.(?:\s|$)", text, re.DOTALL | re.MULTILINE)
    if listing:
        spans = CODE_SPAN.findall(listing.group(1))
        commands |= {span.split()[0] for span in spans if re.match(r"[a-z][a-z0-9_]*\b", span)}
    return commands


def readme_variables(text: str) -> set[str]:
    """The variables of the configuration table (the section that starts "## Configuration")."""
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(TABLE_VARIABLE.findall(section))


def makefile_targets(text: str) -> set[str]:
    return set(MAKE_RULE.findall(text))


def settings_variables(source: str) -> set[str]:
    """Names the settings read: os.environ.get("X"), os.environ["X"], env_bool/int/list("X")."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = ast.unparse(node.func)
            if function in {"os.environ.get", "os.getenv"} or function in ENV_READERS:
                names.add(node.args[0].value)
        if (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
        ):
            names.add(node.slice.value)
    return names


README = (ROOT / "README.md").read_text()


class ReadmeNamesTests:
    def test_make_targets_exist(self):
        named = readme_make_targets(README)
        assert {"run", "test", "demo"} <= named  # the parser finds what the README is about
        assert named <= makefile_targets((ROOT / "Makefile").read_text())

    def test_management_commands_exist(self):
        named = readme_commands(README)
        assert {"aggregate_visits", "send_reports", "generate_traffic"} <= named
        assert named <= set(get_commands())

    def test_configuration_variables_are_read_by_settings(self):
        named = readme_variables(README)
        assert {"DEBUG", "DATABASE_URL", "EMAIL_URL"} <= named
        source = (ROOT / "analytics_site" / "settings.py").read_text()
        assert named <= settings_variables(source)

    def test_every_variable_read_by_settings_is_in_the_table(self):
        named = readme_variables((ROOT / "README.md").read_text())
        source = (ROOT / "analytics_site" / "settings.py").read_text()
        assert settings_variables(source) <= named

    def test_parsers_catch_unknown_names(self):
        text = (
            "Run `make run`, then `make frobnicate`; to make things work (not code).\n\n"
            "```sh\npython manage.py migrate && python manage.py no_such_command\n```\n\n"
            "Management commands: `aggregate_visits` (`--rebuild`), `send_reports --dry-run`.\n"
            "Then `make demo` again.\n\n"
            "## Configuration\n\n| variable | default |\n|---|---|\n| `DEBUG` | 0 |\n"
            "| `NOT_READ_ANYWHERE` | x |\n\n## Next\n\n| `LATER` | y |\n"
        )
        assert readme_make_targets(text) == {"run", "frobnicate", "demo"}
        assert readme_commands(text) == {
            "migrate",
            "no_such_command",
            "aggregate_visits",
            "send_reports",
        }
        assert readme_variables(text) == {"DEBUG", "NOT_READ_ANYWHERE"}
        assert "frobnicate" not in makefile_targets((ROOT / "Makefile").read_text())
        assert "no_such_command" not in get_commands()
        source = 'import os\nA = os.environ.get("A", "")\nB = env_int("B", 1)\nC = os.environ["C"]'
        assert settings_variables(source) == {"A", "B", "C"}
