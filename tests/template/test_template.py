"""The SAM template, transformed to plain CloudFormation offline with aws-sam-translator, checked
for what the linters cannot see: dangling references, the exact IAM each function and managed
policy gets (and, rendered for given parameters, what a small IAM evaluator says they allow),
Function URL auth, the GitHub Actions role's trust, tables as the wire contract defines them,
resource tags, names that let two stacks share an account, logs, alarms and the dashboard, and the
direct-invoke guard in docs/guards. The template's Fn::ForEach is expanded first, as the
AWS::LanguageExtensions transform does (scripts/language_extensions.py, which the bundle uses too).

Run: .venv/bin/pytest -q tests/template   (scripts/test does)
Write the transformed template (for checkov, which scripts/test runs on it):
     .venv/bin/python tests/template/test_template.py OUT.json
"""

import copy
import json
import os
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest
import yaml
from samtranslator.translator.transform import transform

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import language_extensions  # noqa: E402  (scripts/, not a package)

KMS_KEYS = "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"
SIGN_CONDITION = {
    "StringEquals": {
        "aws:ResourceTag/FrameworkForGitHubAppOnAwsManaged": "true",
        "aws:ResourceTag/Status": "Active",
        "kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256",
        "kms:MessageType": "RAW",
    }
}
# With a SigningKeyScope, the same and the key's AppcredsScope tag.
SCOPED_SIGN_CONDITION = {
    "StringEquals": {**SIGN_CONDITION["StringEquals"], "aws:ResourceTag/AppcredsScope": {"Ref": "SigningKeyScope"}}
}
# Without one, the same, and only keys that carry no scope (another stack's scoped keys stay theirs).
UNSCOPED_SIGN_CONDITION = {**SIGN_CONDITION, "Null": {"aws:ResourceTag/AppcredsScope": "true"}}
APP_TABLE = {"Fn::GetAtt": ["AppTable", "Arn"]}
INSTALLATION_TABLE = {"Fn::GetAtt": ["InstallationTable", "Arn"]}
ACCESS_TABLE = {"Fn::GetAtt": ["AccessTable", "Arn"]}
# Every function behind a Function URL judges requests by the access rules.
READ_RULES = ("dynamodb:Scan", "AccessTable")
# Every function that signs shares its App JWTs: its items (AppJwt#APP_ID) of the lease table.
SHARE_JWTS = {
    ("dynamodb:GetItem", "LeaseTable"),
    ("dynamodb:BatchGetItem", "LeaseTable"),
    ("dynamodb:UpdateItem", "LeaseTable"),
    # An App's row read with its shared JWT's item, in one request.
    ("dynamodb:BatchGetItem", "AppTable"),
}
SHARE_CONDITION = {
    "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["AppJwt#*"]},
    "Null": {"dynamodb:LeadingKeys": "false"},
}
SHARED_JWT_KEY = {"Fn::GetAtt": ["SharedAppJwtKey", "Arn"]}
# The encryption context the functions give the shared JWT: every key given is one of these.
SHARED_JWT_CONTEXT = ["appcreds:AppId", "appcreds:KeyArn", "appcreds:ExpiresAt"]
# ... and each of them is given.
SHARED_JWT_CONTEXT_CONDITION = {
    "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": SHARED_JWT_CONTEXT},
    "Null": {"kms:EncryptionContextKeys": "false", **{f"kms:EncryptionContext:{k}": "false" for k in SHARED_JWT_CONTEXT}},
}
# The jobs' leases: each role only its own lease items, never the shared JWTs' (AppJwt#APP_ID).
SYNC_LEASE_CONDITION = {
    "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["installation-sync"]},
    "Null": {"dynamodb:LeadingKeys": "false"},
}
TARGET_LEASES_CONDITION = {
    "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["access-key-rotation/*"]},
    "Null": {"dynamodb:LeadingKeys": "false"},
}

# The installation sync (refresh-cache and the tracker): read Apps, sync their installations, sign JWTs.
SYNC_GRANTS = {
    ("dynamodb:GetItem", "AppTable"),
    ("dynamodb:Scan", "AppTable"),
    ("dynamodb:Query", "InstallationTable"),
    ("dynamodb:Scan", "InstallationTable"),
    ("dynamodb:BatchWriteItem", "InstallationTable"),
    ("kms:Sign", "AppKeys"),
    *SHARE_JWTS,
    # One sync at a time: the lease.
    ("dynamodb:PutItem", "LeaseTable"),
    ("dynamodb:DeleteItem", "LeaseTable"),
}

NAMESPACE = "AppFrameworkGitHubAPICallMetrics"
FAILURE_QUEUE = ("sqs:SendMessage", "ScheduledRunFailureQueue")

# The access-key rotator: its own namespace, table and KMS key, and IAM on users under one path only.
ROTATOR_NAMESPACE = "appcreds/AccessKeyRotator"
ROTATION_TABLE = {"Fn::GetAtt": ["RotationTable", "Arn"]}
# The operator manages targets (the rotator never deletes one, nor creates one).
OPERATOR_ROTATION_ACTIONS = {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Scan"}
# ... and its UpdateItem touches only these attributes (not State, not Pending).
OPERATOR_SPEC_CONDITION = {
    "ForAllValues:StringEquals": {"dynamodb:Attributes": ["UserName", "Spec", "Version"]},
    "Null": {"dynamodb:Attributes": "false"},
}
ROTATION_KEY = {"Fn::GetAtt": ["RotationKey", "Arn"]}
ROTATED_USERS = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:user${RotatedUsersPath}*"}
ROTATOR_IAM = {"iam:GetUser", "iam:ListAccessKeys", "iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:DeleteAccessKey"}
ROTATOR_TABLE_ACTIONS = {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Scan"}
# The code always sends both keys: every key given is one of these, and each of them is given.
ROTATION_CONTEXT = ["appcreds:UserName", "appcreds:AccessKeyId"]
ROTATION_CONTEXT_CONDITION = {
    "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ROTATION_CONTEXT},
    "Null": {"kms:EncryptionContextKeys": "false", **{f"kms:EncryptionContext:{k}": "false" for k in ROTATION_CONTEXT}},
}

# Per function: every (action, resource) its role may use, its Function URL, its binary, its tag.
# A later function adds a row here.
EXPECTED = {
    "AppTokenFunction": {
        "grants": {("dynamodb:GetItem", "AppTable"), ("kms:Sign", "AppKeys"), READ_RULES, *SHARE_JWTS},
        "url": True,
        "binary": "appcreds-app-token",
        "tag": "AppToken",
        "short": "app-token",
    },
    "InstallationTokenFunction": {
        "grants": {
            ("dynamodb:GetItem", "AppTable"),
            ("dynamodb:GetItem", "InstallationTable"),
            # An owner's installation from the App's rows, before GitHub is asked.
            ("dynamodb:Query", "InstallationTable"),
            ("dynamodb:BatchWriteItem", "InstallationTable"),
            ("kms:Sign", "AppKeys"),
            *SHARE_JWTS,
            READ_RULES,
        },
        "url": True,
        "binary": "appcreds-installation-token",
        "tag": "InstallationToken",
        "short": "installation-token",
    },
    "GetInstallationFunction": {
        "grants": {
            ("dynamodb:Scan", "InstallationTable"),
            ("dynamodb:Query", "InstallationTable/index/NodeID"),
            ("kms:GenerateMac", "PaginationKey"),
            READ_RULES,
        },
        "url": True,
        "binary": "appcreds-get-installation",
        "tag": "GetInstallation",
        "short": "get-installation",
    },
    "RefreshCacheFunction": {
        "grants": SYNC_GRANTS | {READ_RULES},
        "url": True,
        "binary": "appcreds-refresh-cache",
        "tag": "RefreshCache",
        "short": "refresh-cache",
    },
    "InstallationTrackerFunction": {
        "grants": SYNC_GRANTS | {FAILURE_QUEUE},
        "url": False,
        "binary": "appcreds-installation-tracker",
        "tag": "InstallationTracker",
        "short": "installation-tracker",
        "schedule": "rate(30 minutes)",
    },
    "RateLimitScannerFunction": {
        "grants": {
            ("dynamodb:GetItem", "AppTable"),
            ("dynamodb:Scan", "InstallationTable"),
            ("kms:Sign", "AppKeys"),
            *SHARE_JWTS,
            ("cloudwatch:PutMetricData", "*"),
            FAILURE_QUEUE,
        },
        "url": False,
        "binary": "appcreds-rate-limit-scanner",
        "tag": "RateLimitScanner",
        "short": "rate-limit-scanner",
        "schedule": "rate(5 minutes)",
    },
    "AccessKeyRotatorFunction": {
        "grants": {
            ("dynamodb:GetItem", "AppTable"),
            # Installations resolved by owner and remembered, as installation-token does.
            ("dynamodb:GetItem", "InstallationTable"),
            ("dynamodb:Query", "InstallationTable"),
            ("dynamodb:BatchWriteItem", "InstallationTable"),
            # A lease per target.
            ("dynamodb:PutItem", "LeaseTable"),
            ("dynamodb:DeleteItem", "LeaseTable"),
            *((a, "RotationTable") for a in ROTATOR_TABLE_ACTIONS),
            *((a, "RotatedUsers") for a in ROTATOR_IAM),
            ("kms:Encrypt", "RotationKey"),
            ("kms:Decrypt", "RotationKey"),
            ("kms:Sign", "AppKeys"),
            *SHARE_JWTS,
            ("cloudwatch:PutMetricData", "*"),
            FAILURE_QUEUE,
        },
        "url": False,
        "binary": "appcreds-access-key-rotator",
        "tag": "AccessKeyRotator",
        "short": "access-key-rotator",
        "schedule": {"Ref": "RotatorSchedule"},
        "namespace": ROTATOR_NAMESPACE,
    },
}


# CloudFormation's short tags (!Ref, !Sub, ...) read in their long form: the loader the expansion uses.
CfnLoader = language_extensions.Loader


class PolicyLoader:
    """Stands in for the IAM ListPolicies call the translator makes for managed policy names."""

    def load(self):
        return {"AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}


def load_raw():
    """template.yaml as written: its Fn::ForEach not expanded."""
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)


def load_source():
    """template.yaml as the AWS::LanguageExtensions transform hands it to SAM's."""
    return language_extensions.expand(load_raw())


def translate(source):
    """The template as CloudFormation deploys it (SAM transformed), code taken from a stand-in bucket."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = copy.deepcopy(source)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://appcreds-artifacts/function.zip"
    return transform(template, {}, PolicyLoader())


@pytest.fixture(scope="module")
def raw():
    return load_raw()


@pytest.fixture(scope="module")
def source(raw):
    return language_extensions.expand(raw)


@pytest.fixture(scope="module")
def cfn(source):
    return translate(source)


def functions(cfn):
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}


def role_statements(cfn, function):
    """A function's role and every statement it gets: its inline policies' and those of the
    template's managed policies it attaches (the signing policy)."""
    role = cfn["Resources"][f"{function}Role"]
    return role, attached_statements(cfn, role)


def attached_statements(cfn, role):
    statements = [s for p in role["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    for arn in role["Properties"].get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and cfn["Resources"].get(arn.get("Ref"), {}).get("Type") == "AWS::IAM::ManagedPolicy":
            statements += cfn["Resources"][arn["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
    return statements


def resource_name(resource):
    """Names a statement's resource the way EXPECTED does."""
    if resource == APP_TABLE:
        return "AppTable"
    if resource == INSTALLATION_TABLE:
        return "InstallationTable"
    if resource == ACCESS_TABLE:
        return "AccessTable"
    if resource == {"Fn::GetAtt": ["LeaseTable", "Arn"]}:
        return "LeaseTable"
    if resource == {"Fn::Sub": "${InstallationTable.Arn}/index/NodeID"}:
        return "InstallationTable/index/NodeID"
    if resource == {"Fn::GetAtt": ["PaginationKey", "Arn"]}:
        return "PaginationKey"
    if resource == {"Fn::Sub": KMS_KEYS}:
        return "AppKeys"
    if resource == {"Fn::GetAtt": ["ScheduledRunFailureQueue", "Arn"]}:
        return "ScheduledRunFailureQueue"
    if resource == ROTATION_TABLE:
        return "RotationTable"
    if resource == ROTATION_KEY:
        return "RotationKey"
    if resource == ROTATED_USERS:
        return "RotatedUsers"
    if resource == "*":
        return "*"
    return json.dumps(resource)


def as_list(value):
    return value if isinstance(value, list) else [value]


def each_mapping(value):
    """Every mapping inside a template fragment, depth first."""
    if isinstance(value, dict):
        yield value
        for x in value.values():
            yield from each_mapping(x)
    elif isinstance(value, list):
        for x in value:
            yield from each_mapping(x)


def test_transformed_template_lints_clean(cfn, tmp_path):
    """cfn-lint on the transformed template catches dangling !Ref / !GetAtt that SAM hides."""
    out = tmp_path / "transformed.json"
    out.write_text(json.dumps(cfn))
    cfn_lint = pathlib.Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(cfn_lint), str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_function_is_expected(cfn):
    assert set(functions(cfn)) == set(EXPECTED)


@pytest.mark.parametrize("function", sorted(EXPECTED))
def test_each_function_gets_exactly_its_permissions(cfn, function):
    role, statements = role_statements(cfn, function)
    grants = set()
    for s in statements:
        assert s["Effect"] == "Allow"
        for action in as_list(s["Action"]):
            assert "*" not in action, f"{function}: wildcard action {action}"
            for resource in as_list(s["Resource"]):
                if resource == "*":
                    # Only PutMetricData (no resource-level permissions), confined to our namespace.
                    assert action == "cloudwatch:PutMetricData", f"{function}: {action} on every resource"
                    namespace = EXPECTED[function].get("namespace", NAMESPACE)
                    assert s.get("Condition") == {"StringEquals": {"cloudwatch:namespace": namespace}}
                grants.add((action, resource_name(resource)))
            if action == "kms:Sign":
                assert s["Resource"] == {"Fn::Sub": KMS_KEYS}
                assert s.get("Condition") == {"Fn::If": ["HasSigningKeyScope", SCOPED_SIGN_CONDITION, UNSCOPED_SIGN_CONDITION]}, (
                    f"{function}: kms:Sign must be tag-conditioned (and scoped when SigningKeyScope is set)"
                )
    assert grants == EXPECTED[function]["grants"]
    signs = [{"Ref": "AppKeySigningPolicy"}] if ("kms:Sign", "AppKeys") in EXPECTED[function]["grants"] else []
    assert role["Properties"]["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole", *signs
    ], f"{function}: logs only, and the signing policy if it signs"


def test_function_urls_use_iam_auth(cfn):
    urls = {k: v for k, v in cfn["Resources"].items() if v["Type"] == "AWS::Lambda::Url"}
    assert {u["Properties"]["TargetFunctionArn"]["Ref"] for u in urls.values()} == {
        f for f, e in EXPECTED.items() if e["url"]
    }
    for name, url in urls.items():
        assert url["Properties"]["AuthType"] == "AWS_IAM", name
    # With AWS_IAM, SAM adds no public invoke permission.
    for resource in cfn["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Permission":
            assert resource["Properties"].get("FunctionUrlAuthType") != "NONE"
            assert resource["Properties"].get("Principal") != "*"


def test_functions_run_on_al2023_arm64_with_unique_binaries(source, cfn):
    binaries = {}
    for name, fn in functions(cfn).items():
        props = fn["Properties"]
        assert props["Runtime"] == "provided.al2023", name
        assert props["Architectures"] == ["arm64"], name
        assert "FunctionName" not in props, f"{name}: names come from the stack"
        assert {"Key": "CredentialManager", "Value": EXPECTED[name]["tag"]} in props["Tags"], name
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
        env = props["Environment"]["Variables"]
        assert env["APP_TABLE_NAME"] == {"Ref": "AppTable"}
        assert env["GITHUB_API_URL"] == {"Ref": "GitHubApiUrl"}
        meta = source["Resources"][name]["Metadata"]
        assert meta["BuildMethod"] == "rust-cargolambda"
        binaries[name] = meta["BuildProperties"]["Binary"]
    assert binaries == {name: e["binary"] for name, e in EXPECTED.items()}
    assert len(set(binaries.values())) == len(binaries)
    for name, binary in binaries.items():
        crate = ROOT / source["Resources"][name]["Properties"]["CodeUri"] / "Cargo.toml"
        assert f'name = "{binary}"' in crate.read_text(), f"{crate} builds {binary}"


def test_scheduled_functions_run_on_their_schedules(cfn):
    schedules = {
        r["Properties"]["Target"]["Arn"]["Fn::GetAtt"][0]: r["Properties"]["ScheduleExpression"]
        for r in cfn["Resources"].values()
        if r["Type"] == "AWS::Scheduler::Schedule"
    }
    assert schedules == {f: e["schedule"] for f, e in EXPECTED.items() if "schedule" in e}


def render_sub(value, params):
    """Renders a Fn::Sub string with parameter values (and placeholders for pseudo parameters)."""
    text = value["Fn::Sub"]
    for name, v in params.items():
        text = text.replace("${" + name + "}", str(v))
    return text


def dashboard(cfn, threshold):
    """The dashboard body, its ${...} rendered: a resource's name as `name:<LogicalId>`, an ARN as
    `arn:<LogicalId>`. Every placeholder must name a resource or a parameter of the template."""
    body = cfn["Resources"]["RateLimitDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]

    def value(match):
        name = match.group(1)
        if name == "AWS::Region":
            return "eu-west-1"
        if name == "RateLimitAlarmThreshold":
            return str(threshold)
        logical, _, attribute = name.partition(".")
        assert logical in cfn["Resources"], f"the dashboard names {name}, which the template lacks"
        assert attribute in ("", "Arn"), name
        return f"arn:{logical}" if attribute else f"name:{logical}"

    return json.loads(re.sub(r"\$\{([^}]+)\}", value, body))


def metric_lines(widget):
    """A metric widget's lines with CloudWatch's "." (same as the line above) filled in."""
    lines, last = [], []
    for line in widget["properties"]["metrics"]:
        fields = [f for f in line if not isinstance(f, dict)]
        fields = [last[i] if f == "." else f for i, f in enumerate(fields)]
        lines.append(fields)
        last = fields
    return lines


# One category per query: a Metrics Insights query processes at most 10,000 metrics (all categories of
# 10,000 installations would be far more) and returns at most 500 series, the ORDER BY ones.
LOWEST_CORE = (
    f'SELECT MIN(GitHubAPICallsRemainingPercent) FROM SCHEMA("{NAMESPACE}", AppID, Category, InstallationID) '
    "WHERE Category = 'core' GROUP BY AppID, InstallationID ORDER BY MIN() ASC LIMIT 10"
)
INSIGHTS = re.compile(
    r'SELECT (MIN|MAX|SUM)\((GitHubAPICallsRemainingPercent|GitHubAPICalls)\) '
    r'FROM SCHEMA\("AppFrameworkGitHubAPICallMetrics", AppID, Category, InstallationID\) '
    r"WHERE Category = '([a-z_]+)' GROUP BY (AppID, InstallationID|AppID) ORDER BY (MIN|MAX|SUM)\(\) (ASC|DESC) LIMIT (\d+)"
)


def test_dashboard_shows_rate_limits_with_metrics_insights(cfn, source):
    dash = cfn["Resources"]["RateLimitDashboard"]["Properties"]
    assert dash["DashboardName"] == {"Fn::Sub": "${AWS::StackName}-github-rate-limits"}
    threshold = source["Parameters"]["RateLimitAlarmThreshold"]["Default"]
    assert threshold == 20
    body = dashboard(cfn, threshold)
    assert "SEARCH(" not in json.dumps(body), "SEARCH returns an arbitrary 500 series: Metrics Insights instead"
    widgets = [w for w in body["widgets"] if w["type"] == "metric"]
    queries = {}
    for w in widgets:
        for line in w["properties"]["metrics"]:
            if isinstance(line[0], dict):
                [query] = line
                if f'SCHEMA("{ROTATOR_NAMESPACE}"' in query["expression"]:
                    continue  # the rotator's row, below
                match = INSIGHTS.fullmatch(query["expression"])
                assert match, query["expression"]
                function, metric, category, group, order, direction, limit = match.groups()
                assert function == order, "ordered by what it shows"
                assert int(limit) <= 500
                assert query["period"] == 300
                queries[w["properties"]["title"]] = (metric, category, group, direction, int(limit))
    # The 10 installations with the least core left come first, with the alarm threshold.
    first = widgets[0]["properties"]
    assert first["metrics"] == [[{"expression": LOWEST_CORE, "id": "corelowest", "period": 300}]]
    assert first["annotations"]["horizontal"][0]["value"] == threshold
    assert first["yAxis"]["left"]["min"] == 0 and first["yAxis"]["left"]["max"] == 100
    per_app = [q for q in queries.values() if q[2] == "AppID"]
    per_installation = [q for q in queries.values() if q[2] == "AppID, InstallationID"]
    assert ("GitHubAPICallsRemainingPercent", "core", "AppID", "ASC", 100) in per_app
    assert ("GitHubAPICalls", "core", "AppID", "DESC", 100) in per_app
    assert all(q[4] == 10 for q in per_installation), "the 10 lowest (or busiest) installations"
    assert {q[1] for q in per_installation if q[0] == "GitHubAPICallsRemainingPercent"} == {"core", "graphql", "search"}
    # The alarms of the rate limits and the scanner, and the scanner's runs.
    alarm_widgets = {w["properties"]["title"]: w["properties"]["alarms"] for w in body["widgets"] if w["type"] == "alarm"}
    assert alarm_widgets["Rate-limit and scanner alarms"] == [
        "arn:CoreRateLimitAlarm", "arn:RateLimitScannerHeartbeatAlarm", "arn:RateLimitScannerGapAlarm"
    ]
    [scanner] = [w for w in widgets if w["properties"]["title"].startswith("Rate-limit scanner")]
    lines = scanner["properties"]["metrics"]
    assert lines[0][:4] == [NAMESPACE, "ScannerInstallations", "FunctionName", "name:RateLimitScannerFunction"]
    assert [line[1] for line in lines[1:]] == [
        "ScannerInstallationsScanned", "ScannerInstallationsFailed", "ScannerInstallationsDeferred"
    ]


def test_dashboard_shows_each_function_and_every_alarm(cfn):
    body = dashboard(cfn, 20)
    by_title = {w["properties"]["title"]: w for w in body["widgets"]}
    for title, metric, stat in [
        ("Functions: invocations", "Invocations", "Sum"),
        ("Functions: errors", "Errors", "Sum"),
        ("Functions: duration p99", "Duration", "p99"),
    ]:
        widget = by_title[title]
        assert widget["properties"]["stat"] == stat and widget["properties"]["period"] == 300
        assert metric_lines(widget) == [["AWS/Lambda", metric, "FunctionName", f"name:{f}"] for f in EXPECTED], title
        assert widget["y"] == by_title["Functions: invocations"]["y"], "one row"
    # Every alarm of the template is on the dashboard.
    shown = [a for w in body["widgets"] if w["type"] == "alarm" for a in w["properties"]["alarms"]]
    alarms = [k for k, r in cfn["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert sorted(shown) == sorted(f"arn:{a}" for a in alarms)


SCANNER_DIMENSION = [{"Name": "FunctionName", "Value": {"Ref": "RateLimitScannerFunction"}}]
ALARM_TOPIC = {"Fn::If": ["HasAlarmTopic", [{"Ref": "RateLimitAlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}


def test_a_silent_scanner_raises_its_alarm(cfn):
    """Missing data is breaching: the alarm fires exactly when the scanner stops reporting."""
    alarm = cfn["Resources"]["RateLimitScannerHeartbeatAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Dimensions"]) == (
        NAMESPACE, "ScannerInstallationsScanned", SCANNER_DIMENSION
    )
    assert (alarm["Statistic"], alarm["Period"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "SampleCount", 300, "LessThanThreshold", 1
    )
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 2)
    assert alarm["TreatMissingData"] == "breaching"
    assert alarm["AlarmActions"] == ALARM_TOPIC and alarm["OKActions"] == ALARM_TOPIC


def test_installations_the_scanner_keeps_missing_raise_an_alarm(cfn, source):
    alarm = cfn["Resources"]["RateLimitScannerGapAlarm"]["Properties"]
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    assert queries["unscanned"]["Expression"] == "failed + deferred" and queries["unscanned"]["ReturnData"]
    for id_, name in [("failed", "ScannerInstallationsFailed"), ("deferred", "ScannerInstallationsDeferred")]:
        stat = queries[id_]["MetricStat"]
        assert stat["Metric"] == {"Namespace": NAMESPACE, "MetricName": name, "Dimensions": SCANNER_DIMENSION}
        assert (stat["Period"], stat["Stat"], queries[id_]["ReturnData"]) == (300, "Sum", False)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", {"Ref": "ScannerGapAlarmThreshold"})
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 3)
    assert source["Parameters"]["ScannerGapAlarmThreshold"]["Default"] == 10
    assert alarm["AlarmActions"] == ALARM_TOPIC


def test_alarm_watches_the_lowest_core_percent(cfn, source):
    alarm = cfn["Resources"]["CoreRateLimitAlarm"]["Properties"]
    assert alarm["AlarmName"] == {"Fn::Sub": "${AWS::StackName}-github-core-rate-limit-low"}
    assert alarm["ComparisonOperator"] == "LessThanOrEqualToThreshold"
    assert alarm["Threshold"] == {"Ref": "RateLimitAlarmThreshold"}
    [query] = alarm["Metrics"]
    expression = " ".join(query["Expression"].split())
    assert expression == (
        f'SELECT MIN(GitHubAPICallsRemainingPercent) FROM SCHEMA("{NAMESPACE}", AppID, Category, InstallationID) '
        "WHERE Category = 'core'"
    )
    assert alarm["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "RateLimitAlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    assert source["Parameters"]["RateLimitAlarmTopicArn"]["Default"] == ""


def test_the_sync_lease_table_expires_its_leases(cfn):
    table = cfn["Resources"]["LeaseTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "LeaseId", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ExpiresAt", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    for function in ["RefreshCacheFunction", "InstallationTrackerFunction"]:
        env = cfn["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert env["LEASE_TABLE_NAME"] == {"Ref": "LeaseTable"}, function


def test_tables_are_the_contracts(cfn, source):
    app = cfn["Resources"]["AppTable"]
    assert source["Resources"]["AppTable"]["DeletionPolicy"] == "Retain"
    assert source["Resources"]["AppTable"]["UpdateReplacePolicy"] == "Retain"
    assert app["Properties"]["KeySchema"] == [{"AttributeName": "AppId", "KeyType": "HASH"}]
    assert app["Properties"]["AttributeDefinitions"] == [{"AttributeName": "AppId", "AttributeType": "N"}]
    inst = cfn["Resources"]["InstallationTable"]["Properties"]
    assert inst["KeySchema"] == [
        {"AttributeName": "AppId", "KeyType": "HASH"},
        {"AttributeName": "NodeId", "KeyType": "RANGE"},
    ]
    assert {(a["AttributeName"], a["AttributeType"]) for a in inst["AttributeDefinitions"]} == {
        ("AppId", "N"), ("NodeId", "S"), ("InstallationId", "N"),
    }
    gsis = {g["IndexName"]: g for g in inst["GlobalSecondaryIndexes"]}
    assert gsis["NodeID"]["KeySchema"] == [
        {"AttributeName": "NodeId", "KeyType": "HASH"},
        {"AttributeName": "AppId", "KeyType": "RANGE"},
    ]
    assert gsis["InstallationID"]["KeySchema"] == [
        {"AttributeName": "InstallationId", "KeyType": "HASH"},
        {"AttributeName": "AppId", "KeyType": "RANGE"},
    ]
    assert set(gsis) == {"NodeID", "InstallationID"}
    access = cfn["Resources"]["AccessTable"]["Properties"]
    assert access["KeySchema"] == [{"AttributeName": "RuleId", "KeyType": "HASH"}]
    assert access["AttributeDefinitions"] == [{"AttributeName": "RuleId", "AttributeType": "S"}]
    assert source["Resources"]["AccessTable"]["DeletionPolicy"] == "Retain", "rules outlive the stack"
    for name, tag in [("AppTable", "AppTable"), ("InstallationTable", "AppInstallationTable"), ("AccessTable", "AccessTable")]:
        props = cfn["Resources"][name]["Properties"]
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"] == {"SSEEnabled": True}
        assert "TableName" not in props, f"{name}: names come from the stack"
        assert {"Key": "CredentialManager", "Value": tag} in props["Tags"]


def test_outputs_name_real_resources(cfn):
    resources = set(cfn["Resources"]) | set(cfn["Parameters"])
    for name, output in cfn["Outputs"].items():
        refs = [m["Ref"] for m in each_mapping(output["Value"]) if "Ref" in m]
        refs += [m["Fn::GetAtt"][0] for m in each_mapping(output["Value"]) if "Fn::GetAtt" in m]
        assert refs, name
        assert all(r in resources for r in refs), f"{name} refers to {refs}"
    for function, e in EXPECTED.items():
        if e["url"]:
            assert cfn["Outputs"][f"{function}Url"]["Value"] == {"Fn::GetAtt": [f"{function}Url", "FunctionUrl"]}


def test_outputs_give_the_cli_what_it_reads(cfn):
    """`appcreds --stack` reads the App table, the signing roles (for App keys' key policies) and
    the Function URLs from these outputs."""
    outputs = cfn["Outputs"]
    assert outputs["AppTableName"]["Value"] == {"Ref": "AppTable"}
    signers = sorted(f for f, e in EXPECTED.items() if ("kms:Sign", "AppKeys") in e["grants"])
    joined = outputs["FunctionRoleArns"]["Value"]["Fn::Join"]
    assert joined[0] == ","
    assert sorted(v["Fn::GetAtt"][0] for v in joined[1]) == sorted(f"{f}Role" for f in signers)
    assert all(v["Fn::GetAtt"][1] == "Arn" for v in joined[1])
    for url in ["AppTokenFunctionUrl", "InstallationTokenFunctionUrl", "GetInstallationFunctionUrl", "RefreshCacheFunctionUrl"]:
        assert url in outputs


def test_samconfig_tags_the_stack():
    text = (ROOT / "samconfig.toml").read_text()
    assert 'FrameworkForGitHubAppOnAwsManaged=\\"CredentialManager\\"' in text


def test_access_rules_are_enforced_by_default(cfn, source):
    assert source["Parameters"]["AccessMode"]["Default"] == "enforce"
    assert source["Parameters"]["AccessMode"]["AllowedValues"] == ["enforce", "open"]
    for name, fn in functions(cfn).items():
        env = fn["Properties"]["Environment"]["Variables"]
        assert env["ACCESS_MODE"] == {"Ref": "AccessMode"}, name
        assert env["ACCESS_TABLE_NAME"] == {"Ref": "AccessTable"}, name
        # A stack's own audience by default: a token made for another deployment is refused here.
        assert env["OIDC_AUDIENCE"] == {"Fn::If": ["HasOidcAudience", {"Ref": "GitHubOidcAudience"},
                                                   {"Fn::Sub": "appcreds:${AWS::AccountId}:${AWS::StackName}"}]}, name
        # The issuer follows GITHUB_API_URL unless GitHubOidcIssuer names one (GHE.com, an
        # enterprise's own issuer): see test_the_functions_get_the_oidc_issuer_only_when_it_is_set.
        assert env["OIDC_ISSUER"]["Fn::If"][0] == "HasOidcIssuer", name
        # Only the local stack states a caller; a deployed function takes it from Lambda alone.
        assert "LOCAL_CALLER_ARN" not in env and "REQUIRE_IAM_CALLER" not in env, name


def policy_statements(cfn, name):
    return cfn["Resources"][name]["Properties"]["PolicyDocument"]["Statement"]


@pytest.mark.parametrize("policy,function", [
    ("CallerPolicy", "InstallationTokenFunction"),
    ("ReaderPolicy", "GetInstallationFunction"),
    ("OperatorPolicy", "RefreshCacheFunction"),
])
def test_caller_policies_invoke_only_through_the_function_url(cfn, policy, function):
    statements = [
        s for s in policy_statements(cfn, policy)
        if str(s["Action"]).startswith("lambda:") and s.get("Sid") != "RunTheRotator"
    ]
    by_action = {s["Action"]: s for s in statements}
    assert set(by_action) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}, "both, since October 2025"
    for s in statements:
        assert s["Effect"] == "Allow"
        assert s["Resource"] == {"Fn::GetAtt": [function, "Arn"]}
    assert by_action["lambda:InvokeFunctionUrl"]["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}
    # Without this a caller could invoke the function with an event it wrote, forging its caller ARN.
    assert by_action["lambda:InvokeFunction"]["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}
    output = {"CallerPolicy": "CallerPolicyArn", "ReaderPolicy": "ReaderPolicyArn", "OperatorPolicy": "OperatorPolicyArn"}[policy]
    assert cfn["Outputs"][output]["Value"] == {"Ref": policy}


def test_no_policy_grants_invoke_without_its_condition(source):
    """Any statement of the template that allows lambda:InvokeFunction carries InvokedViaFunctionUrl."""
    for v in each_mapping(source["Resources"]):
        if v.get("Effect") == "Allow" and "lambda:InvokeFunction" in as_list(v.get("Action", [])):
            if v.get("Sid") == "RunTheRotator":
                # The rotator has no Function URL; its event carries no caller to forge.
                assert v["Resource"] == {"Fn::GetAtt": [ROTATOR, "Arn"]} and "Condition" not in v, v
                continue
            assert v.get("Condition") == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}, v
    # ForAllValues alone is satisfied by an absent key: each use comes with a "Null" false on its keys.
    for v in each_mapping(source["Resources"]):
        for operator, keys in v.items():
            if operator.startswith("ForAllValues:"):
                assert set(keys) <= {k for k, absent in v.get("Null", {}).items() if absent == "false"}, v
    uses = [v for v in each_mapping(source["Resources"]) if any(k.startswith("ForAllValues") for k in v)]
    # The rotator's encryption context, the operator's spec writes, the tag keys the operator
    # gives a new App key (scoped and unscoped) or an existing one (the same), the shared JWT's
    # items and its encryption context, the jobs' leases.
    tag_keys = [v for v in uses if list(v.get("ForAllValues:StringEquals", {})) == ["aws:TagKeys"]]
    assert [v for v in uses if v not in tag_keys] == [
        SHARED_JWT_CONTEXT_CONDITION, SHARE_CONDITION, SYNC_LEASE_CONDITION, SYNC_LEASE_CONDITION,
        TARGET_LEASES_CONDITION, ROTATION_CONTEXT_CONDITION, OPERATOR_SPEC_CONDITION,
    ]
    assert len(tag_keys) == 4


def test_operator_policy_manages_keys_rules_and_apps_only(cfn):
    statements = policy_statements(cfn, "OperatorPolicy")
    by_sid = {s["Sid"]: s for s in statements}
    app_key = {"kms:KeyOrigin": "EXTERNAL", "kms:KeySpec": "RSA_2048", "kms:KeyUsage": "SIGN_VERIFY"}
    for scope in ["", "team-a.prod_1"]:
        rendered = {s["Sid"]: s for s in render(cfn, statements, SigningKeyScope=scope)}
        # A scoped stack's operator: keys tagged with its scope; an unscoped one's: keys with none.
        scoped = {"aws:ResourceTag/AppcredsScope": scope} if scope else {}
        unscoped = {"Null": {"aws:ResourceTag/AppcredsScope": "true"}} if not scope else {}
        on_keys = {"aws:ResourceTag/FrameworkForGitHubAppOnAwsManaged": "true", **scoped, **app_key}
        assert rendered["ImportAndRetireAppKeys"]["Condition"] == {"StringEquals": on_keys, **unscoped}
        assert rendered["ProveAppKeys"]["Condition"] == {"StringEquals": {
            **on_keys, "aws:ResourceTag/Status": "Importing",
            "kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256", "kms:MessageType": "RAW"}, **unscoped}
        retag = {"ForAllValues:StringEquals": {"aws:TagKeys": ["Status", "ReplacedBy", "ReplacedOn"]}}
        assert rendered["RetagAppKeys"]["Condition"] == {
            "StringEquals": {**on_keys, "aws:RequestTag/Status": ["Active", "Inactive", "Failed"]}, **retag,
            "Null": {"aws:TagKeys": "false", **unscoped.get("Null", {})}}
        # Created: only imported RSA-2048 signing keys, tagged at creation with the stack's scope.
        request_scope = {"aws:RequestTag/AppcredsScope": scope} if scope else {}
        no_request_scope = {"aws:RequestTag/AppcredsScope": "true"} if not scope else {}
        assert rendered["CreateAppKeys"]["Condition"] == {
            "StringEquals": {"aws:RequestTag/FrameworkForGitHubAppOnAwsManaged": "true", **request_scope, **app_key},
            **({"Null": no_request_scope} if no_request_scope else {}),
        }
        new_tags = ["FrameworkForGitHubAppOnAwsManaged", "Status", "AppId", "CreatedOn"] + (["AppcredsScope"] if scope else [])
        assert rendered["TagNewAppKeys"]["Condition"] == {
            "StringEquals": {"aws:RequestTag/FrameworkForGitHubAppOnAwsManaged": "true",
                             "aws:RequestTag/Status": "Importing", **request_scope},
            "ForAllValues:StringEquals": {"aws:TagKeys": new_tags},
            "Null": {"aws:TagKeys": "false", **no_request_scope},
        }
    assert by_sid["KeepAppKeysInTheirScope"]["Condition"] == {
        "ForAnyValue:StringEquals": {"aws:TagKeys": ["AppcredsScope", "FrameworkForGitHubAppOnAwsManaged"]},
        "Null": {"aws:ResourceTag/FrameworkForGitHubAppOnAwsManaged": "false"},
    }
    assert by_sid["ManageAccessRules"]["Resource"] == ACCESS_TABLE
    assert by_sid["ManageRotationTargets"]["Resource"] == ROTATION_TABLE
    assert set(by_sid["ManageRotationTargets"]["Action"]) == OPERATOR_ROTATION_ACTIONS - {"dynamodb:UpdateItem"}
    assert by_sid["WriteRotationSpecs"]["Condition"] == OPERATOR_SPEC_CONDITION
    assert by_sid["RunTheRotator"]["Action"] == "lambda:InvokeFunction"
    assert by_sid["RegisterAndRotateApps"]["Resource"] == APP_TABLE
    for s in statements:
        for action in as_list(s["Action"]):
            assert "*" not in action, action


def test_github_actions_role_trusts_only_the_configured_subject(source):
    role, s = github_role(source)
    assert s["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert s["Principal"]["Federated"] == "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    assert s["Condition"] == {
        "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
        "StringLike": {"token.actions.githubusercontent.com:sub": "repo:octo-org/*:*"},
    }
    _, s = github_role(source, GitHubActionsRepository="hello-world")
    assert s["Condition"]["StringLike"] == {"token.actions.githubusercontent.com:sub": "repo:octo-org/hello-world:*"}
    _, s = github_role(source, GitHubActionsRepository="hello-world", GitHubActionsEnvironment="release")
    assert s["Condition"]["StringLike"] == {"token.actions.githubusercontent.com:sub": "repo:octo-org/hello-world:environment:release"}
    _, s = github_role(source, CreateGitHubOidcProvider="true")
    assert s["Principal"]["Federated"] == "ref:GitHubOidcProvider", "the provider the stack creates"
    assert role["Properties"]["ManagedPolicyArns"] == [{"Ref": "CallerPolicy"}]


def test_the_oidc_provider_is_created_only_when_asked(source):
    provider = source["Resources"]["GitHubOidcProvider"]
    assert provider["Condition"] == "CreateOidcProvider"
    assert source["Parameters"]["CreateGitHubOidcProvider"]["Default"] == "false", "an account has only one"
    assert render(source, provider["Properties"]["Url"]) == "https://token.actions.githubusercontent.com"
    assert provider["Properties"]["ClientIdList"] == ["sts.amazonaws.com"]


# --- Two stacks in one account ----------------------------------------------------------------------

# Properties named *Name that name no resource of this stack.
NOT_PHYSICAL_NAMES = {"MetricName"}


def derived_from_the_stack(value, resources):
    """A name CloudFormation makes unique per stack: a Fn::Sub with ${AWS::StackName}, or a reference
    to another resource of this stack (whose name is generated from the stack's)."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
        return "${AWS::StackName}" in text
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"] in resources
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return value["Fn::GetAtt"][0] in resources
    return False


def test_no_resource_has_a_fixed_name(cfn):
    """Every physical name (and export name) is absent, so CloudFormation generates it, or derives
    from the stack name: a second stack of the template deploys in the same account and region."""
    resources = cfn["Resources"]
    fixed = []
    for logical, resource in resources.items():
        for key, value in resource.get("Properties", {}).items():
            if (key == "Name" or key.endswith("Name")) and key not in NOT_PHYSICAL_NAMES:
                if not derived_from_the_stack(value, resources):
                    fixed.append(f"{logical}.{key} = {json.dumps(value)}")
    for name, output in cfn["Outputs"].items():
        if "Export" in output and not derived_from_the_stack(output["Export"]["Name"], resources):
            fixed.append(f"Outputs.{name}.Export.Name")
    assert fixed == []


def test_names_derived_from_the_stack_are_checked(cfn):
    """The check above tells a fixed name from a derived one."""
    resources = cfn["Resources"]
    assert not derived_from_the_stack("appcreds-table", resources)
    assert not derived_from_the_stack({"Fn::Sub": "appcreds-${AWS::Region}"}, resources)
    assert derived_from_the_stack({"Fn::Sub": "${AWS::StackName}-x"}, resources)
    assert derived_from_the_stack({"Ref": "AppTokenFunction"}, resources)
    assert not derived_from_the_stack({"Ref": "GitHubApiUrl"}, resources), "a parameter is the same in both stacks"


def test_schedules_are_named_by_cloudformation(source, cfn):
    schedules = {k: r for k, r in cfn["Resources"].items() if r["Type"] == "AWS::Scheduler::Schedule"}
    assert len(schedules) == len(SCHEDULED) == len([e for e in EXPECTED.values() if "schedule" in e])
    for name, schedule in schedules.items():
        assert "Name" not in schedule["Properties"], name
        assert "GroupName" not in schedule["Properties"], name
    for function, e in EXPECTED.items():
        if "schedule" in e:
            [event] = source["Resources"][function]["Properties"]["Events"].values()
            assert event["Type"] == "ScheduleV2" and event["Properties"]["OmitName"] is True


# --- Scheduled runs: no retries that multiply, failures queued and alarmed --------------------------

# Per scheduled function: (minutes between runs, at the default, scheduler delivery retries,
# scheduler event age, Lambda event age). Lambda retries no failed run: the next one comes soon.
SCHEDULED = {
    "InstallationTrackerFunction": (30, 1, 300, 1200),
    "RateLimitScannerFunction": (5, 0, 60, 180),
    "AccessKeyRotatorFunction": (60, 1, 300, 1800),
}
RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")


def schedule_minutes(expression, source):
    """Minutes between runs of a rate expression (a parameter's default for a !Ref)."""
    if isinstance(expression, dict):
        expression = source["Parameters"][expression["Ref"]]["Default"]
    count, unit = RATE.fullmatch(expression).groups()
    return int(count) * {"minute": 1, "hour": 60, "day": 1440}[unit.removesuffix("s")]
QUEUE_ARN = {"Fn::GetAtt": ["ScheduledRunFailureQueue", "Arn"]}


@pytest.mark.parametrize("function", sorted(SCHEDULED))
def test_a_failed_scheduled_run_is_queued_not_retried(cfn, source, function):
    minutes, delivery_retries, delivery_age, run_age = SCHEDULED[function]
    [config] = [r["Properties"] for r in cfn["Resources"].values()
                if r["Type"] == "AWS::Lambda::EventInvokeConfig" and r["Properties"]["FunctionName"] == {"Ref": function}]
    assert config["MaximumRetryAttempts"] == 0
    assert config["MaximumEventAgeInSeconds"] == run_age
    assert config["DestinationConfig"] == {"OnFailure": {"Destination": QUEUE_ARN}}
    assert config["Qualifier"] == "$LATEST"
    [schedule] = [r["Properties"] for r in cfn["Resources"].values()
                  if r["Type"] == "AWS::Scheduler::Schedule" and r["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": [function, "Arn"]}]
    assert schedule["ScheduleExpression"] == EXPECTED[function]["schedule"]
    assert schedule_minutes(schedule["ScheduleExpression"], source) == minutes
    target = schedule["Target"]
    # The scheduler retries delivery only (Lambda accepts an asynchronous invoke before running it).
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": delivery_retries, "MaximumEventAgeInSeconds": delivery_age}
    assert target["DeadLetterConfig"] == {"Arn": QUEUE_ARN}
    # A tick given up on is gone before the next one: at most one run per tick, never two at once.
    assert delivery_age + run_age < minutes * 60
    assert cfn["Resources"][function]["Properties"]["ReservedConcurrentExecutions"] == 1
    # Both senders may send to the queue, and only there.
    role = cfn["Resources"][target["RoleArn"]["Fn::GetAtt"][0]]
    sends = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"] if s["Action"] == "sqs:SendMessage"]
    assert sends == [{"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": QUEUE_ARN}]
    _, statements = role_statements(cfn, function)
    assert [s["Resource"] for s in statements if s["Action"] == "sqs:SendMessage"] == [QUEUE_ARN]


def test_the_failure_queue_is_encrypted_and_alarmed(cfn, source):
    queue = cfn["Resources"]["ScheduledRunFailureQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert "QueueName" not in queue
    alarm = cfn["Resources"]["ScheduledRunFailureAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum")
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["ScheduledRunFailureQueue", "QueueName"]}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["Period"], alarm["EvaluationPeriods"]) == (
        "GreaterThanThreshold", 0, 300, 1
    )
    assert alarm["TreatMissingData"] == "notBreaching"
    assert cfn["Outputs"]["ScheduledRunFailureQueueUrl"]["Value"] == {"Ref": "ScheduledRunFailureQueue"}


def test_refresh_cache_has_reserved_concurrency(cfn, source):
    parameter = source["Parameters"]["RefreshCacheReservedConcurrency"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 2, 1)
    props = cfn["Resources"]["RefreshCacheFunction"]["Properties"]
    assert props["ReservedConcurrentExecutions"] == {"Ref": "RefreshCacheReservedConcurrency"}
    for name in ["AppTokenFunction", "InstallationTokenFunction", "GetInstallationFunction"]:
        assert "ReservedConcurrentExecutions" not in cfn["Resources"][name]["Properties"], f"{name}: the request path is not capped"


# --- Per-stack signing scope -------------------------------------------------------------------------

# What a !Ref AWS::NoValue resolves to: resolve() drops the mapping key or list item that has it.
NO_VALUE = object()
SUB_NAME = re.compile(r"\$\{([^}!][^}]*)\}")


def resolve(value, params, conditions):
    """A template fragment with !If chosen and !Ref, !GetAtt (as "Logical.Attribute"), !Sub, !Join,
    !Split and !Select evaluated with the values in params. What params lacks stays as it is (a
    !Sub is rendered only when every name in it is known); AWS::NoValue removes its key or item."""
    if isinstance(value, dict) and len(value) == 1:
        [(fn, arg)] = value.items()
        if fn == "Fn::If":
            name, yes, no = arg
            return resolve(yes if conditions[name] else no, params, conditions)
        if fn == "Ref" and arg in params:
            return params[arg]
        if fn == "Fn::GetAtt":
            key = arg if isinstance(arg, str) else ".".join(arg)
            return params.get(key, value)
        if fn == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else arg
            known = {**params, **{k: resolve(v, params, conditions) for k, v in local.items()}}
            if all(isinstance(known.get(n), (str, int)) for n in SUB_NAME.findall(text)):
                return SUB_NAME.sub(lambda m: str(known[m.group(1)]), text)
            return value
        if fn == "Fn::Join":
            delimiter, items = arg[0], resolve(arg[1], params, conditions)
            return delimiter.join(items) if all(isinstance(i, str) for i in items) else value
        if fn == "Fn::Split":
            delimiter, text = arg[0], resolve(arg[1], params, conditions)
            return text.split(delimiter) if isinstance(text, str) else value
        if fn == "Fn::Select":
            index, items = arg[0], resolve(arg[1], params, conditions)
            return items[int(index)] if isinstance(items, list) else value
    if isinstance(value, dict):
        resolved = {k: resolve(v, params, conditions) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}
    if isinstance(value, list):
        return [r for r in (resolve(v, params, conditions) for v in value) if r is not NO_VALUE]
    return value


def signing_statements(cfn):
    """Every kms:Sign statement of every role in the template (inline or attached), by role."""
    found = []
    for name, resource in cfn["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            for s in attached_statements(cfn, resource):
                if "kms:Sign" in as_list(s["Action"]):
                    found.append((name, s))
    return found


def test_signing_key_scope_parameter(source):
    parameter = source["Parameters"]["SigningKeyScope"]
    assert (parameter["Type"], parameter["Default"]) == ("String", "")
    assert parameter["AllowedPattern"] == "^[A-Za-z0-9._-]{0,64}$"
    assert source["Conditions"]["HasSigningKeyScope"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "SigningKeyScope"}, ""]}]}


@pytest.mark.parametrize("scope", ["", "team-a.prod_1"])
def test_functions_sign_only_with_keys_of_their_scope(cfn, source, scope):
    """Empty scope: exactly the statements of before (keys of the TypeScript framework carry no
    AppcredsScope). A scope: the key must also be tagged AppcredsScope=<scope>."""
    params = {"SigningKeyScope": scope}
    pattern = source["Parameters"]["SigningKeyScope"]["AllowedPattern"]
    assert re.fullmatch(pattern, scope)
    conditions = {"HasSigningKeyScope": scope != ""}
    signers = signing_statements(cfn)
    assert sorted(role for role, _ in signers) == sorted(
        f"{f}Role" for f, e in EXPECTED.items() if ("kms:Sign", "AppKeys") in e["grants"]
    )
    expected = copy.deepcopy(SIGN_CONDITION)
    if scope:
        expected["StringEquals"]["aws:ResourceTag/AppcredsScope"] = scope
    else:
        expected["Null"] = {"aws:ResourceTag/AppcredsScope": "true"}
    for role, statement in signers:
        rendered = resolve(statement, params, conditions)
        assert rendered["Condition"] == expected, role
        assert rendered["Action"] == "kms:Sign" and rendered["Effect"] == "Allow"
    if scope:
        assert resolve(cfn["Outputs"]["SigningKeyScope"]["Value"], params, conditions) == scope
    assert cfn["Outputs"]["SigningKeyScope"]["Condition"] == "HasSigningKeyScope"


# --- Outputs and samconfig ---------------------------------------------------------------------------

def test_outputs_give_each_function_url_functions_arn(cfn):
    for function, e in EXPECTED.items():
        if e["url"]:
            output = cfn["Outputs"][f"{function}Arn"]
            assert output["Value"] == {"Fn::GetAtt": [function, "Arn"]}
            assert output["Export"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{function}Arn"}


def test_sam_sync_never_targets_the_production_stack():
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]
    production = config["global"]["parameters"]["stack_name"]
    assert production == "appcreds"
    assert "stack_name" not in config["deploy"]["parameters"], "sam deploy deploys the production stack"
    sync = config["sync"]["parameters"]
    assert sync["watch"] is True
    assert sync["stack_name"] == "appcreds-dev" != production


# --- Logs ---------------------------------------------------------------------------------------------

def test_every_function_logs_to_its_own_log_group(cfn, source):
    parameter = source["Parameters"]["LogRetentionInDays"]
    assert parameter["Type"] == "Number" and parameter["Default"] == 400
    assert parameter["AllowedValues"] == [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                                          1827, 2192, 2557, 2922, 3288, 3653], "CloudWatch Logs' retention values"
    # The App-key signer log (CloudTrail records through EventBridge) is no function's.
    groups = {k for k, r in cfn["Resources"].items() if r["Type"] == "AWS::Logs::LogGroup"} - {"AppKeySignerLogGroup"}
    used = set()
    for function, e in EXPECTED.items():
        logging = cfn["Resources"][function]["Properties"]["LoggingConfig"]
        [group] = [g for g in groups if logging["LogGroup"] == {"Ref": g}]
        assert group == function.removesuffix("Function") + "LogGroup"
        used.add(group)
        resource = cfn["Resources"][group]
        assert resource["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
        assert "LogGroupName" not in resource["Properties"], "a kept group must not block the stack's next creation"
        # The Function URL functions' logs are the audit trail: kept when the stack goes.
        kept = "Retain" if e["url"] else "Delete"
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == (kept, kept), group
        assert cfn["Outputs"][f"{group}Name"]["Value"] == {"Ref": group}
    assert used == groups, "one group per function"


# The log levels from the most to the least verbose; the audit lines are written at INFO.
LOG_LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]


def test_no_log_level_drops_the_audit_lines(cfn, source):
    parameter = source["Parameters"]["LogLevel"]
    assert parameter["Default"] == "INFO"
    assert parameter["AllowedValues"] == ["TRACE", "DEBUG", "INFO"]
    assert all(LOG_LEVELS.index(level) <= LOG_LEVELS.index("INFO") for level in parameter["AllowedValues"])
    assert "INFO" in parameter["Description"] and "audit" in parameter["Description"]
    for function in EXPECTED:
        logging = cfn["Resources"][function]["Properties"]["LoggingConfig"]
        assert logging["ApplicationLogLevel"] == {"Ref": "LogLevel"}, function
        assert logging["LogFormat"] == "JSON"


# --- Alarms -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("function", sorted(EXPECTED))
def test_every_function_has_error_and_throttle_alarms(cfn, function):
    short = EXPECTED[function]["short"]
    for metric in ["Errors", "Throttles"]:
        alarm = cfn["Resources"][f"{function.removesuffix('Function')}{metric}Alarm"]["Properties"]
        assert alarm["AlarmName"] == {"Fn::Sub": f"${{AWS::StackName}}-{short}-{metric.lower()}"}
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", metric, "Sum")
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
        assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
            300, 1, "GreaterThanThreshold", 0
        )
        assert alarm["TreatMissingData"] == "notBreaching"


def test_every_alarm_notifies_the_topic_the_same_way(cfn):
    alarms = {k: r["Properties"] for k, r in cfn["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    # The rate limit and the scanner's two, the failure queue's, the rotator's three, the App-key
    # signers', and per function two.
    assert len(alarms) == 3 + 1 + 3 + 1 + 2 * len(EXPECTED), sorted(alarms)
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == ALARM_TOPIC, name
        assert alarm["OKActions"] == ALARM_TOPIC, name
        assert "InsufficientDataActions" not in alarm, name


# --- The access-key rotator ---------------------------------------------------------------------------

ROTATOR = "AccessKeyRotatorFunction"
ROTATOR_ALARMS = {
    # logical ID: (metric, statistic, comparison, threshold, evaluation periods, missing data)
    "AccessKeyRotationFailureAlarm": ("RotationFailures", "Sum", "GreaterThanThreshold", 0, 1, "notBreaching"),
    "AccessKeyOverMaxAgeAlarm": ("KeysOverMaxAge", "Maximum", "GreaterThanThreshold", 0, 1, "notBreaching"),
    # Silence is an alarm: every scheduled run publishes RotationRuns.
    # Over RotatorSilentHours hours (2 by default), so that a slower schedule can raise it.
    "AccessKeyRotatorHeartbeatAlarm": (
        "RotationRuns", "Sum", "LessThanThreshold", 1, {"Ref": "RotatorSilentHours"}, "breaching"
    ),
}


def every_statement(cfn):
    """(resource, statement) for every statement of every role (inline and trust) and managed policy."""
    for name, resource in cfn["Resources"].items():
        for v in each_mapping(resource.get("Properties", {})):
            if "Effect" in v and ("Action" in v or "NotAction" in v):
                yield name, v


def test_the_rotator_manages_access_keys_only_of_users_under_its_path(cfn, source):
    _, statements = role_statements(cfn, ROTATOR)
    [iam] = [s for s in statements if any(a.startswith("iam:") for a in as_list(s["Action"]))]
    assert set(as_list(iam["Action"])) == ROTATOR_IAM
    assert iam["Resource"] == ROTATED_USERS and "Condition" not in iam
    # No other IAM action anywhere in the template, and none on every resource.
    for name, s in every_statement(cfn):
        assert "NotAction" not in s, name
        for action in as_list(s["Action"]):
            if action.lower().startswith("iam:"):
                assert (name, s) == (f"{ROTATOR}Role", iam), f"{name}: {action}"
                assert "*" not in as_list(s["Resource"]) and "*" not in action
    rendered = render_sub(ROTATED_USERS, {"AWS::Partition": "aws", "AWS::AccountId": "123456789012",
                                          "RotatedUsersPath": source["Parameters"]["RotatedUsersPath"]["Default"]})
    assert rendered == "arn:aws:iam::123456789012:user/appcreds-rotated/*"
    env = cfn["Resources"][ROTATOR]["Properties"]["Environment"]["Variables"]
    assert env["ROTATION_IAM_PATH"] == {"Ref": "RotatedUsersPath"}, "the code checks the path it is allowed"


@pytest.mark.parametrize("path,allowed", [
    ("/appcreds-rotated/", True),
    ("/team/ci-users/", True),
    ("/", False),  # every user of the account
    ("appcreds-rotated/", False),
    ("/appcreds-rotated", False),
    ("/a//b/", False),
    ("/with space/", False),
    # The path goes into the policy's resource ARN: no wildcard, no policy variable.
    ("/*/", False),
    ("/app?/", False),
    ("/${aws:username}/", False),
])
def test_the_rotated_users_path_is_an_iam_path_below_the_root(source, path, allowed):
    parameter = source["Parameters"]["RotatedUsersPath"]
    assert (parameter["Type"], parameter["Default"], parameter["MaxLength"]) == ("String", "/appcreds-rotated/", 512)
    assert bool(re.fullmatch(parameter["AllowedPattern"], path)) is allowed


