"""The SAM template, transformed to plain CloudFormation offline with aws-sam-translator, checked
for what the linters cannot see: dangling references, the exact IAM each function gets, Function
URL auth, tables as the wire contract defines them, and resource tags.

Run: .venv/bin/pytest -q tests/template   (scripts/test does)
"""

import copy
import json
import os
import pathlib
import subprocess
import sys

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
}

NAMESPACE = "AppFrameworkGitHubAPICallMetrics"

# Per function: every (action, resource) its role may use, its Function URL, its binary, its tag.
# A later function adds a row here.
EXPECTED = {
    "AppTokenFunction": {
        "grants": {("dynamodb:GetItem", "AppTable"), ("kms:Sign", "AppKeys"), READ_RULES},
        "url": True,
        "binary": "appcreds-app-token",
        "tag": "AppToken",
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
    },
    "RefreshCacheFunction": {
        "grants": SYNC_GRANTS | {READ_RULES},
        "url": True,
        "binary": "appcreds-refresh-cache",
        "tag": "RefreshCache",
    },
    "InstallationTrackerFunction": {
        "grants": SYNC_GRANTS,
        "url": False,
        "binary": "appcreds-installation-tracker",
        "tag": "InstallationTracker",
        "schedule": "rate(30 minutes)",
    },
    "RateLimitScannerFunction": {
        "grants": {
            ("dynamodb:GetItem", "AppTable"),
            ("dynamodb:Scan", "InstallationTable"),
            ("kms:Sign", "AppKeys"),
            ("cloudwatch:PutMetricData", "*"),
        },
        "url": False,
        "binary": "appcreds-rate-limit-scanner",
        "tag": "RateLimitScanner",
        "schedule": "rate(5 minutes)",
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


@pytest.fixture(scope="module")
def source():
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)


@pytest.fixture(scope="module")
def cfn(source):
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = copy.deepcopy(source)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://appcreds-artifacts/function.zip"
    return transform(template, {}, PolicyLoader())


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
    if resource == {"Fn::Sub": "${InstallationTable.Arn}/index/NodeID"}:
        return "InstallationTable/index/NodeID"
    if resource == {"Fn::GetAtt": ["PaginationKey", "Arn"]}:
        return "PaginationKey"
    if resource == {"Fn::Sub": KMS_KEYS}:
        return "AppKeys"
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
                    assert s.get("Condition") == {"StringEquals": {"cloudwatch:namespace": NAMESPACE}}
                grants.add((action, resource_name(resource)))
            if action == "kms:Sign":
                assert s["Resource"] == {"Fn::Sub": KMS_KEYS}
                assert s.get("Condition") == SIGN_CONDITION, f"{function}: kms:Sign must be tag-conditioned"
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


def test_dashboard_shows_remaining_percent_with_the_threshold(cfn, source):
    dash = cfn["Resources"]["RateLimitDashboard"]["Properties"]
    assert dash["DashboardName"] == {"Fn::Sub": "${AWS::StackName}-github-rate-limits"}
    threshold = source["Parameters"]["RateLimitAlarmThreshold"]["Default"]
    assert threshold == 20
    body = json.loads(render_sub(dash["DashboardBody"], {
        "AWS::Region": "eu-west-1", "RateLimitAlarmThreshold": threshold, "CoreRateLimitAlarm.Arn": "arn:alarm",
        "RateLimitScannerHeartbeatAlarm.Arn": "arn:heartbeat", "RateLimitScannerGapAlarm.Arn": "arn:gaps",
        "RateLimitScannerFunction": "stack-scanner",
    }))
    widgets = [w for w in body["widgets"] if w["type"] == "metric"]
    expressions = [m[0]["expression"] for w in widgets for m in w["properties"]["metrics"] if isinstance(m[0], dict)]
    assert any("GitHubAPICallsRemainingPercent" in e and 'Category="core"' in e and NAMESPACE in e for e in expressions)
    assert all("AppID,Category,InstallationID" in e for e in expressions), "per installation and category"
    assert widgets[0]["properties"]["annotations"]["horizontal"][0]["value"] == threshold
    [alarms] = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert alarms["properties"]["alarms"] == ["arn:alarm", "arn:heartbeat", "arn:gaps"]
    [scanner] = [w for w in widgets if w["properties"]["title"].startswith("Rate-limit scanner")]
    lines = scanner["properties"]["metrics"]
    assert lines[0][:4] == [NAMESPACE, "ScannerInstallations", "FunctionName", "stack-scanner"]
    assert [line[1] for line in lines[1:]] == [
        "ScannerInstallationsScanned", "ScannerInstallationsFailed", "ScannerInstallationsDeferred"
    ]


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
    statements = [s for s in policy_statements(cfn, policy) if str(s["Action"]).startswith("lambda:")]
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
            assert v.get("Condition") == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}, v
    assert "ForAllValues" not in json.dumps(source["Resources"]), "no ForAllValues: an absent key satisfies it"


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
