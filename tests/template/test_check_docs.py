"""scripts/check-docs on small repositories with one broken thing each: every kind of finding it
must report, what it must not report (links in code, GitHub's slugs of punctuated and repeated
headings), and this repository as it is.

Run: .venv/bin/pytest -q tests/template   (scripts/test does)
"""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts/check-docs"

# Built from parts, so that this file does not itself contain what the check looks for.
SIBLING = ".." + "/shared"
CONTRACT = "shared" + "/spec/API.md"

CARGO = """[workspace]
members = ["tools", "crates/*"]
"""
TOOLS = """[package]
name = "demo-tests"
version = "0.1.0"

[[bench]]
name = "speed"
path = "benches/speed.rs"
harness = false
"""
CLI = """[package]
name = "demo-cli"
version = "0.1.0"

[[bin]]
name = "demo"
path = "src/main.rs"
"""
TEMPLATE = """Resources:
  DemoTable:
    Type: AWS::DynamoDB::Table
  DemoDownAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmName: !Sub "${AWS::StackName}-demo-down"
      Threshold: 0
"""
# An alarm per item of a Fn::ForEach, named through a mapping, as template.yaml's per-function ones.
LOOP_TEMPLATE = TEMPLATE.replace("Resources:\n", """Mappings:
  Parts:
    Disk: {Name: disk-part}
    Fan: {Name: fan-part}

Resources:
  Fn::ForEach::Parts:
    - Part
    - [Disk, Fan]
    - ${Part}Table:
        Type: AWS::DynamoDB::Table
      ${Part}FailedAlarm:
        Type: AWS::CloudWatch::Alarm
        Properties:
          AlarmName: !Sub ["${AWS::StackName}-${Name}-failed", {Name: !FindInMap [Parts, !Ref Part, Name]}]
""")
README = """# demo

See [the guide](docs/guide.md), [its CLI section](docs/guide.md#the-demo-cli-a-ext-test),
[the repeated one](docs/guide.md#usage-1), [a folder](docs/), [code](tools/Cargo.toml#L3),
[the web](https://example.com/x#y) and [here](#demo).
"""
GUIDE = """# Guide

## The `demo` CLI: a (ext) test!

## Usage

## Usage

<a id="custom-anchor"></a>
Back to the [README](../README.md#demo) and [an anchor](#custom-anchor).

```sh
cat [not a link](missing.md)
```

Inline `[not a link](missing.md)` is code.
"""
OPERATING = """# Operating

### STACK-demo-down

Means: the demo is down.
"""
LOOP_OPERATING = OPERATING + "\n### STACK-disk-part-failed\n\n### STACK-fan-part-failed\n"
BENCHMARKS = """# Benchmarks

`cargo bench -p demo-tests --bench speed --bench auto` (criterion), then `scripts/bench-run 1 2`.

```sh
cargo build --release -p demo-cli && cargo run -p demo-tests --bin demo-local -- --fast
target/debug/demo-local --cold-starts 2 && target/release/demo
stat -c %s target/release/demo*
```
"""


def make(tmp_path, **overrides):
    """A repository whose docs all resolve; `overrides` replace files (path -> text, None deletes)."""
    files = {
        "Cargo.toml": CARGO,
        "tools/Cargo.toml": TOOLS,
        "tools/benches/speed.rs": "fn main() {}\n",
        "tools/benches/auto.rs": "fn main() {}\n",
        "tools/src/lib.rs": "",
        "tools/src/bin/demo-local.rs": "fn main() {}\n",
        "crates/cli/Cargo.toml": CLI,
        "crates/cli/src/main.rs": "fn main() {}\n",
        "scripts/bench-run": "#!/bin/sh\n",
        "template.yaml": TEMPLATE,
        "README.md": README,
        "docs/guide.md": GUIDE,
        "docs/operating.md": OPERATING,
        "docs/benchmarks.md": BENCHMARKS,
    }
    files.update(overrides)
    for name, text in files.items():
        if text is None:
            continue
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def check(root):
    return subprocess.run([sys.executable, str(CHECK), str(root)], capture_output=True, text=True)


