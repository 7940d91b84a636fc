"""The release bundle (scripts/bundle): template.yaml, samconfig.toml and the prebuilt bootstraps,
so that `sam deploy --guided` in the extracted bundle deploys without Rust and without a build.

Offline: stand-in bootstraps (small executables; the bundle's shape is what is tested, not the
functions), `sam validate --lint` on the bundle's template, and `sam package` against a moto S3
on loopback, whose uploaded artifacts must be exactly the prebuilt bootstraps. Also the SAR
metadata and its publishing step (scripts/publish-sar, with `sam publish` stood in for).

Run: .venv/bin/pytest -q tests/template   (scripts/test does)
"""

import io
import os
import pathlib
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import language_extensions  # noqa: E402  (scripts/, not a package)

BUNDLE = ROOT / "scripts/bundle"
PUBLISH = ROOT / "scripts/publish-sar"
BIN = pathlib.Path(sys.executable).parent
SAR = "AWS::ServerlessRepo::Application"


class TagLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (!Ref, !Sub, ...) as {tag: value}: enough to compare."""


def _any_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {f"!{suffix}": value}


TagLoader.add_multi_constructor("!", _any_tag)


def load(path):
    return yaml.load(pathlib.Path(path).read_text(), Loader=TagLoader)


SOURCE = load(ROOT / "template.yaml")
# Logical ID -> the function's directory name (CodeUri functions/<name>), from the template itself.
FUNCTIONS = {
    logical: pathlib.PurePosixPath(resource["Properties"]["CodeUri"]).name
    for logical, resource in SOURCE["Resources"].items()
    if isinstance(resource, dict) and resource["Type"] == "AWS::Serverless::Function"
}


def standins(directory):
    """One small executable per function, each different (SAM's upload deduplicates equal zips)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in FUNCTIONS.values():
        (directory / name).mkdir()
        bootstrap = directory / name / "bootstrap"
        bootstrap.write_bytes(f"#!/bin/sh\n# stand-in bootstrap of {name}\necho {name}\n".encode() + os.urandom(64))
        bootstrap.chmod(0o755)
    return directory


def run_bundle(bootstraps, out, *extra):
    return subprocess.run([str(BUNDLE), "--bootstraps", str(bootstraps), "--out", str(out), *extra],
                          capture_output=True, text=True, cwd=ROOT)


def extract(archive, into):
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    [top] = list(into.iterdir())
    return top


def aws_env(endpoint):
    """Dummy credentials and the moto endpoint; nothing from the caller's AWS configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint, AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true", SAM_CLI_TELEMETRY="0",
    )
    return env


def s3_object(s3, uri):
    assert uri.startswith("s3://"), uri
    bucket, key = uri[len("s3://"):].split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def bootstraps(tmp_path_factory):
    return standins(tmp_path_factory.mktemp("bootstraps") / "bootstraps")


@pytest.fixture(scope="module")
def bundle(bootstraps, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "appcreds-sam-bundle-v9.8.7.tar.gz"
    started = time.monotonic()
    result = run_bundle(bootstraps, out, "--version", "v9.8.7")
    print(f"scripts/bundle: {time.monotonic() - started:.2f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    return extract(out, tmp_path_factory.mktemp("extracted"))


@pytest.fixture(scope="module")
def moto():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto):
    import boto3

    return boto3.client("s3", endpoint_url=moto, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


# --- the bundle's shape ------------------------------------------------------------------------------

def test_every_function_runs_its_prebuilt_bootstrap(bundle, bootstraps):
    """Each CodeUri is a directory of the bundle holding exactly the prebuilt bootstrap, not source."""
    template = load(bundle / "template.yaml")
    assert {k for k, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"} == set(FUNCTIONS)
    for logical, name in FUNCTIONS.items():
        uri = template["Resources"][logical]["Properties"]["CodeUri"]
        assert isinstance(uri, str) and not os.path.isabs(uri), (logical, uri)
        code = (bundle / uri).resolve()
        assert code.is_relative_to(bundle.resolve()), (logical, uri)
        assert code == (bundle / "functions" / name).resolve(), (logical, uri)
        assert sorted(p.name for p in code.iterdir()) == ["bootstrap"], f"{logical}: {uri} holds more than bootstrap"
        assert (code / "bootstrap").read_bytes() == (bootstraps / name / "bootstrap").read_bytes(), logical
        assert (code / "bootstrap").stat().st_mode & 0o111 == 0o111, logical


def test_the_bundle_builds_nothing(bundle):
    """No function keeps SAM's build Metadata, and the template's Fn::ForEach is expanded (plain
    SAM, as the Serverless Application Repository takes it); nothing else of the template changes."""
    template = language_extensions.load((bundle / "template.yaml").read_text())
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    assert not [k for s in ("Resources", "Outputs", "Conditions") for k in template[s] if k.startswith("Fn::ForEach")]
    expected = language_extensions.expand(language_extensions.load((ROOT / "template.yaml").read_text()))
    expected["Metadata"][SAR]["SemanticVersion"] = "9.8.7"
    for logical in FUNCTIONS:
        meta = template["Resources"][logical].get("Metadata", {})
        assert "BuildMethod" not in meta and "BuildProperties" not in meta, logical
        source_meta = expected["Resources"][logical].get("Metadata", {})
        source_meta.pop("BuildMethod", None)
        source_meta.pop("BuildProperties", None)
        if not source_meta:
            expected["Resources"][logical].pop("Metadata", None)
    assert template == expected
    assert sorted(p.name for p in (bundle / "functions").iterdir()) == sorted(FUNCTIONS.values())


def test_the_bundle_is_reproducible(bootstraps, tmp_path):
    """The same bootstraps give the same bytes (the release records the bundle's SHA-256)."""
    first, second = tmp_path / "a" / "appcreds-sam.tar.gz", tmp_path / "b" / "appcreds-sam.tar.gz"
    for out in (first, second):
        out.parent.mkdir()
        assert run_bundle(bootstraps, out).returncode == 0
        time.sleep(1.1)  # a second apart: no timestamp may leak into the archive
    assert first.read_bytes() == second.read_bytes()


def test_the_bundles_samconfig_deploys_without_a_build(bundle):
    source = tomllib.loads((ROOT / "samconfig.toml").read_text())
    config = tomllib.loads((bundle / "samconfig.toml").read_text())
    for env, commands in config.items():
        if env == "version":
            continue
        assert not {"build", "sync"} & set(commands), f"{env}: no sam build or sam sync (which builds) in a bundle"
        for command, table in commands.items():
            assert not {"beta_features", "cached", "parallel", "use_container"} & set(table["parameters"]), command
    # ... and deploys as the source's samconfig does.
    assert config["default"]["deploy"] == source["default"]["deploy"]
    assert config["default"]["global"] == source["default"]["global"]


def test_the_bundle_ships_its_readme_license_and_instructions(bundle):
    meta = load(bundle / "template.yaml")["Metadata"][SAR]
    assert (bundle / meta["ReadmeUrl"]).read_bytes() == (ROOT / SOURCE["Metadata"][SAR]["ReadmeUrl"]).read_bytes()
    assert (bundle / meta["LicenseUrl"]).read_bytes() == (ROOT / SOURCE["Metadata"][SAR]["LicenseUrl"]).read_bytes()
    readme = (bundle / "README.txt").read_text()
    assert "sam deploy --guided" in readme and "9.8.7" in readme
    assert len(readme.splitlines()) < 40


def test_the_bundles_template_validates(bundle):
    result = subprocess.run([str(BIN / "sam"), "validate", "--lint"], cwd=bundle, capture_output=True, text=True,
                            env={**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_package_uploads_exactly_each_prebuilt_bootstrap(bundle, bootstraps, moto, s3, tmp_path):
    """`sam package` in a copy of the extracted bundle, against moto's S3: every function's artifact
    is a zip of the one bootstrap, byte for byte, executable."""
    s3.create_bucket(Bucket="appcreds-artifacts")
    work = shutil.copytree(bundle, tmp_path / "bundle")
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "sam"), "package", "--s3-bucket", "appcreds-artifacts", "--output-template-file", "out.yaml"],
        cwd=work, capture_output=True, text=True, env=aws_env(moto))
    print(f"sam package against moto: {time.monotonic() - started:.2f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    packaged = load(work / "out.yaml")
    for logical, name in FUNCTIONS.items():
        artifact = zipfile.ZipFile(io.BytesIO(s3_object(s3, packaged["Resources"][logical]["Properties"]["CodeUri"])))
        assert artifact.namelist() == ["bootstrap"], logical
        assert artifact.read("bootstrap") == (bootstraps / name / "bootstrap").read_bytes(), logical
        mode = artifact.getinfo("bootstrap").external_attr >> 16
        assert stat.S_ISREG(mode) and mode & 0o111 == 0o111, (logical, oct(mode))
    meta = packaged["Metadata"][SAR]
    assert s3_object(s3, meta["ReadmeUrl"]) == (bundle / "README.md").read_bytes()
    assert s3_object(s3, meta["LicenseUrl"]) == (bundle / "LICENSE").read_bytes()


# --- what the bundle refuses -----------------------------------------------------------------------

def refused(tmp_path, *extra):
    out = tmp_path / "bundle.tar.gz"
    result = run_bundle(tmp_path / "bootstraps", out, *extra)
    assert result.returncode != 0, result.stdout + result.stderr
    assert not out.exists()
    return result.stderr


def test_a_missing_function_is_refused(tmp_path):
    standins(tmp_path / "bootstraps")
    missing = sorted(FUNCTIONS.values())[0]
    shutil.rmtree(tmp_path / "bootstraps" / missing)
    assert f"{missing}/bootstrap" in refused(tmp_path)


@pytest.mark.parametrize("how", ["not executable", "a directory", "absent from its directory"])
def test_a_bootstrap_that_is_not_an_executable_file_is_refused(tmp_path, how):
    standins(tmp_path / "bootstraps")
    name = sorted(FUNCTIONS.values())[-1]
    bootstrap = tmp_path / "bootstraps" / name / "bootstrap"
    if how == "not executable":
        bootstrap.chmod(0o644)
    elif how == "a directory":
        bootstrap.unlink()
        bootstrap.mkdir()
    else:
        bootstrap.unlink()
    assert f"{name}/bootstrap" in refused(tmp_path)


def test_a_bootstrap_built_for_another_architecture_is_refused(tmp_path):
    """The template runs the functions on arm64: an x86_64 ELF would deploy and fail on every call."""
    standins(tmp_path / "bootstraps")
    name = sorted(FUNCTIONS.values())[0]
    bootstrap = tmp_path / "bootstraps" / name / "bootstrap"
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<HHI", 2, 62, 1)  # ET_EXEC, EM_X86_64
    bootstrap.write_bytes(header + b"\0" * 64)
    assert "x86_64" in refused(tmp_path)


def test_a_directory_the_template_has_no_function_for_is_refused(tmp_path):
    standins(tmp_path / "bootstraps")
    (tmp_path / "bootstraps" / "renamed-function").mkdir()
    assert "renamed-function" in refused(tmp_path)


def test_a_version_that_is_not_semantic_is_refused(tmp_path):
    standins(tmp_path / "bootstraps")
    assert "version" in refused(tmp_path, "--version", "latest")


# --- the Serverless Application Repository ------------------------------------------------------------

def test_the_sar_metadata_describes_the_repository():
    meta = SOURCE["Metadata"][SAR]
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]
    assert meta["SpdxLicenseId"] == cargo["license"]
    assert meta["SemanticVersion"] == cargo["version"]
    assert (ROOT / meta["ReadmeUrl"]).is_file() and (ROOT / meta["LicenseUrl"]).is_file()
    license = (ROOT / meta["LicenseUrl"]).read_text()
    assert "Apache License" in license and "Version 2.0, January 2004" in license
    # SAR's own limits (no intrinsic functions in this section).
    assert 1 <= len(meta["Name"]) <= 140 and 1 <= len(meta["Description"]) <= 256
    assert all(isinstance(v, (str, list)) for v in meta.values())
    # The repository has no public URL yet (Cargo.toml: example.invalid): none is published.
    for key in ("SourceCodeUrl", "HomePageUrl"):
        assert ".invalid" not in meta.get(key, ""), key


def test_publish_sar_packages_the_bundle_then_publishes_it(bundle, moto, s3, tmp_path):
    """scripts/publish-sar: a real `sam package` against moto, then `sam publish` (stood in for: moto
    serves no SAR) with the packaged template, whose code and files are all in S3."""
    s3.create_bucket(Bucket="appcreds-sar")
    record = tmp_path / "publish.yaml"
    fake = tmp_path / "sam"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = publish ]; then\n'
        f'  echo "$@" > "{tmp_path}/publish.args"\n'
        '  while [ $# -gt 0 ]; do [ "$1" = --template ] && cp "$2" ' + f'"{record}"; shift; done\n'
        "  exit 0\n"
        "fi\n"
        f'exec "{BIN / "sam"}" "$@"\n')
    fake.chmod(0o755)
    work = shutil.copytree(bundle, tmp_path / "bundle")
    result = subprocess.run([str(PUBLISH), str(work), "--s3-bucket", "appcreds-sar", "--region", "us-east-1"],
                            capture_output=True, text=True, env={**aws_env(moto), "SAM": str(fake)})
    assert result.returncode == 0, result.stdout + result.stderr
    args = (tmp_path / "publish.args").read_text().split()
    assert args[:1] == ["publish"] and "--region" in args
    packaged = load(record)
    for logical in FUNCTIONS:
        assert packaged["Resources"][logical]["Properties"]["CodeUri"].startswith("s3://appcreds-sar/"), logical
    meta = packaged["Metadata"][SAR]
    assert meta["ReadmeUrl"].startswith("s3://appcreds-sar/") and meta["LicenseUrl"].startswith("s3://appcreds-sar/")
    assert meta["SemanticVersion"] == "9.8.7"
