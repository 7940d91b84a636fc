"""One list of functions: the workspace's `functions/*` members.

Every other place that names the functions is checked against that list here, so adding or
removing a function fails until each of them agrees (docs/architecture.md, "Adding a function"):
the functions' own Cargo.toml names, the template, the template test's table, the local stack,
the README's table, and, for the functions behind a Function URL, the client and the CLI.
`scripts/test` and tests/budgets derive the list instead of repeating it.
"""

import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import language_extensions  # noqa: E402  (scripts/, not a package)


def the_list():
    """The functions, in workspace order: every `functions/<name>` member of the workspace."""
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    return [m.removeprefix("functions/") for m in members if m.startswith("functions/")]


def pascal(name):
    return "".join(part.capitalize() for part in name.split("-"))


@pytest.fixture(scope="module")
def template_functions():
    """The template's functions: {name from CodeUri: (logical ID, properties, metadata)}."""
    template = language_extensions.load((ROOT / "template.yaml").read_text())
    found = {}
    for logical_id, resource in template["Resources"].items():
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Serverless::Function":
            code_uri = resource["Properties"]["CodeUri"]
            found[code_uri.removeprefix("functions/")] = (logical_id, resource["Properties"], resource.get("Metadata", {}))
    return found


def test_the_list_is_the_functions_directory():
    on_disk = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "Cargo.toml").exists())
    assert sorted(the_list()) == on_disk, "every functions/<name> is a workspace member, and only those"
    assert len(the_list()) == 7


def test_each_function_is_named_after_its_directory():
    for name in the_list():
        manifest = tomllib.loads((ROOT / "functions" / name / "Cargo.toml").read_text())
        assert manifest["package"]["name"] == f"appcreds-fn-{name}"
        assert [b["name"] for b in manifest["bin"]] == [f"appcreds-{name}"]


def test_the_template_has_each_function_once_with_its_binary(template_functions):
    assert sorted(template_functions) == sorted(the_list())
    for name, (logical_id, _, metadata) in template_functions.items():
        assert logical_id == f"{pascal(name)}Function"
        assert metadata["BuildMethod"] == "rust-cargolambda"
        assert metadata["BuildProperties"]["Binary"] == f"appcreds-{name}"


def test_the_template_test_has_a_row_per_function():
    import test_template

    rows = {row["short"]: (logical_id, row["binary"]) for logical_id, row in test_template.EXPECTED.items()}
    assert rows == {name: (f"{pascal(name)}Function", f"appcreds-{name}") for name in the_list()}


def test_the_local_stack_runs_each_function():
    source = (ROOT / "crates/testkit/src/bin/appcreds-local.rs").read_text()
    block = re.search(r"const FUNCTIONS: &\[&str\] = &\[(.*?)\];", source, re.S)
    assert block, "appcreds-local.rs keeps its list in `const FUNCTIONS`"
    assert re.findall(r'"([^"]+)"', block.group(1)) == [f"appcreds-{name}" for name in the_list()]


def test_the_readme_table_has_a_row_per_function():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What it does", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([a-z-]+) \|", section, re.M)
    assert rows[0] == "function", "the table's header"
    assert rows[1:] == the_list()


def test_the_client_and_the_cli_reach_each_function_url(template_functions):
    with_url = [n for n in the_list() if "FunctionUrlConfig" in template_functions[n][1]]
    assert with_url == ["app-token", "installation-token", "get-installation", "refresh-cache"]
    client = (ROOT / "crates/client/src/lib.rs").read_text()
    fields = re.search(r"pub struct Urls \{(.*?)\}", client, re.S).group(1)
    assert re.findall(r"pub (\w+): Option<String>", fields) == [n.replace("-", "_") for n in with_url]
    cli = "\n".join(p.read_text() for p in sorted((ROOT / "crates/cli/src").rglob("*.rs")))
    for name in with_url:
        env = f"APPCREDS_{name.replace('-', '_').upper()}_URL"
        assert f'output("{pascal(name)}FunctionUrl")' in client, "the client reads the stack's output"
        assert f'"{env}"' in client, "the client reads the variable"
        assert f"[env: {env}]" in cli, f"the CLI's help names {env} (the client reads it)"
        assert f"{name.replace('-', '_')}_url" in cli, f"the CLI has --{name}-url"
