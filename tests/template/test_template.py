"""The SAM template, transformed to plain CloudFormation offline with aws-sam-translator, checked
for what the linters cannot see: dangling references, the exact IAM each function gets, Function
URL auth, tables as the wire contract defines them, resource tags, names that let two stacks share
an account, logs, alarms and the dashboard.

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

# The installation sync (refresh-cache and the tracker): read Apps, sync their installations, sign JWTs.
SYNC_GRANTS = {
    ("dynamodb:GetItem", "AppTable"),
    ("dynamodb:Scan", "AppTable"),
    ("dynamodb:Query", "InstallationTable"),
    ("dynamodb:Scan", "InstallationTable"),
    ("dynamodb:BatchWriteItem", "InstallationTable"),
    ("kms:Sign", "AppKeys"),
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
# The code always sends both keys: every key given is one of these, and some key is given.
ROTATION_CONTEXT_CONDITION = {
    "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["appcreds:UserName", "appcreds:AccessKeyId"]},
    "Null": {"kms:EncryptionContextKeys": "false"},
}

# Per function: every (action, resource) its role may use, its Function URL, its binary, its tag.
# A later function adds a row here.
EXPECTED = {
    "AppTokenFunction": {
        "grants": {("dynamodb:GetItem", "AppTable"), ("kms:Sign", "AppKeys"), READ_RULES},
        "url": True,
        "binary": "appcreds-app-token",
        "tag": "AppToken",
        "short": "app-token",
    },
    "InstallationTokenFunction": {
        "grants": {
            ("dynamodb:GetItem", "AppTable"),
            ("dynamodb:GetItem", "InstallationTable"),
            ("dynamodb:BatchWriteItem", "InstallationTable"),
            ("kms:Sign", "AppKeys"),
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
            ("kms:VerifyMac", "PaginationKey"),
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
            ("dynamodb:BatchWriteItem", "InstallationTable"),
            # A lease per target.
            ("dynamodb:PutItem", "LeaseTable"),
            ("dynamodb:DeleteItem", "LeaseTable"),
            *((a, "RotationTable") for a in ROTATOR_TABLE_ACTIONS),
            *((a, "RotatedUsers") for a in ROTATOR_IAM),
            ("kms:Encrypt", "RotationKey"),
            ("kms:Decrypt", "RotationKey"),
            ("kms:Sign", "AppKeys"),
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


class CfnLoader(yaml.SafeLoader):
    """A YAML loader that turns CloudFormation's short tags into their long form."""


def _tag(name):
    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {"Ref": value} if name == "Ref" else {name: value}

    return construct


for _short in ["Ref", "Condition"]:
    CfnLoader.add_constructor(f"!{_short}", _tag(_short))
for _fn in ["GetAtt", "Sub", "Join", "If", "Equals", "Not", "And", "Or", "Select", "Split", "FindInMap",
            "ImportValue", "GetAZs", "Base64", "Cidr"]:
    CfnLoader.add_constructor(f"!{_fn}", _tag(f"Fn::{_fn}"))


class PolicyLoader:
    """Stands in for the IAM ListPolicies call the translator makes for managed policy names."""

    def load(self):
        return {"AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}


def load_source():
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)