def test_the_rotator_signs_like_the_other_signers(cfn):
    signing = {role: s for role, s in signing_statements(cfn)}
    rotator = signing[f"{ROTATOR}Role"]
    for role, s in signing.items():
        assert s == rotator, role
    assert rotator["Condition"] == {"Fn::If": ["HasSigningKeyScope", SCOPED_SIGN_CONDITION, UNSCOPED_SIGN_CONDITION]}


def test_the_rotator_encrypts_only_with_its_key_under_its_context(cfn, source):
    uses = [(name, s) for name, s in every_statement(cfn)
            if {"kms:Encrypt", "kms:Decrypt"} & set(as_list(s["Action"])) or "RotationKey" in json.dumps(s)]
    # The keys' own policies: below, and the shared App JWT key's in its own test.
    uses = [(name, s) for name, s in uses if name not in ("RotationKey", "SharedAppJwtKey")]
    assert [name for name, _ in uses] == [f"{ROTATOR}Role"]
    [(_, s)] = uses
    assert sorted(as_list(s["Action"])) == ["kms:Decrypt", "kms:Encrypt"]
    assert s["Resource"] == ROTATION_KEY
    assert s["Condition"] == ROTATION_CONTEXT_CONDITION
    key = source["Resources"]["RotationKey"]["Properties"]
    assert (key["KeySpec"], key["KeyUsage"], key["EnableKeyRotation"]) == ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", True)
    assert "pending secret access key" in key["Description"]
    [admin] = key["KeyPolicy"]["Statement"]
    assert admin["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    assert not [r for r in cfn["Resources"].values() if r["Type"] == "AWS::KMS::Alias"], "no fixed alias"
    assert cfn["Resources"][ROTATOR]["Properties"]["Environment"]["Variables"]["ROTATION_KMS_KEY_ID"] == ROTATION_KEY


def test_the_rotator_encrypts_only_under_both_context_keys(cfn):
    """The rotator's role, through the evaluator: the pending secret is encrypted and decrypted
    under its user and key ID together; a context without one of them, with another key, or none,
    is refused (ForAllValues alone would take a context of one key)."""
    _, statements = role_statements(cfn, ROTATOR)
    statements = render(cfn, statements)
    arn = render(cfn, ROTATION_KEY)
    values = {"appcreds:UserName": "deploy-bot", "appcreds:AccessKeyId": "AKIAEXAMPLE"}

    def given(pairs):
        # What KMS puts in the request context for an encryption context of `pairs`.
        return {"kms:EncryptionContextKeys": list(pairs), **{f"kms:EncryptionContext:{k}": v for k, v in pairs.items()}}

    for action in ["kms:Encrypt", "kms:Decrypt"]:
        assert decide(statements, action, arn, given(values)) == "Allow", action
        assert decide(statements, action, arn) != "Allow", (action, "no context")
        assert decide(statements, action, arn, given({**values, "appcreds:AppId": "1"})) != "Allow", (action, "another key")
        for missing in values:
            subset = given({k: v for k, v in values.items() if k != missing})
            assert decide(statements, action, arn, subset) != "Allow", (action, "without", missing)


def test_only_the_rotator_reaches_the_rotation_table(cfn, source):
    reach = [(name, s) for name, s in every_statement(cfn) if "RotationTable" in json.dumps(s.get("Resource"))]
    assert sorted(name for name, _ in reach) == sorted([f"{ROTATOR}Role", "OperatorPolicy", "OperatorPolicy"])
    operator = set()
    for name, s in reach:
        assert s["Resource"] == ROTATION_TABLE, (name, s)
        if name == f"{ROTATOR}Role":
            assert set(as_list(s["Action"])) == ROTATOR_TABLE_ACTIONS
        else:
            operator |= set(as_list(s["Action"]))
            if "dynamodb:UpdateItem" in as_list(s["Action"]):
                assert as_list(s["Action"]) == ["dynamodb:UpdateItem"] and s["Condition"] == OPERATOR_SPEC_CONDITION
    assert operator == OPERATOR_ROTATION_ACTIONS
    table = cfn["Resources"]["RotationTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "UserName", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "UserName", "AttributeType": "S"}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert "TableName" not in table
    assert {"Key": "CredentialManager", "Value": "RotationTable"} in table["Tags"]
    resource = source["Resources"]["RotationTable"]
    assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain"), "targets outlive the stack"


def test_the_rotator_publishes_only_to_its_namespace(cfn):
    _, statements = role_statements(cfn, ROTATOR)
    [put] = [s for s in statements if "cloudwatch:PutMetricData" in as_list(s["Action"])]
    assert put["Action"] == "cloudwatch:PutMetricData" and put["Resource"] == "*"
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": ROTATOR_NAMESPACE}}


def test_the_rotators_environment(cfn):
    env = cfn["Resources"][ROTATOR]["Properties"]["Environment"]["Variables"]
    assert env["ROTATION_TABLE_NAME"] == {"Ref": "RotationTable"}
    assert env["INSTALLATION_TABLE_NAME"] == {"Ref": "InstallationTable"}
    assert env["LEASE_TABLE_NAME"] == {"Ref": "LeaseTable"}
    assert env["APP_TABLE_NAME"] == {"Ref": "AppTable"}


def test_the_rotator_runs_hourly_and_ends_before_its_next_run(cfn, source):
    parameter = source["Parameters"]["RotatorSchedule"]
    assert (parameter["Type"], parameter["Default"]) == ("String", "rate(1 hour)")
    assert re.fullmatch(parameter["AllowedPattern"], parameter["Default"])
    assert re.fullmatch(parameter["AllowedPattern"], "cron(0 * * * ? *)")
    assert not re.fullmatch(parameter["AllowedPattern"], "1 hour")
    interval = schedule_minutes({"Ref": "RotatorSchedule"}, source) * 60
    timeout = cfn["Resources"][ROTATOR]["Properties"]["Timeout"]
    assert timeout == 900 < interval
    # A tick delivered and run as late as allowed still ends before the next tick.
    _, _, delivery_age, run_age = SCHEDULED[ROTATOR]
    assert delivery_age + run_age + timeout < interval


def test_the_rotators_silence_window_outlasts_its_schedule(source):
    parameter = source["Parameters"]["RotatorSilentHours"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 2, 2)
    # CloudWatch evaluates an hourly alarm over at most 7 days.
    assert parameter["MaxValue"] == 168
    # The default schedule runs at least once in every default window, with a run to spare.
    interval_hours = schedule_minutes({"Ref": "RotatorSchedule"}, source) / 60
    assert parameter["Default"] >= 2 * interval_hours


def test_the_rotators_alarms(cfn):
    for name, (metric, statistic, comparison, threshold, periods, missing) in ROTATOR_ALARMS.items():
        alarm = cfn["Resources"][name]["Properties"]
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (ROTATOR_NAMESPACE, metric, statistic), name
        assert "Dimensions" not in alarm, name
        assert (alarm["Period"], alarm["ComparisonOperator"], alarm["Threshold"]) == (3600, comparison, threshold), name
        assert (alarm["EvaluationPeriods"], alarm.get("DatapointsToAlarm", periods)) == (periods, periods), name
        assert alarm["TreatMissingData"] == missing, name
        assert alarm["AlarmActions"] == ALARM_TOPIC and alarm["OKActions"] == ALARM_TOPIC, name
        assert derived_from_the_stack(alarm["AlarmName"], cfn["Resources"]), name


def test_the_dashboard_shows_the_rotator(cfn):
    body = dashboard(cfn, 20)
    by_title = {w["properties"]["title"]: w for w in body["widgets"]}
    [ages] = [w for t, w in by_title.items() if t.startswith("Access-key rotator: key age")]
    assert ages["properties"]["metrics"] == [[{
        "expression": f'SELECT MAX(KeyAgeHours) FROM SCHEMA("{ROTATOR_NAMESPACE}", UserName) GROUP BY UserName '
                      "ORDER BY MAX() DESC LIMIT 100",
        "id": "keyage", "period": 3600,
    }]]
    [runs] = [w for t, w in by_title.items() if t.startswith("Access-key rotator: runs")]
    assert metric_lines(runs) == [[ROTATOR_NAMESPACE, m] for m in ["RotationRuns", "RotationFailures", "KeysOverMaxAge"]]
    assert by_title["Access-key rotator alarms"]["properties"]["alarms"] == [f"arn:{a}" for a in ROTATOR_ALARMS]


def test_the_outputs_give_the_cli_the_rotator(cfn):
    outputs = cfn["Outputs"]
    assert outputs["AccessKeyRotatorFunctionArn"]["Value"] == {"Fn::GetAtt": [ROTATOR, "Arn"]}
    assert outputs["RotationTableName"]["Value"] == {"Ref": "RotationTable"}
    assert outputs["RotationKeyArn"]["Value"] == ROTATION_KEY
    for name in ["AccessKeyRotatorFunctionArn", "RotationTableName"]:
        assert outputs[name]["Export"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{name}"}


# --- Rendering the template for given parameter values -----------------------------------------------

ACCOUNT = "123456789012"
REGION = "us-east-1"
# Placeholder ARNs of this stack's resources, by type (what !GetAtt X.Arn renders to).
ARN_OF = {
    "AWS::Lambda::Function": "arn:aws:lambda:{region}:{account}:function:appcreds-{name}",
    "AWS::IAM::Role": "arn:aws:iam::{account}:role/appcreds-{name}",
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:{region}:{account}:table/appcreds-{name}",
    "AWS::KMS::Key": "arn:aws:kms:{region}:{account}:key/{name}",
    "AWS::Logs::LogGroup": "arn:aws:logs:{region}:{account}:log-group:appcreds-{name}:*",
    "AWS::Events::Rule": "arn:aws:events:{region}:{account}:rule/appcreds-{name}",
}


def stack_values(template, **params):
    """What !Ref and !GetAtt resolve to in a stack "appcreds" of account ACCOUNT: pseudo
    parameters, each parameter's default (or the value given here), and placeholders for the
    resources (a resource's !Ref is `ref:<LogicalId>`, its Arn as in ARN_OF)."""
    values = {
        "AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": "appcreds",
        "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/appcreds/0a1b2c3d",
        "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": NO_VALUE,
    }
    for name, parameter in template.get("Parameters", {}).items():
        default = parameter.get("Default", "")
        if parameter["Type"] == "CommaDelimitedList":
            default = str(default).split(",")
        values[name] = default
    for name, resource in template["Resources"].items():
        values[name] = f"ref:{name}"
        pattern = ARN_OF.get(resource["Type"], "arn:aws:test:{region}:{account}:{name}")
        values[f"{name}.Arn"] = pattern.format(region=REGION, account=ACCOUNT, name=name)
    for name, value in params.items():
        assert name in values, f"{name} is no parameter of the template"
        values[name] = value.split(",") if template["Parameters"][name]["Type"] == "CommaDelimitedList" else value
    return values


def evaluate_condition(expression, values, conditions):
    """A condition function (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition) for these values."""
    [(fn, arg)] = expression.items()
    if fn == "Fn::Equals":
        a, b = (resolve(v, values, conditions) for v in arg)
        return (",".join(a) if isinstance(a, list) else str(a)) == (",".join(b) if isinstance(b, list) else str(b))
    if fn == "Fn::Not":
        return not evaluate_condition(arg[0], values, conditions)
    if fn == "Fn::And":
        return all(evaluate_condition(c, values, conditions) for c in arg)
    if fn == "Fn::Or":
        return any(evaluate_condition(c, values, conditions) for c in arg)
    if fn == "Condition":
        return conditions[arg]
    raise NotImplementedError(fn)


class Conditions(dict):
    """The template's conditions for given values, each evaluated when first asked for."""

    def __init__(self, template, values):
        super().__init__()
        self.template, self.values = template, values

    def __missing__(self, name):
        self[name] = evaluate_condition(self.template["Conditions"][name], self.values, self)
        return self[name]


def render(template, fragment, **params):
    """A fragment of the template as CloudFormation would deploy it with these parameter values."""
    values = stack_values(template, **params)
    return resolve(fragment, values, Conditions(template, values))


def intrinsics_left(value):
    """The intrinsic functions a rendered fragment still has (none, when fully rendered)."""
    return [m for m in each_mapping(value) if len(m) == 1 and next(iter(m)) in ("Ref", "Condition")
            or any(k.startswith("Fn::") for k in m)]


def rules_hold(template, **params):
    """Whether every Rules assertion holds for these parameter values (CloudFormation refuses
    the stack when one does not); the descriptions of those that fail."""
    values = stack_values(template, **params)
    conditions = Conditions(template, values)
    failed = []
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not evaluate_condition(rule["RuleCondition"], values, conditions):
            continue
        for assertion in rule["Assertions"]:
            if not evaluate_condition(assertion["Assert"], values, conditions):
                failed.append(f"{name}: {assertion['AssertDescription']}")
    return failed


# --- A small IAM policy evaluator ---------------------------------------------------------------------
# Enough of IAM's documented evaluation for the template's own policies and the guard: an explicit
# Deny wins, then an Allow, else the request is refused (implicitly). Action and NotAction with
# wildcards (case-insensitive), Resource and NotResource (an ARN's six parts matched one by one),
# and the condition operators the template uses. Condition keys are case-insensitive; a key the
# request lacks makes every operator false except the negated ones (true), ...IfExists (true),
# Null, ForAllValues (true: nothing to contradict) and ForAnyValue (false). A multi-valued key
# under a single-valued operator, a policy variable or an operator it lacks is an error here,
# never a guess.

NEGATED = {"StringNotEquals": "StringEquals", "StringNotLike": "StringLike",
           "ArnNotLike": "ArnLike", "ArnNotEquals": "ArnEquals"}
POSITIVE = {"StringEquals", "StringLike", "Bool", "ArnLike", "ArnEquals"}


def wildcard(pattern, text, ignore_case=False):
    """IAM's * (any run of characters) and ? (one character)."""
    if "${" in pattern:
        raise NotImplementedError(f"policy variable in {pattern!r}")
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def arn_like(pattern, arn):
    """An ARN against a pattern, each of its six colon-separated parts on its own (a wildcard
    does not reach across a colon, except in the last part, the resource, which keeps its colons)."""
    if pattern == "*":
        return True
    parts, wanted = arn.split(":", 5), pattern.split(":", 5)
    return len(parts) == len(wanted) == 6 and all(wildcard(w, p) for w, p in zip(wanted, parts))


def operator_matches(operator, policy_value, request_value):
    if operator == "StringEquals":
        return request_value == policy_value
    if operator == "StringLike":
        return wildcard(policy_value, request_value)
    if operator == "Bool":
        return request_value.lower() == policy_value.lower()
    return arn_like(policy_value, request_value)  # ArnLike, ArnEquals (both take wildcards)


def condition_holds(operator, key, wanted, context):
    present = key.lower() in context
    request = context.get(key.lower())
    wanted = [str(w).lower() if isinstance(w, bool) else str(w) for w in as_list(wanted)]
    if any("${" in w for w in wanted):
        raise NotImplementedError(f"policy variable in {wanted!r}")
    if operator == "Null":
        [absent] = wanted
        return (not present) == (absent.lower() == "true")
    qualifier, _, base = operator.rpartition(":")
    if_exists, base = base.endswith("IfExists"), base.removesuffix("IfExists")
    negated, positive = base in NEGATED, NEGATED.get(base, base)
    if positive not in POSITIVE or qualifier not in ("", "ForAllValues", "ForAnyValue"):
        raise NotImplementedError(operator)
    if qualifier:
        if negated or if_exists:
            raise NotImplementedError(operator)
        matched = [any(operator_matches(positive, w, r) for w in wanted) for r in as_list(request or [])]
        return all(matched) if qualifier == "ForAllValues" else present and any(matched)
    if not present:
        return negated or if_exists
    if isinstance(request, list):
        raise ValueError(f"{key} has several values in the request: a set operator decides how they compare")
    matched = any(operator_matches(positive, w, request) for w in wanted)
    return matched != negated


def statement_applies(statement, action, resource, context):
    if "Action" in statement:
        acts = any(wildcard(a, action, ignore_case=True) for a in as_list(statement["Action"]))
    else:
        acts = not any(wildcard(a, action, ignore_case=True) for a in as_list(statement["NotAction"]))
    if "Resource" in statement:
        on = any(arn_like(r, resource) for r in as_list(statement["Resource"]))
    else:
        on = not any(arn_like(r, resource) for r in as_list(statement["NotResource"]))
    return acts and on and all(
        condition_holds(operator, key, wanted, context)
        for operator, block in statement.get("Condition", {}).items()
        for key, wanted in block.items()
    )


def decide(statements, action, resource, context=None):
    """"Deny" (explicit), "Allow", or "ImplicitDeny" for one request."""
    assert not intrinsics_left(statements), intrinsics_left(statements)
    context = {k.lower(): v for k, v in (context or {}).items()}
    effects = {s["Effect"] for s in statements if statement_applies(s, action, resource, context)}
    return "Deny" if "Deny" in effects else "Allow" if "Allow" in effects else "ImplicitDeny"


def test_the_policy_evaluator_follows_iam():
    """The evaluator itself, against the rules IAM documents."""
    allow = {"Effect": "Allow", "Action": "kms:Sign", "Resource": "arn:aws:kms:*:123456789012:key/*"}
    key = "arn:aws:kms:us-east-1:123456789012:key/k1"
    assert decide([allow], "kms:Sign", key) == "Allow"
    assert decide([allow], "KMS:sign", key) == "Allow", "actions are case-insensitive"
    assert decide([allow], "kms:Verify", key) == "ImplicitDeny"
    assert decide([allow], "kms:Sign", "arn:aws:kms:us-east-1:210987654321:key/k1") == "ImplicitDeny"
    assert decide([allow], "kms:Sign", "*") == "ImplicitDeny", "a key pattern is not every resource"
    assert not arn_like("arn:aws:kms:*:123456789012:key/*", "arn:aws:kms:us-east-1:1:2:123456789012:key/k")
    deny = {"Effect": "Deny", "NotAction": "kms:Sign", "Resource": "*"}
    assert decide([allow, deny], "kms:Sign", key) == "Allow"
    assert decide([{**allow, "Action": "kms:*"}, deny], "kms:Decrypt", key) == "Deny", "an explicit deny wins"

    def holds(condition, context):
        return decide([{**allow, "Condition": condition}], "kms:Sign", key, context) == "Allow"

    tag = "aws:ResourceTag/Scope"
    assert holds({"StringEquals": {tag: "prod"}}, {tag: "prod"})
    assert holds({"StringEquals": {tag: "prod"}}, {"AWS:resourcetag/scope": "prod"}), "keys are case-insensitive"
    assert not holds({"StringEquals": {tag: "prod"}}, {tag: "Prod"}), "values are not"
    assert holds({"StringEquals": {tag: ["a", "prod"]}}, {tag: "prod"}), "any of the values"
    assert not holds({"StringEquals": {tag: "prod", "kms:MessageType": "RAW"}}, {tag: "prod"}), "every key"
    assert not holds({"StringEquals": {tag: "prod"}}, {}), "an absent key matches nothing"
    assert holds({"StringNotEquals": {tag: "prod"}}, {}), "...except a negated operator"
    assert not holds({"StringNotEquals": {tag: ["prod", "dev"]}}, {tag: "dev"})
    assert holds({"StringLike": {tag: "pr?d*"}}, {tag: "prod-1"})
    assert holds({"Null": {tag: "true"}}, {}) and not holds({"Null": {tag: "true"}}, {tag: ""})
    assert holds({"Null": {tag: "false"}}, {tag: "x"}) and not holds({"Null": {tag: "false"}}, {})
    assert holds({"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}, {"lambda:InvokedViaFunctionUrl": "True"})
    assert not holds({"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}, {})
    assert holds({"BoolIfExists": {"lambda:InvokedViaFunctionUrl": "false"}}, {})
    keys = "aws:TagKeys"
    assert holds({"ForAllValues:StringEquals": {keys: ["Status", "AppId"]}}, {keys: ["Status"]})
    assert not holds({"ForAllValues:StringEquals": {keys: ["Status"]}}, {keys: ["Status", "Owner"]})
    assert holds({"ForAllValues:StringEquals": {keys: ["Status"]}}, {}), "vacuously: hence the Null checks"
    assert holds({"ForAnyValue:StringEquals": {keys: ["Scope"]}}, {keys: ["Status", "Scope"]})
    assert not holds({"ForAnyValue:StringEquals": {keys: ["Scope"]}}, {}), "nothing to match"
    assert holds({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/deploy"}},
                 {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/caller"})
    assert not holds({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/de*"}},
                     {"aws:PrincipalArn": "arn:aws:iam::123456789012:user/role/deploy"})
    with pytest.raises(ValueError):
        holds({"StringEquals": {keys: "Status"}}, {keys: ["Status"]})
    with pytest.raises(NotImplementedError):
        holds({"NumericLessThan": {"kms:ValidTo": "1"}}, {"kms:ValidTo": "0"})
    with pytest.raises(NotImplementedError):
        holds({"StringEquals": {tag: "${aws:username}"}}, {tag: "x"})


# --- The managed policies -----------------------------------------------------------------------------

APP_KEYS = "AppKeys"
# Per managed policy, per statement: (effect, actions, resource). A new statement adds a row here.
EXPECTED_POLICIES = {
    # The functions' one signing statement (attached to the roles of those that sign).
    "AppKeySigningPolicy": {
        "SignWithActiveAppKeys": ("Allow", {"kms:Sign"}, APP_KEYS),
        "ShareAppJwts": ("Allow", {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"}, "LeaseTable"),
        "ReadAppRowsWithTheirJwts": ("Allow", {"dynamodb:BatchGetItem"}, "AppTable"),
    },
    "CallerPolicy": {
        "InvokeTheFunctionUrl": ("Allow", {"lambda:InvokeFunctionUrl"}, "InstallationTokenFunction"),
        "InvokeOnlyThroughTheFunctionUrl": ("Allow", {"lambda:InvokeFunction"}, "InstallationTokenFunction"),
    },
    "ReaderPolicy": {
        "InvokeTheFunctionUrl": ("Allow", {"lambda:InvokeFunctionUrl"}, "GetInstallationFunction"),
        "InvokeOnlyThroughTheFunctionUrl": ("Allow", {"lambda:InvokeFunction"}, "GetInstallationFunction"),
    },
    "OperatorPolicy": {
        "InvokeRefreshThroughItsFunctionUrl": ("Allow", {"lambda:InvokeFunctionUrl"}, "RefreshCacheFunction"),
        "InvokeRefreshOnlyThroughItsFunctionUrl": ("Allow", {"lambda:InvokeFunction"}, "RefreshCacheFunction"),
        "CreateAppKeys": ("Allow", {"kms:CreateKey"}, "*"),
        "TagNewAppKeys": ("Allow", {"kms:TagResource"}, "*"),
        "ImportAndRetireAppKeys": ("Allow", {
            "kms:GetParametersForImport", "kms:ImportKeyMaterial", "kms:GetPublicKey", "kms:DescribeKey",
            "kms:ListResourceTags", "kms:ScheduleKeyDeletion",
        }, APP_KEYS),
        "ProveAppKeys": ("Allow", {"kms:Sign"}, APP_KEYS),
        "RetagAppKeys": ("Allow", {"kms:TagResource"}, APP_KEYS),
        "KeepAppKeysInTheirScope": ("Deny", {"kms:TagResource", "kms:UntagResource"}, APP_KEYS),
        "ListKeys": ("Allow", {"kms:ListKeys"}, "*"),
        "RegisterAndRotateApps": ("Allow", {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Scan"}, "AppTable"),
        "ManageAccessRules": ("Allow", {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Scan"},
                              "AccessTable"),
        "ManageRotationTargets": ("Allow", OPERATOR_ROTATION_ACTIONS - {"dynamodb:UpdateItem"}, "RotationTable"),
        "WriteRotationSpecs": ("Allow", {"dynamodb:UpdateItem"}, "RotationTable"),
        "RunTheRotator": ("Allow", {"lambda:InvokeFunction"}, ROTATOR),
        "ReadTheStackOutputs": ("Allow", {"cloudformation:DescribeStacks"}, "AWS::StackId"),
    },
}


def policy_resource_name(resource):
    """Names a managed policy statement's resource the way EXPECTED_POLICIES does."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return resource["Fn::GetAtt"][0]
    if resource == {"Ref": "AWS::StackId"}:
        return "AWS::StackId"
    if resource == {"Fn::Sub": KMS_KEYS}:
        return APP_KEYS
    return resource_name(resource)


@pytest.mark.parametrize("policy", sorted(EXPECTED_POLICIES))
def test_each_managed_policy_grants_exactly_its_statements(cfn, policy):
    """The caller, reader and operator policies, statement by statement, as the function roles are."""
    statements = policy_statements(cfn, policy)
    found = {}
    for s in statements:
        assert s["Sid"] not in found, f"{policy}: two statements {s['Sid']}"
        assert "NotAction" not in s and "NotResource" not in s and "Principal" not in s, s["Sid"]
        actions = set(as_list(s["Action"]))
        assert all("*" not in a for a in actions), s["Sid"]
        [resource] = as_list(s["Resource"])
        found[s["Sid"]] = (s["Effect"], actions, policy_resource_name(resource))
    assert found == EXPECTED_POLICIES[policy]


@pytest.mark.parametrize("policy", sorted(EXPECTED_POLICIES))
def test_each_managed_policy_fits_iams_size_limit(cfn, policy):
    """IAM refuses a managed policy over 6,144 characters (whitespace not counted): rendered with
    the longest scope, and 100 characters more for each of the stack's own resource ARNs than the
    placeholders have (a long stack name, CloudFormation's suffixes)."""
    document = cfn["Resources"][policy]["Properties"]["PolicyDocument"]
    rendered = render(cfn, document, SigningKeyScope="s" * 64)
    own = sum(1 for s in rendered["Statement"] for r in as_list(s["Resource"]) if "appcreds" in r)
    assert len(json.dumps(rendered, separators=(",", ":"))) + 100 * own < 6144


# --- The operator policy keeps each stack's operators to the stack's own App keys ----------------------

MANAGED = "FrameworkForGitHubAppOnAwsManaged"
SCOPE = "AppcredsScope"
# What KMS puts in the request context for a key resource operation on an App key (its origin, spec
# and usage; AWS documents kms:KeyOrigin, kms:KeySpec and kms:KeyUsage for key resource operations).
APP_KEY = {"kms:KeyOrigin": "EXTERNAL", "kms:KeySpec": "RSA_2048", "kms:KeyUsage": "SIGN_VERIFY"}
PROOF = {"kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256", "kms:MessageType": "RAW"}


def key_arn(name):
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{name}"


def app_key_tags(scope, status="Active"):
    """The tags of an App key the CLI imported for a stack of `scope` (None: an unscoped stack's,
    or the TypeScript framework's, which carry no AppcredsScope)."""
    tags = {MANAGED: "true", "Status": status, "AppId": "123456", "CreatedOn": "2026-11-25T10:00:00Z"}
    if scope:
        tags[SCOPE] = scope
    return tags


def on_key(tags, properties=APP_KEY, **request):
    """The context of a request on an existing key with these tags."""
    return {**{f"aws:ResourceTag/{k}": v for k, v in tags.items()}, **properties, **request}


def tagging(tags=None, keys=None):
    """The request half of a TagResource (the tags given) or an UntagResource (the keys removed)."""
    context = {f"aws:RequestTag/{k}": v for k, v in (tags or {}).items()}
    return {**context, "aws:TagKeys": list(keys if keys is not None else tags)}


def key_operations(tags, properties=APP_KEY):
    """What another stack's operator would do to a key with these tags: sign a JWT with it, retire
    it (tag it Inactive), delete it, import other material into it."""
    arn = key_arn("k1")
    retire = {"Status": "Inactive", "ReplacedBy": key_arn("k2"), "ReplacedOn": "2026-12-01T10:00:00Z"}
    return {
        "Sign": ("kms:Sign", arn, on_key(tags, properties, **PROOF)),
        "TagResource Status=Inactive": ("kms:TagResource", arn, on_key(tags, properties, **tagging(retire))),
        "ScheduleKeyDeletion": ("kms:ScheduleKeyDeletion", arn, on_key(tags, properties)),
        "GetParametersForImport": ("kms:GetParametersForImport", arn, on_key(tags, properties, **{
            "kms:WrappingAlgorithm": "RSA_AES_KEY_WRAP_SHA_256", "kms:WrappingKeySpec": "RSA_4096"})),
        "ImportKeyMaterial": ("kms:ImportKeyMaterial", arn, on_key(tags, properties, **{
            "kms:ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"})),
        "GetPublicKey": ("kms:GetPublicKey", arn, on_key(tags, properties)),
    }


def create_key(tags, spec=APP_KEY):
    """The two authorizations of a CreateKey with tags: CreateKey itself, and TagResource (on "*":
    the key does not exist yet)."""
    return [("kms:CreateKey", "*", {**spec, **tagging(tags)}), ("kms:TagResource", "*", tagging(tags))]


def operator_statements(cfn, scope):
    statements = render(cfn, policy_statements(cfn, "OperatorPolicy"), SigningKeyScope=scope)
    assert not intrinsics_left(statements), intrinsics_left(statements)
    return statements


# A stack's scope (SigningKeyScope; "" for none) and the scopes of other stacks' keys (None: unscoped).
OTHER_KEYS = {"": ["prod"], "staging": ["prod", None]}


@pytest.mark.parametrize("scope", sorted(OTHER_KEYS))
def test_an_operator_is_refused_another_stacks_app_keys(cfn, scope):
    """A staging operator must not sign JWTs with prod's App key, retire it or delete it, nor
    import other material into it; an unscoped stack's operator none of a scoped stack's keys, and
    a scoped stack's operator none of the unscoped ones (another stack's, or the TypeScript
    framework's)."""
    statements = operator_statements(cfn, scope)
    for other in OTHER_KEYS[scope]:
        for status in ["Active", "Importing", "Inactive"]:
            for name, (action, arn, context) in key_operations(app_key_tags(other, status)).items():
                assert decide(statements, action, arn, context) != "Allow", (scope, other, status, name)


@pytest.mark.parametrize("scope", sorted(OTHER_KEYS))
def test_an_operator_imports_proves_rotates_and_retires_its_own_keys(cfn, scope):
    """What `appcreds key import|rotate|retire|list` does, step by step, on the stack's own keys."""
    statements = operator_statements(cfn, scope)
    own = scope or None
    created = app_key_tags(own, "Importing")
    for request in create_key(created):
        assert decide(statements, *request) == "Allow", request
    arn = key_arn("k1")
    steps = [
        ("kms:GetParametersForImport", on_key(created)),
        ("kms:ImportKeyMaterial", on_key(created)),
        ("kms:Sign", on_key(created, **PROOF)),
        ("kms:TagResource", on_key(created, **tagging({"Status": "Active"}))),
        ("kms:TagResource", on_key(created, **tagging({"Status": "Failed"}))),
        ("kms:GetPublicKey", on_key(app_key_tags(own))),
        ("kms:DescribeKey", on_key(app_key_tags(own))),
        ("kms:ListResourceTags", on_key(app_key_tags(own))),
        ("kms:TagResource", on_key(app_key_tags(own), **tagging(
            {"Status": "Inactive", "ReplacedBy": key_arn("k2"), "ReplacedOn": "2026-12-01T10:00:00Z"}))),
        ("kms:ScheduleKeyDeletion", on_key(app_key_tags(own, "Inactive"))),
    ]
    for action, context in steps:
        assert decide(statements, action, arn, context) == "Allow", (action, context)
    assert decide(statements, "kms:ListKeys", "*") == "Allow"


@pytest.mark.parametrize("scope", sorted(OTHER_KEYS))
def test_an_operator_creates_app_keys_only_in_its_own_scope(cfn, scope):
    statements = operator_statements(cfn, scope)
    own = scope or None

    def allowed(tags, spec=APP_KEY):
        return all(decide(statements, *request) == "Allow" for request in create_key(tags, spec))

    assert allowed(app_key_tags(own, "Importing"))
    for other in OTHER_KEYS[scope]:
        assert not allowed(app_key_tags(other, "Importing")), other
    assert not allowed(app_key_tags(own, "Active")), "a new key is Importing until it is proven"
    assert not allowed({**app_key_tags(own, "Importing"), "Owner": "someone"}), "only the CLI's tags"
    assert not allowed({k: v for k, v in app_key_tags(own, "Importing").items() if k != MANAGED})
    assert not allowed(app_key_tags(own, "Importing"), {**APP_KEY, "kms:KeySpec": "SYMMETRIC_DEFAULT"})
    assert not allowed(app_key_tags(own, "Importing"), {**APP_KEY, "kms:KeyOrigin": "AWS_KMS"})


@pytest.mark.parametrize("scope", sorted(OTHER_KEYS))
def test_an_operator_cannot_move_a_key_out_of_its_scope_or_into_its_own(cfn, scope):
    """Changing AppcredsScope or the managed tag of an existing App key is denied outright, so an
    operator cannot hand its key to another stack nor take another stack's (or the TypeScript
    framework's) into its own; only Status, ReplacedBy and ReplacedOn are retagged."""
    statements = operator_statements(cfn, scope)
    own = scope or None
    arn = key_arn("k1")
    for tags in [app_key_tags(own), app_key_tags(None), app_key_tags("prod")]:
        for change in [{SCOPE: "prod"}, {SCOPE: scope or "staging"}, {MANAGED: "false"}, {MANAGED: "true"},
                       app_key_tags(own, "Importing")]:
            assert decide(statements, "kms:TagResource", arn, on_key(tags, **tagging(change))) == "Deny", (tags, change)
        for removed in [[SCOPE], [MANAGED], ["Status", SCOPE]]:
            context = on_key(tags, **tagging(keys=removed))
            assert decide(statements, "kms:UntagResource", arn, context) == "Deny", (tags, removed)
    for change in [{"AppId": "999"}, {"CreatedOn": "2020-01-01T00:00:00Z"}, {"Owner": "x"}]:
        context = on_key(app_key_tags(own), **tagging(change))
        assert decide(statements, "kms:TagResource", arn, context) != "Allow", change


@pytest.mark.parametrize("scope", sorted(OTHER_KEYS))
def test_an_operator_signs_only_the_import_proof(cfn, scope):
    """The operator signs once per import, a RAW message with RSASSA_PKCS1_V1_5_SHA_256 while the
    key is Importing (the CLI's proof, before it tags the key Active); nothing else, and no key in
    use: it cannot set Status=Importing again either."""
    statements = operator_statements(cfn, scope)
    own, arn = scope or None, key_arn("k1")
    importing = app_key_tags(own, "Importing")
    assert decide(statements, "kms:Sign", arn, on_key(importing, **PROOF)) == "Allow"
    for other in [{"kms:SigningAlgorithm": "RSASSA_PSS_SHA_256"}, {"kms:MessageType": "DIGEST"}]:
        assert decide(statements, "kms:Sign", arn, on_key(importing, **{**PROOF, **other})) != "Allow", other
    assert decide(statements, "kms:Sign", arn, on_key(importing)) != "Allow", "algorithm and message type are required"
    for status in ["Active", "Inactive", "Failed"]:
        assert decide(statements, "kms:Sign", arn, on_key(app_key_tags(own, status), **PROOF)) != "Allow", status
        back = on_key(app_key_tags(own, status), **tagging({"Status": "Importing"}))
        assert decide(statements, "kms:TagResource", arn, back) != "Allow", status
    no_status = on_key(app_key_tags(own), **tagging({"ReplacedBy": key_arn("k2")}))
    assert decide(statements, "kms:TagResource", arn, no_status) != "Allow", "a retag names the Status"


@pytest.mark.parametrize("scope", sorted(OTHER_KEYS))
def test_an_operator_manages_only_keys_that_are_app_keys(cfn, scope):
    """A key that carries the managed tag (and the stack's scope) but is no imported RSA-2048
    signing key is no App key: the operator policy gives nothing on it."""
    statements = operator_statements(cfn, scope)
    tags = app_key_tags(scope or None)
    for properties in [{**APP_KEY, "kms:KeySpec": "SYMMETRIC_DEFAULT", "kms:KeyUsage": "ENCRYPT_DECRYPT"},
                       {**APP_KEY, "kms:KeyOrigin": "AWS_KMS"}]:
        for name, (action, arn, context) in key_operations(tags, properties).items():
            assert decide(statements, action, arn, context) != "Allow", (properties, name)


def test_the_function_roles_sign_only_with_their_stacks_active_keys(cfn):
    """The same evaluator on the functions' kms:Sign: an active key of the stack's scope, nothing else."""
    for scope, others in OTHER_KEYS.items():
        for function, e in EXPECTED.items():
            if ("kms:Sign", "AppKeys") not in e["grants"]:
                continue
            _, statements = role_statements(cfn, function)
            statements = render(cfn, statements, SigningKeyScope=scope)
            arn = key_arn("k1")
            assert decide(statements, "kms:Sign", arn, on_key(app_key_tags(scope or None), **PROOF)) == "Allow"
            for status in ["Importing", "Inactive", "Failed"]:
                context = on_key(app_key_tags(scope or None, status), **PROOF)
                assert decide(statements, "kms:Sign", arn, context) != "Allow", (function, status)
            for other in others:
                assert decide(statements, "kms:Sign", arn, on_key(app_key_tags(other), **PROOF)) != "Allow"


# --- The OIDC issuer (GHE.com, enterprise issuers) -----------------------------------------------------

DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"
ENTERPRISE_ISSUER = "https://token.actions.githubusercontent.com/octo-enterprise"
GHE_COM_ISSUER = "https://token.actions.octocorp.ghe.com"


@pytest.mark.parametrize("issuer,allowed", [
    ("", True),
    (DEFAULT_ISSUER, True),
    (ENTERPRISE_ISSUER, True),
    (GHE_COM_ISSUER, True),
    ("http://token.actions.octocorp.ghe.com", False),
    ("token.actions.octocorp.ghe.com", False),
    ("https://token.actions.octocorp.ghe.com/", False),  # the IAM condition keys would end in "/:sub"
    ("https://token.actions.githubusercontent.com/octo-enterprise/", False),
    ("https://token.actions.octocorp.ghe.com:443", False),
    ('https://x"y', False),
    ("https://x/*", False),
    ("https://", False),
])
def test_the_oidc_issuer_parameter(source, issuer, allowed):
    parameter = source["Parameters"]["GitHubOidcIssuer"]
    assert (parameter["Type"], parameter["Default"]) == ("String", "")
    assert bool(re.fullmatch(parameter["AllowedPattern"], issuer)) is allowed
    for needed in ["ghe.com", "include_enterprise_slug", "GitHubApiUrl", "a Rule refuses the stack"]:
        assert needed in parameter["Description"], needed


def test_the_functions_get_the_oidc_issuer_only_when_it_is_set(cfn):
    for name, fn in functions(cfn).items():
        env = fn["Properties"]["Environment"]["Variables"]
        assert env["OIDC_ISSUER"] == {"Fn::If": ["HasOidcIssuer", {"Ref": "GitHubOidcIssuer"}, {"Ref": "AWS::NoValue"}]}
        assert "OIDC_ISSUER" not in render(cfn, env), f"{name}: empty means derived from GITHUB_API_URL"
        assert render(cfn, env, GitHubOidcIssuer=GHE_COM_ISSUER)["OIDC_ISSUER"] == GHE_COM_ISSUER


def github_role(source, **params):
    """The GitHub Actions role and its trust statement, rendered for these parameter values."""
    values = {"GitHubActionsOrganization": "octo-org",
              "GitHubOidcProviderArn": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"}
    values.update(params)
    role = source["Resources"]["GitHubActionsCallerRole"]
    assert role["Condition"] == "HasGitHubActionsRole"
    document = render(source, role["Properties"]["AssumeRolePolicyDocument"], **values)
    if isinstance(document, str):
        document = json.loads(document)
    assert not intrinsics_left(document), document
    [statement] = document["Statement"]
    return role, statement


@pytest.mark.parametrize("issuer,prefix", [
    ("", "token.actions.githubusercontent.com"),
    (ENTERPRISE_ISSUER, "token.actions.githubusercontent.com/octo-enterprise"),
    (GHE_COM_ISSUER, "token.actions.octocorp.ghe.com"),
])
def test_the_github_actions_role_follows_the_oidc_issuer(source, issuer, prefix):
    """IAM names an OIDC provider's condition keys after its URL without https:// (a path
    included): the trust conditions, and the provider the stack creates, follow GitHubOidcIssuer."""
    _, s = github_role(source, GitHubOidcIssuer=issuer)
    assert s["Condition"] == {
        "StringEquals": {f"{prefix}:aud": "sts.amazonaws.com"},
        "StringLike": {f"{prefix}:sub": "repo:octo-org/*:*"},
    }
    provider = source["Resources"]["GitHubOidcProvider"]["Properties"]
    assert render(source, provider["Url"], GitHubOidcIssuer=issuer) == f"https://{prefix}"
    assert provider["ClientIdList"] == ["sts.amazonaws.com"]


# --- The GitHub Actions role: environments, immutable IDs, the audience -------------------------------

@pytest.mark.parametrize("environment,allowed", [
    ("", True),
    ("release", True),
    ("Production EU", True),
    ("prod/eu-west-1", True),
    ("v1.2_rc-3", True),
    ("x" * 255, True),
    ("x" * 256, False),
    ("*", False),           # StringLike wildcards would widen the subject
    ("prod*", False),
    ("pro?", False),
    ("${aws:username}", False),  # a policy variable
    ("release:ref:refs/heads/main", False),  # a colon would forge the subject's structure
    ('rel"ease', False),   # the trust policy is JSON
    ("rel\\ease", False),
    (" release", False),
])
def test_the_github_actions_environment_is_a_literal_environment_name(source, environment, allowed):
    parameter = source["Parameters"]["GitHubActionsEnvironment"]
    assert (parameter["Type"], parameter["Default"]) == ("String", "")
    assert bool(re.fullmatch(parameter["AllowedPattern"], environment)) is allowed


@pytest.mark.parametrize("name,value,allowed", [
    ("GitHubActionsOrganizationId", "", True),
    ("GitHubActionsOrganizationId", "9919", True),
    ("GitHubActionsOrganizationId", "12a", False),
    ("GitHubActionsOrganizationId", "*", False),
    ("GitHubActionsOrganizationId", "0", False),
    ("GitHubActionsRepositoryId", "", True),
    ("GitHubActionsRepositoryId", "1296269", True),
    ("GitHubActionsRepositoryId", "1296269 ", False),
])
def test_the_immutable_ids_are_numbers(source, name, value, allowed):
    parameter = source["Parameters"][name]
    assert (parameter["Type"], parameter["Default"]) == ("String", "")
    assert bool(re.fullmatch(parameter["AllowedPattern"], value)) is allowed


def test_the_github_actions_role_binds_the_immutable_subject(source):
    """GitHub's immutable subject claim appends the owner's and the repository's IDs to their names
    with an @: repo:<owner>@<owner_id>/<repo>@<repo_id>:... A renamed or deleted organization or
    repository whose name is taken again cannot assume the role."""
    ids = {"GitHubActionsOrganizationId": "9919", "GitHubActionsRepositoryId": "1296269"}
    _, s = github_role(source, GitHubActionsRepository="hello-world", **ids)
    assert s["Condition"]["StringLike"] == {"token.actions.githubusercontent.com:sub": "repo:octo-org@9919/hello-world@1296269:*"}
    _, s = github_role(source, GitHubActionsRepository="hello-world", GitHubActionsEnvironment="release", **ids)
    assert s["Condition"]["StringLike"] == {
        "token.actions.githubusercontent.com:sub": "repo:octo-org@9919/hello-world@1296269:environment:release"}
    _, s = github_role(source, GitHubActionsOrganizationId="9919")
    assert s["Condition"]["StringLike"] == {"token.actions.githubusercontent.com:sub": "repo:octo-org@9919/*:*"}
    _, s = github_role(source, GitHubActionsOrganizationId="9919", GitHubOidcIssuer=GHE_COM_ISSUER)
    assert s["Condition"]["StringLike"] == {"token.actions.octocorp.ghe.com:sub": "repo:octo-org@9919/*:*"}
    _, s = github_role(source, GitHubActionsRepository="hello-world")
    assert s["Condition"]["StringLike"] == {"token.actions.githubusercontent.com:sub": "repo:octo-org/hello-world:*"}


def test_immutable_ids_come_with_their_names(source):
    """CloudFormation refuses a repository ID without its repository and organization ID, and a
    repository bound by name while its organization is bound by ID."""
    base = {"GitHubActionsOrganization": "octo-org", "CreateGitHubOidcProvider": "true"}
    assert rules_hold(source, **base) == []
    assert rules_hold(source, **base, GitHubActionsOrganizationId="9919") == []
    assert rules_hold(source, **base, GitHubActionsOrganizationId="9919", GitHubActionsRepository="hello-world",
                      GitHubActionsRepositoryId="1296269") == []
    for refused in [
        {"GitHubActionsRepositoryId": "1296269"},
        {"GitHubActionsRepositoryId": "1296269", "GitHubActionsRepository": "hello-world"},
        {"GitHubActionsRepositoryId": "1296269", "GitHubActionsOrganizationId": "9919"},
        {"GitHubActionsOrganizationId": "9919", "GitHubActionsRepository": "hello-world"},
    ]:
        assert rules_hold(source, **base, **refused), refused
    assert rules_hold(source, GitHubActionsOrganizationId="9919"), "an ID without a role to bind"


@pytest.mark.parametrize("audience,allowed", [
    ("", True),
    ("appcreds:123456789012:appcreds", True),
    ("https://appcreds.example.com", True),
    ("sts.amazonaws.com.example.org", True),
    ("sts.amazonaws.com", False),   # every configure-aws-credentials token has it: replayable here
    ("STS.amazonaws.com", False),
    ("sts.us-east-1.amazonaws.com", False),
    ("sts.amazonaws.com.cn", False),
    ("sts.cn-north-1.amazonaws.com.cn", False),
])
def test_the_oidc_audience_is_never_sts(source, audience, allowed):
    parameter = source["Parameters"]["GitHubOidcAudience"]
    assert bool(re.fullmatch(parameter["AllowedPattern"], audience)) is allowed
    assert "sts.amazonaws.com" in parameter["ConstraintDescription"]


# --- The guard against forged direct invocations --------------------------------------------------------

GUARD = ROOT / "docs" / "guards" / "deny-direct-invoke.json"
DEPLOYER = f"arn:aws:iam::{ACCOUNT}:role/REPLACE-WITH-YOUR-DEPLOYER-ROLE"


def credential_manager_tag(function_resource):
    tags = function_resource["Properties"]["Tags"]
    [tag] = [t["Value"] for t in tags if t["Key"] == "CredentialManager"]
    return tag


def function_invocation(tag, principal, via_url):
    """An InvokeFunction request on a function tagged CredentialManager=<tag>, as Lambda authorizes it."""
    context = {"aws:ResourceTag/CredentialManager": tag, f"aws:ResourceTag/{MANAGED}": "CredentialManager",
               "aws:PrincipalArn": principal}
    if via_url:
        context["lambda:InvokedViaFunctionUrl"] = "true"
    return "lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:appcreds-Fn-1A2B", context


def test_the_direct_invoke_guard_names_every_function(cfn):
    """Every function of the template is either guarded (the Function URL functions, whose event
    carries the caller Lambda took from SigV4) or excluded with its reason (the scheduled ones,
    invoked directly by EventBridge Scheduler or an operator, whose events name no caller): a new
    function fails here until it is placed in one or the other."""
    guard = json.loads(GUARD.read_text())
    fns = functions(cfn)
    tags = {name: credential_manager_tag(fn) for name, fn in fns.items()}
    guarded, excluded = guard["guardedFunctions"], guard["excludedFunctions"]
    assert set(guarded) | set(excluded) == set(fns) and not set(guarded) & set(excluded)
    assert set(guarded) == {f for f, e in EXPECTED.items() if e["url"]}, "the Function URL functions"
    for name, tag in guarded.items():
        assert tag == tags[name], name
    for name, why in excluded.items():
        assert why["tag"] == tags[name] and len(why["reason"]) > 60, name
    guarded_tags = sorted(guarded.values())
    for variant in ["serviceControlPolicy", "permissionsBoundary"]:
        policy = guard[variant]
        assert policy["Version"] == "2012-10-17"
        named = {tuple(sorted(as_list(c)))
                 for s in policy["Statement"] if s["Effect"] == "Deny"
                 for c in [s["Condition"]["StringEquals"]["aws:ResourceTag/CredentialManager"]]}
        assert named == {tuple(guarded_tags)}, variant


@pytest.mark.parametrize("variant", ["serviceControlPolicy", "permissionsBoundary"])
def test_the_direct_invoke_guard_refuses_forged_invocations_only(cfn, variant):
    guard = json.loads(GUARD.read_text())
    statements = guard[variant]["Statement"]
    caller = f"arn:aws:iam::{ACCOUNT}:role/ci-with-lambda-star"
    # A boundary also has to allow what the principal's own policies allow; an SCP lets them be.
    expected_otherwise = "Allow" if variant == "permissionsBoundary" else "ImplicitDeny"
    for name, tag in guard["guardedFunctions"].items():
        assert decide(statements, *function_invocation(tag, caller, via_url=False)) == "Deny", name
        assert decide(statements, *function_invocation(tag, caller, via_url=True)) == expected_otherwise, name
        assert decide(statements, *function_invocation(tag, DEPLOYER, via_url=False)) == expected_otherwise, name
        # ... and the tag that names it stays on it (deployers excepted).
        action, arn, context = function_invocation(tag, caller, via_url=False)
        untag = {**context, "aws:TagKeys": ["CredentialManager"]}
        assert decide(statements, "lambda:UntagResource", arn, untag) == "Deny", name
        retag = {**context, **tagging({"CredentialManager": "Something"})}
        assert decide(statements, "lambda:TagResource", arn, retag) == "Deny", name
        assert decide(statements, "lambda:UntagResource", arn, {**untag, "aws:PrincipalArn": DEPLOYER}) == expected_otherwise
        # ... and nobody but the deployers changes its code or configuration (REQUIRE_IAM_CALLER=false
        # with LOCAL_CALLER_ARN would make it take a caller named in its environment), its
        # permissions, its asynchronous destinations or its URL.
        for change in ["lambda:UpdateFunctionConfiguration", "lambda:UpdateFunctionCode", "lambda:AddPermission",
                       "lambda:PutFunctionEventInvokeConfig", "lambda:UpdateFunctionUrlConfig",
                       "lambda:DeleteFunctionUrlConfig"]:
            assert decide(statements, change, arn, context) == "Deny", (name, change)
            deployer = {**context, "aws:PrincipalArn": DEPLOYER}
            assert decide(statements, change, arn, deployer) == expected_otherwise, (name, change)
    scheduler = f"arn:aws:iam::{ACCOUNT}:role/appcreds-InstallationTrackerFunctionEvery30MinutesRole-1A2B"
    for name, why in guard["excludedFunctions"].items():
        invocation = function_invocation(why["tag"], scheduler, via_url=False)
        assert decide(statements, *invocation) == expected_otherwise, name
    assert "REPLACE-WITH-YOUR-DEPLOYER-ROLE" in json.dumps(guard[variant])


# --- Signers of App keys outside the stack -------------------------------------------------------------

def event_matches(pattern, event):
    """EventBridge's matching for the patterns the template uses: exact values, anything-but,
    prefix, exists, nested fields, $or; a field the event lacks matches nothing but exists: false."""
    for field, wanted in pattern.items():
        if field == "$or":
            if not any(event_matches(alternative, event) for alternative in wanted):
                return False
            continue
        if isinstance(wanted, dict):
            if not isinstance(event.get(field), dict) or not event_matches(wanted, event[field]):
                return False
            continue
        present, value = field in event, event.get(field)
        if not any(value_matches(w, present, value) for w in wanted):
            return False
    return True


def value_matches(wanted, present, value):
    if isinstance(wanted, dict):
        [(kind, arg)] = wanted.items()
        if kind == "exists":
            return present is arg
        if not present:
            return False
        values = value if isinstance(value, list) else [value]
        if kind == "anything-but":
            return all(v not in as_list(arg) for v in values)
        if kind == "prefix":
            return any(isinstance(v, str) and v.startswith(arg) for v in values)
        raise NotImplementedError(kind)
    return present and (wanted in value if isinstance(value, list) else wanted == value)


def sign_event(identity, algorithm="RSASSA_PKCS1_V1_5_SHA_256", message_type="RAW", name="Sign"):
    """A CloudTrail record of a KMS Sign as EventBridge delivers it (AWS API Call via CloudTrail)."""
    return {
        "source": "aws.kms", "detail-type": "AWS API Call via CloudTrail", "account": ACCOUNT, "region": REGION,
        "detail": {
            "eventSource": "kms.amazonaws.com", "eventName": name, "readOnly": True,
            "eventTime": "2026-11-25T10:00:00Z", "userIdentity": identity,
            "requestParameters": {"keyId": key_arn("k1"), "signingAlgorithm": algorithm, "messageType": message_type},
        },
    }


def assumed_role(role_arn):
    return {"type": "AssumedRole", "arn": role_arn.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/") + "/s",
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": role_arn}}}


SIGNER_RULE = "UnexpectedAppKeySignerRule"


def test_app_key_signers_outside_the_stack_raise_an_alarm(cfn):
    """An EventBridge rule on CloudTrail's KMS Sign records with an App key's algorithm and message
    type whose caller is none of the stack's signing roles: its matches are logged (with every key
    import, to tell an operator's import proof) and alarmed, and, with an alarm topic, published."""
    rule = cfn["Resources"][SIGNER_RULE]["Properties"]
    # Sign is a read-only management event: only a rule in this state receives it.
    assert rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    assert "Name" not in rule and "EventBusName" not in rule
    signers = sorted(f"{f}Role" for f, e in EXPECTED.items() if ("kms:Sign", "AppKeys") in e["grants"])
    pattern = render(cfn, rule["EventPattern"])
    assert not intrinsics_left(pattern)
    assert pattern["source"] == ["aws.kms"] and pattern["detail-type"] == ["AWS API Call via CloudTrail"]
    assert pattern["detail"]["eventSource"] == ["kms.amazonaws.com"] and pattern["detail"]["eventName"] == ["Sign"]
    [by_role] = [alt for alt in pattern["detail"]["$or"] if "sessionContext" in alt["userIdentity"]]
    [excluded] = by_role["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"]
    role_arns = [stack_values(cfn)[f"{role}.Arn"] for role in signers]
    assert sorted(a for a in excluded["anything-but"] if a) == sorted(role_arns)

    for role in role_arns:
        assert not event_matches(pattern, sign_event(assumed_role(role))), "the stack's own functions"
    outsiders = [
        assumed_role(f"arn:aws:iam::{ACCOUNT}:role/platform-operator"),
        assumed_role(f"arn:aws:iam::{ACCOUNT}:role/staging-AppTokenFunctionRole-9Z8Y"),
        {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/alice", "userName": "alice"},
        {"type": "Root", "arn": f"arn:aws:iam::{ACCOUNT}:root"},
    ]
    for identity in outsiders:
        assert event_matches(pattern, sign_event(identity)), identity
    operator = outsiders[0]
    # RS256 over a DIGEST is a JWT signature GitHub accepts too; CloudTrail may leave RAW out.
    assert event_matches(pattern, sign_event(operator, message_type="DIGEST")), "a digest signed"
    absent = sign_event(operator)
    del absent["detail"]["requestParameters"]["messageType"]
    assert event_matches(pattern, absent), "no messageType recorded"
    assert not event_matches(pattern, sign_event(operator, algorithm="ECDSA_SHA_256")), "not an App key's use"
    assert not event_matches(pattern, sign_event(operator, name="Verify"))
    # Another stack's functions, when given as OtherSignerRoleArns, are expected too.
    other = f"arn:aws:iam::{ACCOUNT}:role/staging-AppTokenFunctionRole-9Z8Y"
    with_other = render(cfn, rule["EventPattern"], OtherSignerRoleArns=f"{other},arn:aws:iam::{ACCOUNT}:role/x")
    assert not event_matches(with_other, sign_event(assumed_role(other)))
    assert event_matches(with_other, sign_event(operator))

    # Targets: the log group always; the alarm topic, when there is one, with a message that
    # names the signer and says when such a signature is expected.
    targets = render(cfn, rule["Targets"])
    [log_target] = targets
    group = cfn["Resources"]["AppKeySignerLogGroup"]
    assert log_target["Arn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:ref:AppKeySignerLogGroup"
    assert derived_from_the_stack(group["Properties"]["LogGroupName"], cfn["Resources"])
    assert render(cfn, group["Properties"]["LogGroupName"]).startswith("/aws/events/")
    with_topic = render(cfn, rule["Targets"], RateLimitAlarmTopicArn=f"arn:aws:sns:{REGION}:{ACCOUNT}:alarms")
    [_, topic_target] = with_topic
    assert topic_target["Arn"] == f"arn:aws:sns:{REGION}:{ACCOUNT}:alarms"
    transformer = topic_target["InputTransformer"]
    assert transformer["InputPathsMap"]["signer"] == "$.detail.userIdentity.arn"
    assert transformer["InputPathsMap"]["key"] == "$.detail.requestParameters.keyId"
    for needed in ["<signer>", "<key>", "import", "ImportKeyMaterial"]:
        assert needed in transformer["InputTemplate"], needed
    # EventBridge writes to the log group under the group's resource policy.
    policy = json.loads(render(cfn, cfn["Resources"]["AppKeySignerLogPolicy"]["Properties"]["PolicyDocument"]))
    [allow] = policy["Statement"]
    assert set(allow["Principal"]["Service"]) == {"events.amazonaws.com", "delivery.logs.amazonaws.com"}
    assert set(allow["Action"]) == {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert allow["Resource"] == stack_values(cfn)["AppKeySignerLogGroup.Arn"]
    # Every key import goes to the same log, next to the proof that follows it.
    imports = cfn["Resources"]["AppKeyImportRule"]["Properties"]
    assert imports["EventPattern"]["detail"]["eventName"] == ["ImportKeyMaterial"]
    assert [t["Arn"] for t in render(cfn, imports["Targets"])] == [log_target["Arn"]]

    alarm = cfn["Resources"]["UnexpectedAppKeySignerAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Events", "TriggeredRules", "Sum")
    assert alarm["Dimensions"] == [{"Name": "RuleName", "Value": {"Ref": SIGNER_RULE}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["TreatMissingData"]) == (
        "GreaterThanThreshold", 0, "notBreaching")
    assert alarm["AlarmActions"] == ALARM_TOPIC
    assert "import" in render(cfn, alarm["AlarmDescription"])
    body = dashboard(cfn, 20)
    [logs] = [w for w in body["widgets"] if w["type"] == "log"]
    assert "SOURCE 'name:AppKeySignerLogGroup'" in logs["properties"]["query"]
    shown = [a for w in body["widgets"] if w["type"] == "alarm" for a in w["properties"]["alarms"]]
    assert "arn:UnexpectedAppKeySignerAlarm" in shown


# --- A template without copies ----------------------------------------------------------------------

def test_the_signing_statement_is_written_once(raw):
    """One managed policy holds kms:Sign for the functions; each function that signs attaches it."""
    written = [(name, s) for name, r in raw["Resources"].items() if isinstance(r, dict)
               for s in each_mapping(r.get("Properties", {})) if s.get("Sid") == "SignWithActiveAppKeys"]
    assert [name for name, _ in written] == ["AppKeySigningPolicy"]
    assert raw["Resources"]["AppKeySigningPolicy"]["Type"] == "AWS::IAM::ManagedPolicy"
    for function, e in EXPECTED.items():
        policies = raw["Resources"][function]["Properties"]["Policies"]
        signs = ("kms:Sign", "AppKeys") in e["grants"]
        assert ({"Ref": "AppKeySigningPolicy"} in policies) == signs, function
        assert not [m for m in each_mapping(policies) if "kms:Sign" in as_list(m.get("Action", []))], function


def test_each_functions_log_group_and_alarms_come_from_one_loop(raw):
    """Fn::ForEach over the functions makes <Prefix>LogGroup and the two alarms; the Functions
    mapping gives each its name and whether its log group is kept (the audit trail's are)."""
    loops = {k: v for k, v in raw["Resources"].items() if k.startswith("Fn::ForEach::")}
    [(identifier, prefixes, fragment)] = loops.values()
    assert prefixes == [f.removesuffix("Function") for f in EXPECTED] == list(raw["Mappings"]["Functions"])
    assert sorted(fragment) == sorted(f"${{{identifier}}}{kind}" for kind in ["LogGroup", "ErrorsAlarm", "ThrottlesAlarm"])
    for function, e in EXPECTED.items():
        row = raw["Mappings"]["Functions"][function.removesuffix("Function")]
        assert row == {"Name": e["short"], "Logs": "Retain" if e["url"] else "Delete"}, function
    written = [k for k, r in raw["Resources"].items() if not k.startswith("Fn::")
               and r["Type"] in ("AWS::Logs::LogGroup", "AWS::CloudWatch::Alarm")
               and (k.endswith(("ErrorsAlarm", "ThrottlesAlarm")) or k in {f"{p}LogGroup" for p in prefixes})]
    assert written == [], "written out as well as made by the loop"


def test_each_checkov_reason_is_written_once():
    """A reason shared by several resources is given once (a YAML anchor) and named by the others."""
    comments = re.findall(r"^\s+comment: (.+)$", (ROOT / "template.yaml").read_text(), re.MULTILINE)
    assert len(comments) == len(set(comments)), [c for c in comments if comments.count(c) > 1]


LOOP = {
    "Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"],
    "Mappings": {"Parts": {"Disk": {"Name": "disk-part"}}, "Unused": {"A": {"B": "c"}}},
    "Resources": {
        "Kept": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": {"Fn::Sub": "${AWS::StackName}"}}},
        "Fn::ForEach::Parts": ["Part", ["Disk", "fan-2"], {
            "&{Part}Queue": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "QueueName": {"Fn::Sub": ["${AWS::StackName}-${Name}", {"Name": {"Fn::FindInMap": ["Parts", "Disk", "Name"]}}]},
                    "Tags": [{"Key": "Part", "Value": {"Ref": "Part"}}, {"Key": "Of", "Value": {"Ref": {"Fn::Sub": "Kept"}}}],
                },
            },
        }],
    },
}


def test_the_expansion_follows_the_language_extensions():
    out = language_extensions.expand(LOOP)
    assert out["Transform"] == "AWS::Serverless-2016-10-31" and "Mappings" not in out, "the loop's mappings go with it"
    assert list(out["Resources"]) == ["Kept", "DiskQueue", "fan2Queue"]
    assert out["Resources"]["Kept"] == LOOP["Resources"]["Kept"], "nothing outside a loop changes"
    disk = out["Resources"]["DiskQueue"]["Properties"]
    assert disk["QueueName"] == {"Fn::Sub": "${AWS::StackName}-disk-part"}
    assert disk["Tags"] == [{"Key": "Part", "Value": "Disk"}, {"Key": "Of", "Value": {"Ref": "Kept"}}]
    plain = {"Transform": "AWS::Serverless-2016-10-31", "Resources": {}}
    assert language_extensions.expand(plain) is plain


@pytest.mark.parametrize("change, refusal", [
    (lambda t: t["Resources"]["Fn::ForEach::Parts"][2]["&{Part}Queue"]["Properties"].update(Name="q-${Part}"),
     "outside a key, a Fn::Sub or a Ref"),
    (lambda t: t["Resources"]["Fn::ForEach::Parts"].__setitem__(1, {"Ref": "Parts"}), "not a list of strings"),
    (lambda t: t["Resources"]["Fn::ForEach::Parts"].__setitem__(1, ["Disk", "Disk"]), "repeats"),
    (lambda t: t["Resources"].update({"DiskQueue": {"Type": "AWS::SQS::Queue"}}), "made twice"),
])
def test_the_expansion_refuses_what_it_does_not_know(change, refusal):
    template = copy.deepcopy(LOOP)
    change(template)
    with pytest.raises(language_extensions.Refused, match=refusal):
        language_extensions.expand(template)


# --- checkov -----------------------------------------------------------------------------------------

def test_checkov_skips_give_reasons_and_reach_the_transformed_template(source, cfn):
    """scripts/test runs checkov on the transformed template; each finding left is skipped in the
    resource's Metadata with the reason, and SAM carries a function's Metadata over."""
    skipped = {}
    for name, resource in source["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert set(skip) == {"id", "comment"} and re.fullmatch(r"CKV_AWS_\d+", skip["id"]), (name, skip)
            assert len(skip["comment"]) > 40, (name, skip)
            skipped.setdefault(name, []).append(skip["id"])
    assert skipped, "checkov's findings are fixed or skipped in the template"
    for name, ids in skipped.items():
        translated = cfn["Resources"][name]
        assert [s["id"] for s in translated["Metadata"]["checkov"]["skip"]] == ids, name


if __name__ == "__main__":
    # Writes the transformed template where the first argument says (scripts/test runs checkov on it).
    pathlib.Path(sys.argv[1]).write_text(json.dumps(translate(load_source()), indent=1))


@pytest.mark.parametrize("api_url", ["https://ghe.example.com/api/v3", "https://api.octocorp.ghe.com"])
def test_the_github_actions_role_off_github_com_needs_its_issuer(source, api_url):
    """Left to github.com's issuer on a GHES or GHE.com stack, the role would let whoever holds the
    organization's login on github.com assume it: CloudFormation refuses such a stack."""
    role = dict(GitHubActionsOrganization="octo-org", CreateGitHubOidcProvider="true")
    [failed] = rules_hold(source, GitHubApiUrl=api_url, **role)
    assert failed.startswith("GitHubActionsRoleOffGitHubComNeedsItsIssuer:"), failed
    issuer = "https://ghe.example.com/_services/token" if "/api/v3" in api_url else "https://token.actions.octocorp.ghe.com"
    assert rules_hold(source, GitHubApiUrl=api_url, GitHubOidcIssuer=issuer, **role) == []
    assert rules_hold(source, GitHubApiUrl=api_url) == [], "no role, nothing to bind"
    assert rules_hold(source, **role) == [], "github.com's own issuer"


# --- The shared App JWT -----------------------------------------------------------------------------

SIGNERS = sorted(f for f, e in EXPECTED.items() if ("kms:Sign", "AppKeys") in e["grants"])


def key_policy_for(cfn, principal):
    """The statements of the shared App JWT key's policy that name `principal` (rendered)."""
    policy = cfn["Resources"]["SharedAppJwtKey"]["Properties"]["KeyPolicy"]["Statement"]
    named = [s for s in policy if principal in as_list(s["Principal"]["AWS"])]
    return render(cfn, [{k: v for k, v in s.items() if k != "Principal"} for s in named])


def test_only_the_functions_that_sign_decrypt_the_shared_jwt(cfn):
    """The key policy, through the evaluator: the roles of the functions that sign encrypt and
    decrypt, only under the context they give; the account administers the key but neither
    encrypts, decrypts nor grants; no other role is named."""
    key = cfn["Resources"]["SharedAppJwtKey"]["Properties"]
    assert (key["KeySpec"], key["KeyUsage"], key["EnableKeyRotation"]) == ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", True)
    named = {json.dumps(p) for s in key["KeyPolicy"]["Statement"] for p in as_list(s["Principal"]["AWS"])}
    roles = {json.dumps({"Fn::GetAtt": [f"{f}Role", "Arn"]}) for f in SIGNERS}
    root = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    assert named == roles | {json.dumps(root)}, named
    arn = key_arn("shared-jwt")
    values = {"appcreds:AppId": "1", "appcreds:KeyArn": key_arn("app"), "appcreds:ExpiresAt": "1700000540"}

    def given(pairs):
        # What KMS puts in the request context for an encryption context of `pairs`.
        return {"kms:EncryptionContextKeys": list(pairs), **{f"kms:EncryptionContext:{k}": v for k, v in pairs.items()}}

    context = given(values)
    for function in SIGNERS:
        statements = key_policy_for(cfn, {"Fn::GetAtt": [f"{function}Role", "Arn"]})
        for action in ["kms:Encrypt", "kms:Decrypt"]:
            assert decide(statements, action, arn, context) == "Allow", (function, action)
            assert decide(statements, action, arn) != "Allow", (function, action, "no context")
            extra = given({**values, "appcreds:UserName": "alice"})
            assert decide(statements, action, arn, extra) != "Allow", (function, action, "another key")
            for missing in SHARED_JWT_CONTEXT:
                subset = given({k: v for k, v in values.items() if k != missing})
                assert decide(statements, action, arn, subset) != "Allow", (function, action, "without", missing)
        for action in ["kms:ReEncryptFrom", "kms:GenerateDataKey", "kms:CreateGrant", "kms:PutKeyPolicy"]:
            assert decide(statements, action, arn, context) != "Allow", (function, action)
    admin = key_policy_for(cfn, root)
    for action in ["kms:Decrypt", "kms:Encrypt", "kms:ReEncryptFrom", "kms:GenerateDataKey", "kms:CreateGrant"]:
        assert decide(admin, action, arn, context) != "Allow", action
    for action in ["kms:DescribeKey", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:DisableKey"]:
        assert decide(admin, action, arn) == "Allow", action
    assert not key_policy_for(cfn, {"Fn::GetAtt": ["GetInstallationFunctionRole", "Arn"]})


def test_the_functions_that_sign_share_only_their_jwt_items(cfn):
    """Each signer's environment names the key; its table access is to AppJwt# items only."""
    for function in EXPECTED:
        env = cfn["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
        assert (env.get("SHARED_APP_JWT_KEY_ID") == SHARED_JWT_KEY) == (function in SIGNERS), function
        assert env.get("LEASE_TABLE_NAME") == {"Ref": "LeaseTable"}, function
    [share] = [s for s in policy_statements(cfn, "AppKeySigningPolicy") if s["Sid"] == "ShareAppJwts"]
    assert share["Condition"] == SHARE_CONDITION
    statements = render(cfn, [share])
    table = render(cfn, {"Fn::GetAtt": ["LeaseTable", "Arn"]})
    for action in ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"]:
        assert decide(statements, action, table, {"dynamodb:LeadingKeys": ["AppJwt#123456"]}) == "Allow"
        assert decide(statements, action, table, {"dynamodb:LeadingKeys": ["installation-sync"]}) != "Allow"
    assert decide(statements, "dynamodb:DeleteItem", table, {"dynamodb:LeadingKeys": ["AppJwt#1"]}) != "Allow"
    assert decide(statements, "dynamodb:GetItem", table) != "Allow", "no key: no item"


def test_only_the_share_reaches_the_shared_jwt_items(cfn):
    """Every statement of the template, through the evaluator: the shared JWTs' items
    (AppJwt#APP_ID) are reached by ShareAppJwts alone; the jobs still hold their own leases, and
    only those."""
    table = render(cfn, {"Fn::GetAtt": ["LeaseTable", "Arn"]})
    writes = ["dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:GetItem",
              "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"]
    reach = set()
    for name, s in every_statement(cfn):
        if "Principal" in s or "LeaseTable" not in json.dumps(s.get("Resource")) and s.get("Resource") != "*":
            continue
        [statement] = render(cfn, [s])
        for action in writes:
            if decide([statement], action, table, {"dynamodb:LeadingKeys": ["AppJwt#123456"]}) == "Allow":
                reach.add((name, statement.get("Sid"), action))
    assert {sid for _, sid, _ in reach} == {"ShareAppJwts"}, sorted(reach)
    leases = {
        "RefreshCacheFunction": "installation-sync",
        "InstallationTrackerFunction": "installation-sync",
        ROTATOR: "access-key-rotation/alice",
    }
    for function, lease in leases.items():
        _, statements = role_statements(cfn, function)
        statements = render(cfn, statements)
        for action in ["dynamodb:PutItem", "dynamodb:DeleteItem"]:
            assert decide(statements, action, table, {"dynamodb:LeadingKeys": [lease]}) == "Allow", (function, action)
            for other in {*leases.values(), "AppJwt#1"} - {lease}:
                assert decide(statements, action, table, {"dynamodb:LeadingKeys": [other]}) != "Allow", (function, other)
            assert decide(statements, action, table) != "Allow", (function, action, "no key")