def test_a_repository_whose_docs_resolve_passes(tmp_path):
    run = check(make(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "resolve" in run.stdout


@pytest.mark.parametrize(
    "overrides, expected",
    [
        # Links and anchors.
        ({"README.md": README + "\n[gone](docs/missing.md)\n"}, "README.md:7: links to docs/missing.md, which does not exist"),
        ({"README.md": README + "\n[bad](docs/guide.md#nothing-here)\n"}, "links to #nothing-here, which docs/guide.md has no heading for"),
        ({"README.md": README + "\n[third](docs/guide.md#usage-2)\n"}, "links to #usage-2"),
        ({"README.md": README + "\n[self](#not-a-heading)\n"}, "links to #not-a-heading, which README.md"),
        ({"docs/guide.md": GUIDE + "\n[up](../../elsewhere/x.md)\n"}, "links outside the repository (../../elsewhere/x.md)"),
        ({"docs/guide.md": GUIDE + "\n[abs](/docs/guide.md)\n"}, "links by absolute path (/docs/guide.md)"),
        ({"docs/guide.md": GUIDE + "\n[ref]: missing-ref.md\n"}, "links to missing-ref.md, which does not exist"),
        ({"docs/guide.md": GUIDE + '\n<a href="gone.md">x</a>\n'}, "links to gone.md, which does not exist"),
        # Text that points outside the repository, in prose or in code.
        ({"docs/guide.md": GUIDE + f"\nThe contract is in `{SIBLING}/spec/API.md`.\n"}, "a checkout beside the repository"),
        ({"docs/guide.md": GUIDE + f"\nSee {CONTRACT}.\n"}, "the contract kept beside the repository"),
        ({"docs/guide.md": GUIDE + "\n```sh\ncd /work/appcreds\n```\n"}, "points outside the repository (an absolute path of this machine)"),
        ({"README.md": README + "\nBuilt in /home/alice/appcreds.\n"}, "an absolute path of a machine"),
        # Commands of docs/benchmarks.md.
        ({"docs/benchmarks.md": BENCHMARKS + "\n`cargo bench -p demo-gone --bench speed`\n"}, "cargo bench -p demo-gone: no such package"),
        ({"docs/benchmarks.md": BENCHMARKS + "\n`cargo bench -p demo-tests --bench slow`\n"}, "cargo bench --bench slow: no such bench in demo-tests"),
        ({"docs/benchmarks.md": BENCHMARKS + "\n`scripts/bench-gone --fast`\n"}, "scripts/bench-gone does not exist"),
        ({"docs/benchmarks.md": BENCHMARKS + "\n```sh\ncargo run -p demo-tests --bin demo-remote\n```\n"}, "cargo run --bin demo-remote: no such binary in demo-tests"),
        ({"docs/benchmarks.md": BENCHMARKS + "\n`target/debug/demo-gone --x`\n"}, "no package builds demo-gone"),
        ({"docs/benchmarks.md": BENCHMARKS + "\n`cargo install --path crates/gone`\n"}, "cargo install --path crates/gone: no Cargo.toml there"),
        ({"scripts/bench-run": None}, "scripts/bench-run does not exist"),
        ({"docs/benchmarks.md": None}, "docs/benchmarks.md: missing"),
        # Runbooks.
        ({"docs/operating.md": "# Operating\n"}, "no runbook for the alarm DemoDownAlarm (STACK-demo-down)"),
        ({"template.yaml": LOOP_TEMPLATE, "docs/operating.md": LOOP_OPERATING.replace("### STACK-fan-part-failed\n", "")},
         "no runbook for the alarm FanFailedAlarm (STACK-fan-part-failed)"),
    ],
)
def test_each_broken_thing_is_reported(tmp_path, overrides, expected):
    run = check(make(tmp_path, **overrides))
    assert run.returncode == 1, run.stdout + run.stderr
    assert expected in run.stdout, run.stdout


def test_the_alarms_a_loop_makes_have_runbooks_too(tmp_path):
    run = check(make(tmp_path, **{"template.yaml": LOOP_TEMPLATE, "docs/operating.md": LOOP_OPERATING}))
    assert run.returncode == 0, run.stdout + run.stderr
    run = check(make(tmp_path / "none", **{"template.yaml": LOOP_TEMPLATE}))
    assert "DiskFailedAlarm (STACK-disk-part-failed)" in run.stdout and "FanFailedAlarm" in run.stdout, run.stdout


def test_links_in_code_are_not_links(tmp_path):
    run = check(make(tmp_path))
    assert "missing.md" not in run.stdout, run.stdout


def test_this_repositorys_docs_resolve():
    run = check(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