def translate(source):
    """The template as CloudFormation deploys it (SAM transformed), code taken from a stand-in bucket."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = copy.deepcopy(source)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://appcreds-artifacts/function.zip"
    return transform(template, {}, PolicyLoader())


@pytest.fixture(scope="module")
def source():
    return load_source()


@pytest.fixture(scope="module")
def cfn(source):
    return translate(source)


def functions(cfn):
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}


def role_statements(cfn, function):
    role = cfn["Resources"][f"{function}Role"]
    return role, [s for p in role["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


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
    assert role["Properties"]["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ], f"{function}: logs only"


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
        # The issuer follows GITHUB_API_URL; no deployed function names another.
        assert "OIDC_ISSUER" not in env, name
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
    assert uses == [ROTATION_CONTEXT_CONDITION, OPERATOR_SPEC_CONDITION], "the rotator's encryption context, the operator's spec writes"


def test_operator_policy_manages_keys_rules_and_apps_only(cfn):
    statements = policy_statements(cfn, "OperatorPolicy")
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["CreateAppKeys"]["Action"] == "kms:CreateKey"
    assert by_sid["CreateAppKeys"]["Condition"] == {"StringEquals": {
        "aws:RequestTag/FrameworkForGitHubAppOnAwsManaged": "true",
        "kms:KeyOrigin": "EXTERNAL", "kms:KeySpec": "RSA_2048", "kms:KeyUsage": "SIGN_VERIFY",
    }}, "only App keys: imported RSA-2048 signing keys, tagged at creation"
    assert by_sid["TagNewAppKeys"]["Condition"] == {"StringEquals": {"aws:RequestTag/FrameworkForGitHubAppOnAwsManaged": "true"}}
    keys = by_sid["ImportProveRetireAppKeys"]
    assert keys["Resource"] == {"Fn::Sub": KMS_KEYS}
    assert keys["Condition"] == {"StringEquals": {"aws:ResourceTag/FrameworkForGitHubAppOnAwsManaged": "true"}}
    assert by_sid["ManageAccessRules"]["Resource"] == ACCESS_TABLE
    assert by_sid["ManageRotationTargets"]["Resource"] == ROTATION_TABLE
    assert set(by_sid["ManageRotationTargets"]["Action"]) == OPERATOR_ROTATION_ACTIONS - {"dynamodb:UpdateItem"}
    assert by_sid["WriteRotationSpecs"]["Condition"] == OPERATOR_SPEC_CONDITION
    assert by_sid["RunTheRotator"]["Action"] == "lambda:InvokeFunction"
    assert by_sid["RegisterAndRotateApps"]["Resource"] == APP_TABLE
    for s in statements:
        for action in as_list(s["Action"]):
            assert "*" not in action, action


def github_role(source, **params):
    """The GitHub Actions role's trust condition, with the template's !If and !Sub evaluated."""
    values = {"GitHubActionsOrganization": "octo-org", "GitHubActionsRepository": "", "GitHubActionsEnvironment": "",
              "CreateGitHubOidcProvider": "false", "GitHubOidcProviderArn": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"}
    values.update(params)
    conditions = {
        "HasGitHubActionsRepository": values["GitHubActionsRepository"] != "",
        "HasGitHubActionsEnvironment": values["GitHubActionsEnvironment"] != "",
        "CreateOidcProvider": values["CreateGitHubOidcProvider"] == "true",
    }

    def evaluate(v):
        if isinstance(v, dict) and "Fn::If" in v:
            name, yes, no = v["Fn::If"]
            return evaluate(yes if conditions[name] else no)
        if isinstance(v, dict) and "Ref" in v:
            return values.get(v["Ref"], v)
        if isinstance(v, dict) and "Fn::Sub" in v:
            text, local = v["Fn::Sub"]
            local = {k: evaluate(x) for k, x in local.items()}
            for k, x in {**values, **local}.items():
                text = text.replace("${" + k + "}", x)
            return text
        if isinstance(v, dict):
            return {k: evaluate(x) for k, x in v.items()}
        if isinstance(v, list):
            return [evaluate(x) for x in v]
        return v

    role = source["Resources"]["GitHubActionsCallerRole"]
    assert role["Condition"] == "HasGitHubActionsRole"
    [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    return role, evaluate(statement)


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
    assert s["Principal"]["Federated"] == {"Ref": "GitHubOidcProvider"}
    assert role["Properties"]["ManagedPolicyArns"] == [{"Ref": "CallerPolicy"}]


def test_the_oidc_provider_is_created_only_when_asked(source):
    provider = source["Resources"]["GitHubOidcProvider"]
    assert provider["Condition"] == "CreateOidcProvider"
    assert source["Parameters"]["CreateGitHubOidcProvider"]["Default"] == "false", "an account has only one"
    assert provider["Properties"]["Url"] == "https://token.actions.githubusercontent.com"
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

def resolve(value, params, conditions):
    """A template fragment with !If chosen and parameter !Refs replaced by their values."""
    if isinstance(value, dict) and "Fn::If" in value:
        name, yes, no = value["Fn::If"]
        return resolve(yes if conditions[name] else no, params, conditions)
    if isinstance(value, dict) and value.keys() == {"Ref"} and value["Ref"] in params:
        return params[value["Ref"]]
    if isinstance(value, dict):
        return {k: resolve(v, params, conditions) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, params, conditions) for v in value]
    return value


def signing_statements(cfn):
    """Every kms:Sign statement of every role in the template, by role."""
    found = []
    for name, resource in cfn["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                for s in policy["PolicyDocument"]["Statement"]:
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
    groups = {k for k, r in cfn["Resources"].items() if r["Type"] == "AWS::Logs::LogGroup"}
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
    # The rate limit and the scanner's two, the failure queue's, the rotator's three, and per function two.
    assert len(alarms) == 3 + 1 + 3 + 2 * len(EXPECTED), sorted(alarms)
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
    uses = [(name, s) for name, s in uses if name != "RotationKey"]  # the key's own policy, below
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
