"""The Helm chart (deploy/helm/modelyard), checked without a cluster.

What is checked, and with what:
- lint: Helm's own linter from Helm v4's Go library (PyPI helm-python-sdk) on the defaults and every
  example; and helm-sdkpy's lint (another binding of Helm's library; Python >= 3.12) on the defaults.
- render: the same library's offline render (`helm template`), release "rel" in namespace "ml".
- schema: every rendered object against the Kubernetes API JSON schemas of 1.27 and 1.37, strict
  (unknown fields, wrong types, missing required fields and kinds without a schema all fail), with
  PyPI kubernetes-validate. A deliberately broken object is shown to fail, so a pass means something.
- the promises of docs/kubernetes.md: each example's objects are exactly its table there, the YAML shown
  there is the example file, the documented values exist; and the objects themselves (GPUs, shm, model
  cache, headless Services, discovery env, probes, HPA, gateway prefix, Ingress, Secrets by reference,
  security contexts, selectors).

The tools live in .venv-helm (tests/unit/helm_tools.py builds it on first use, ~30 s from a warm pip
cache). Where they cannot be installed the tests skip with pip's reason, unless MODELYARD_REQUIRE_HELM=1.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit import helm_tools

ROOT = helm_tools.ROOT
EXAMPLES = sorted((helm_tools.CHART / "examples").glob("*.yaml"))
DOC = ROOT / "docs" / "kubernetes.md"
PREFIX = "rel-modelyard-"

# Variants beyond the examples: name -> values.
VARIANTS: dict[str, dict[str, Any]] = {
    "no-hpa": {"adapters": {"autoscaling": {"enabled": False}, "replicas": 3}},
    "clusterip-adapters": {"adapters": {"service": {"headless": False}}},
    "pods-discovery": {"engines": {"vllm": {"replicas": 3, "discovery": "pods"}}},
    "emptydir-cache": {"engines": {"vllm": {"modelCache": {"type": "emptyDir"}, "tensorParallelSize": 4, "gpus": 8}}},
    "azure": {
        "policyBackend": "azure",
        "backends": {
            "vllm": {"enabled": False},
            "azure": {
                "enabled": True,
                "upstreamUrl": "https://res.openai.azure.com",
                "apiKeySecret": {"name": "azure", "key": "key"},
                "env": {"AZURE_OPENAI_DEPLOYMENT": "gpt-4o", "MODELYARD_LOG_LEVEL": "debug"},
            },
        },
        "engines": {"vllm": {"enabled": False}},
    },
    "engine-key": {"backends": {"vllm": {"apiKeySecret": {"name": "vllm-key", "key": "k"}}}},
    "everything": {
        "backends": {
            name: {"enabled": True, "apiKeySecret": {"name": f"{name}-key", "key": "k"}}
            for name in ("nim", "openai", "openrouter")
        }
        | {"azure": {"enabled": True, "upstreamUrl": "https://r.openai.azure.com", "apiKeySecret": {"name": "az"}}},
        "postgresql": {"enabled": True, "auth": {"existingSecret": "pg"}},
        "networkPolicy": {"enabled": True},
        "ingress": {"enabled": True},
    },
    # The project's own PostgreSQL image under its postgres user (docs/kubernetes.md).
    "postgres-project-image": {
        "postgresql": {
            "enabled": True,
            "image": {"repository": "modelyard/postgres", "tag": "latest"},
            "auth": {"existingSecret": "pg"},
            "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 100, "runAsGroup": 102, "fsGroup": 102},
        }
    },
    # A field no Kubernetes schema has: the validator must refuse it.
    "broken-object": {"gateway": {"podSecurityContext": {"runAsNonRoot": True, "notAField": 1}}},
}

# Values the chart must refuse, and a piece of the message it gives.
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "policy-not-enabled": ({"policyBackend": "openai"}, "backends.openai.enabled is false"),
    "hosted-without-key": (
        {"backends": {"openrouter": {"enabled": True}}},
        "backends.openrouter.apiKeySecret.name",
    ),
    "azure-without-url": (
        {"backends": {"azure": {"enabled": True, "apiKeySecret": {"name": "a"}}}},
        "backends.azure.upstreamUrl",
    ),
    "vllm-without-engines": ({"engines": {"vllm": {"enabled": False}}}, "backends.vllm needs engines"),
    "postgres-without-secret": ({"postgresql": {"enabled": True}}, "postgresql.auth.existingSecret"),
    "two-databases": (
        {"postgresql": {"enabled": True, "auth": {"existingSecret": "p"}}, "externalDatabase": {"existingSecret": "d"}},
        "choose one database",
    ),
    "claim-without-name": ({"engines": {"vllm": {"modelCache": {"type": "existingClaim"}}}}, "existingClaim"),
    "misspelt-key": ({"engine": {"vllm": {"gpus": 2}}}, "additional properties 'engine' not allowed"),
    "zero-gpus": ({"engines": {"vllm": {"gpus": 0}}}, "/engines/vllm/gpus"),
    "bad-model-len": ({"engines": {"vllm": {"maxModelLen": "lots"}}}, "/engines/vllm/maxModelLen"),
    "bad-discovery": ({"engines": {"vllm": {"discovery": "consul"}}}, "/engines/vllm/discovery"),
    "bad-service-type": ({"gateway": {"service": {"type": "Public"}}}, "/gateway/service/type"),
}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    cases: dict[str, dict[str, Any]] = {"default": {}}
    cases |= {path.name: yaml.safe_load(path.read_text()) for path in EXAMPLES}
    cases |= VARIANTS
    cases |= {name: values for name, (values, _) in REFUSED.items()}
    try:
        return helm_tools.check(cases)
    except helm_tools.ToolsMissing as exc:
        if os.environ.get("MODELYARD_REQUIRE_HELM") == "1":
            raise
        pytest.skip(f"chart tools not installable here: {exc}")


def rendered(report: dict[str, Any], case: str) -> list[dict[str, Any]]:
    result = report["cases"][case]
    assert result["render_error"] is None, result["render_error"]
    return result["objects"]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]["containers"][0]


def env(obj: dict[str, Any]) -> dict[str, Any]:
    """name -> value, or the valueFrom dict."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(obj).get("env", [])}


def pod_templates(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


GOOD_CASES = ["default", *[p.name for p in EXAMPLES], *[n for n in VARIANTS if n != "broken-object"]]


# -- lint, render, schema -------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["default", *[p.name for p in EXAMPLES]])
def test_helm_lint_finds_nothing(report: dict[str, Any], case: str) -> None:
    lint = report["cases"][case]["lint"]
    serious = [m for m in lint["messages"] if m["severity"] >= 2]  # 2 warning, 3 error; 1 is info
    assert not serious and not lint["errors"], serious or lint["errors"]


def test_helm_sdkpy_lint_finds_nothing(report: dict[str, Any]) -> None:
    lint = report["sdkpy_lint"]
    if "skipped" in lint:
        pytest.skip(lint["skipped"])
    assert lint["charts"] == 1
    assert not [m for m in lint["messages"] if m["severity"] >= 2] and not lint["errors"], lint


@pytest.mark.parametrize("case", GOOD_CASES)
def test_every_object_validates_against_the_kubernetes_schemas(report: dict[str, Any], case: str) -> None:
    objects = rendered(report, case)
    assert len(objects) >= 5
    assert report["cases"][case]["schema_errors"] == []


def test_the_schema_check_refuses_a_broken_object(report: dict[str, Any]) -> None:
    errors = report["cases"]["broken-object"]["schema_errors"]
    assert errors and all("Deployment/rel-modelyard-gateway" in e for e in errors)
    assert any("notAField" in e for e in errors) and len(errors) == len(report["kube_versions"])


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_values_are_refused_with_the_value_to_fix(report: dict[str, Any], case: str) -> None:
    error = report["cases"][case]["render_error"]
    assert error is not None, f"{case} rendered"
    assert REFUSED[case][1] in error


# -- docs/kubernetes.md's promises ----------------------------------------------------------------
def doc_sections() -> dict[str, str]:
    """Example case name -> its section of docs/kubernetes.md."""
    sections = {}
    for chunk in DOC.read_text().split("\n### ")[1:]:
        title = chunk.splitlines()[0]
        if match := re.search(r"`examples/([\w.-]+\.yaml)`", title):
            sections[match.group(1)] = chunk
        elif "defaults" in title:
            sections["default"] = chunk
    return sections


def test_every_example_is_documented() -> None:
    assert sorted(doc_sections()) == sorted(["default", *[p.name for p in EXAMPLES]])


@pytest.mark.parametrize("case", ["default", *[p.name for p in EXAMPLES]])
def test_each_example_produces_the_objects_its_table_lists(report: dict[str, Any], case: str) -> None:
    section = doc_sections()[case]
    promised = set(re.findall(r"^\| (\w+) \| `([\w.-]+)` \|", section, re.M))
    got = {(o["kind"], o["metadata"]["name"]) for o in rendered(report, case)}
    assert promised == got


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_yaml_shown_in_the_docs_is_the_example_file(path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", doc_sections()[path.name], re.S)
    assert blocks and blocks[0] == path.read_text()


def test_the_documented_values_exist() -> None:
    values = yaml.safe_load((helm_tools.CHART / "values.yaml").read_text())
    table = DOC.read_text().split("## Values", 1)[1].split("\n## ", 1)[0]
    keys = re.findall(r"^\| `([\w.]+)` \|", table, re.M)
    assert len(keys) > 40
    for key in keys:
        node: Any = values
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{key} is not in values.yaml"
            node = node[part]


# -- the objects ----------------------------------------------------------------------------------
def test_gpu_engines_get_gpus_shm_and_a_model_cache_claim(report: dict[str, Any]) -> None:
    objects = rendered(report, "gpu-fleet.yaml")
    sts = one(objects, "StatefulSet", PREFIX + "vllm-engine")
    assert sts["spec"]["replicas"] == 4 and sts["spec"]["podManagementPolicy"] == "Parallel"
    vllm = container(sts)
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert vllm["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert vllm["command"] == ["vllm", "serve"] and vllm["args"][0] == "Qwen/Qwen3-8B"
    flags = ("--tensor-parallel-size=2", "--max-model-len=32k", "--tool-call-parser=hermes", "--reasoning-parser=qwen3")
    assert set(flags) <= set(vllm["args"])
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"}
    mounts = {m["name"]: m["mountPath"] for m in vllm["volumeMounts"]}
    assert mounts["shm"] == "/dev/shm" and mounts["model-cache"] == "/models"
    assert "model-cache" not in volumes  # from the claim template, one per replica
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "model-cache"
    assert claim["spec"]["resources"]["requests"]["storage"] == "200Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert env(sts)["HF_HOME"] == "/models/huggingface"
    assert env(sts)["HF_TOKEN"] == {"secretKeyRef": {"name": "hf-token", "key": "token"}}
    assert container(sts)["startupProbe"]["httpGet"]["path"] == "/health"
    tolerations = sts["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_the_engine_service_is_headless_and_the_adapter_resolves_it(report: dict[str, Any]) -> None:
    objects = rendered(report, "default")
    svc = one(objects, "Service", PREFIX + "vllm-engine")
    sts = one(objects, "StatefulSet", PREFIX + "vllm-engine")
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is False
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert selects(svc["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"])
    (port,) = svc["spec"]["ports"]
    assert port["port"] == 8000 and container(sts)["ports"][0]["containerPort"] == 8000
    adapter_env = env(one(objects, "Deployment", PREFIX + "adapter-vllm"))
    assert adapter_env["MODELYARD_UPSTREAM_DNS"] == f"http://{PREFIX}vllm-engine.ml.svc.cluster.local:8000/v1"
    assert "MODELYARD_UPSTREAM_URL" not in adapter_env
    assert adapter_env["MODELYARD_MODEL"] == "Qwen/Qwen3-8B"


def test_pods_discovery_lists_the_statefulset_pods(report: dict[str, Any]) -> None:
    adapter_env = env(one(rendered(report, "pods-discovery"), "Deployment", PREFIX + "adapter-vllm"))
    svc = f"{PREFIX}vllm-engine.ml.svc.cluster.local"
    assert adapter_env["MODELYARD_UPSTREAM_URL"] == ",".join(
        f"http://{PREFIX}vllm-engine-{i}.{svc}:8000/v1" for i in range(3)
    )
    assert "MODELYARD_UPSTREAM_DNS" not in adapter_env


def test_engines_outside_the_chart(report: dict[str, Any]) -> None:
    objects = rendered(report, "external-database.yaml")
    assert not [o for o in objects if "engine" in o["metadata"]["name"]]
    adapter_env = env(one(objects, "Deployment", PREFIX + "adapter-vllm"))
    assert adapter_env["MODELYARD_UPSTREAM_DNS"] == "http://vllm-fleet.rollouts.svc.cluster.local:8000/v1"
    nim_env = env(one(objects, "Deployment", PREFIX + "adapter-nim"))
    assert nim_env["MODELYARD_UPSTREAM_URL"] == "https://integrate.api.nvidia.com/v1"


def test_shared_and_ephemeral_model_caches(report: dict[str, Any]) -> None:
    shared = one(rendered(report, "postgresql.yaml"), "StatefulSet", PREFIX + "vllm-engine")
    assert "volumeClaimTemplates" not in shared["spec"]
    volumes = {v["name"]: v for v in shared["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "models-rwx"}
    ephemeral = one(rendered(report, "emptydir-cache"), "StatefulSet", PREFIX + "vllm-engine")
    volumes = {v["name"]: v for v in ephemeral["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-cache"] == {"name": "model-cache", "emptyDir": {}}
    assert "--tensor-parallel-size=4" in container(ephemeral)["args"]
    assert container(ephemeral)["resources"]["limits"]["nvidia.com/gpu"] == 8


def test_adapters_probe_readyz_and_healthz_and_scale_with_an_hpa(report: dict[str, Any]) -> None:
    objects = rendered(report, "gpu-fleet.yaml")
    deployment = one(objects, "Deployment", PREFIX + "adapter-vllm")
    adapter = container(deployment)
    assert adapter["args"] == ["vllm"] and adapter["image"] == "modelyard/adapter:latest"
    assert adapter["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert adapter["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert adapter["ports"] == [{"name": "http", "containerPort": 8000}]
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    hpa = one(objects, "HorizontalPodAutoscaler", PREFIX + "adapter-vllm")
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": PREFIX + "adapter-vllm"}
    assert hpa["spec"]["scaleTargetRef"] == target
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["averageUtilization"] == 60
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace == 30 + 15 + 5  # MODELYARD_SHUTDOWN_GRACE + preStop sleep + margin
    assert adapter["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "15"]


def test_without_the_hpa_the_deployment_sets_replicas(report: dict[str, Any]) -> None:
    objects = rendered(report, "no-hpa")
    assert one(objects, "Deployment", PREFIX + "adapter-vllm")["spec"]["replicas"] == 3
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]


def test_adapter_services_headless_or_clusterip(report: dict[str, Any]) -> None:
    assert one(rendered(report, "default"), "Service", PREFIX + "adapter-vllm")["spec"]["clusterIP"] == "None"
    assert "clusterIP" not in one(rendered(report, "clusterip-adapters"), "Service", PREFIX + "adapter-vllm")["spec"]


def test_backend_env_overrides_the_shared_adapter_env(report: dict[str, Any]) -> None:
    deployment = one(rendered(report, "azure"), "Deployment", PREFIX + "adapter-azure")
    adapter_env = env(deployment)
    assert adapter_env["MODELYARD_LOG_LEVEL"] == "debug" and adapter_env["AZURE_OPENAI_DEPLOYMENT"] == "gpt-4o"
    names = [e["name"] for e in container(deployment)["env"]]
    assert len(names) == len(set(names))
    assert adapter_env["MODELYARD_UPSTREAM_URL"] == "https://res.openai.azure.com"


@pytest.mark.parametrize("case", GOOD_CASES)
def test_the_gateway_finds_every_adapter_service(report: dict[str, Any], case: str) -> None:
    objects = rendered(report, case)
    gateway = one(objects, "Deployment", PREFIX + "gateway")
    gateway_env = env(gateway)
    prefix = gateway_env["GATEWAY_ADAPTER_PREFIX"]
    adapters = {o["metadata"]["name"] for o in pod_templates(objects) if "adapter-" in o["metadata"]["name"]}
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert adapters and adapters <= services
    assert all(name.startswith(prefix) for name in adapters)
    backends = {name.removeprefix(prefix) for name in adapters}
    assert backends <= {"vllm", "nim", "openai", "azure", "openrouter"}
    assert gateway_env["POLICY_BACKEND"] in backends
    assert gateway_env["GATEWAY_ADAPTER_PORT"] == "8000"
    assert container(gateway)["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_gateway_service_and_keys(report: dict[str, Any]) -> None:
    objects = rendered(report, "hosted.yaml")
    svc = one(objects, "Service", PREFIX + "gateway")
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8"]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    gateway = one(objects, "Deployment", PREFIX + "gateway")
    assert env(gateway)["GATEWAY_API_KEYS"] == {"secretKeyRef": {"name": "modelyard-gateway-keys", "key": "api-keys"}}
    assert env(gateway)["POLICY_BACKEND"] == "openai"
    assert "GATEWAY_API_KEYS" not in env(one(rendered(report, "default"), "Deployment", PREFIX + "gateway"))


def test_ingress_only_when_enabled(report: dict[str, Any]) -> None:
    assert not [o for o in rendered(report, "default") if o["kind"] == "Ingress"]
    ingress = one(rendered(report, "ingress.yaml"), "Ingress", PREFIX + "gateway")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["llm.example.com"], "secretName": "llm-example-com-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "llm.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": PREFIX + "gateway", "port": {"name": "http"}}
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


SECRET_NAMES = re.compile(r"(API_KEYS?|TOKEN|PASSWORD)$")


@pytest.mark.parametrize("case", GOOD_CASES)
def test_secrets_are_referenced_never_inlined(report: dict[str, Any], case: str) -> None:
    objects = rendered(report, case)
    assert not [o for o in objects if o["kind"] in ("Secret", "ConfigMap")]
    for obj in pod_templates(objects):
        where = obj["metadata"]["name"]
        for name, value in env(obj).items():
            if SECRET_NAMES.search(name):
                assert isinstance(value, dict) and "secretKeyRef" in value, f"{where}: {name}"
            if name == "MODELYARD_STORE_URL" and isinstance(value, str):
                assert re.fullmatch(r"postgresql://[\w-]+@[\w.-]+:5432/\w+", value), f"{where}: {value}"
        assert not [a for a in container(obj).get("args", []) if re.search("key|token|password", a, re.I)], where


def test_the_store_url_from_a_secret_or_the_charts_server(report: dict[str, Any]) -> None:
    external = rendered(report, "external-database.yaml")
    for name in ("adapter-vllm", "adapter-nim"):
        store = env(one(external, "Deployment", PREFIX + name))["MODELYARD_STORE_URL"]
        assert store == {"secretKeyRef": {"name": "modelyard-db", "key": "url"}}
    local = rendered(report, "postgresql.yaml")
    adapter_env = env(one(local, "Deployment", PREFIX + "adapter-vllm"))
    assert adapter_env["MODELYARD_STORE_URL"] == f"postgresql://modelyard@{PREFIX}postgresql:5432/modelyard"
    assert adapter_env["PGPASSWORD"] == {"secretKeyRef": {"name": "modelyard-postgresql", "key": "password"}}
    pg = one(local, "StatefulSet", PREFIX + "postgresql")
    assert container(pg)["image"] == "postgres:17"
    assert env(pg)["POSTGRES_PASSWORD"] == adapter_env["PGPASSWORD"]
    assert pg["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert "MODELYARD_STORE_URL" not in env(one(rendered(report, "default"), "Deployment", PREFIX + "adapter-vllm"))


@pytest.mark.parametrize("case", GOOD_CASES)
def test_pods_run_unprivileged(report: dict[str, Any], case: str) -> None:
    for obj in pod_templates(rendered(report, case)):
        pod = obj["spec"]["template"]["spec"]
        box = container(obj)["securityContext"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
        assert box["allowPrivilegeEscalation"] is False and box["capabilities"] == {"drop": ["ALL"]}
        if "adapter-" in obj["metadata"]["name"] or obj["metadata"]["name"].endswith("gateway"):
            assert box["readOnlyRootFilesystem"] is True
            assert {"name": "tmp", "mountPath": "/tmp"} in container(obj)["volumeMounts"]


@pytest.mark.parametrize("case", GOOD_CASES)
def test_selectors_match_the_pods_they_are_for(report: dict[str, Any], case: str) -> None:
    objects = rendered(report, case)
    pods = [o["spec"]["template"]["metadata"]["labels"] for o in pod_templates(objects)]
    for obj in pod_templates(objects):
        assert selects(obj["spec"]["selector"]["matchLabels"], obj["spec"]["template"]["metadata"]["labels"])
    for obj in objects:
        if obj["kind"] == "Service":
            matched = [p for p in pods if selects(obj["spec"]["selector"], p)]
        elif obj["kind"] in ("PodDisruptionBudget", "NetworkPolicy"):
            spec = obj["spec"].get("selector") or obj["spec"]["podSelector"]
            matched = [p for p in pods if selects(spec["matchLabels"], p)]
        else:
            continue
        assert matched, f"{obj['kind']}/{obj['metadata']['name']} selects no pod"
        if obj["kind"] in ("Service", "PodDisruptionBudget"):
            assert len(matched) == 1, f"{obj['kind']}/{obj['metadata']['name']} selects {len(matched)} workloads"


def test_network_policies_guard_each_tier(report: dict[str, Any]) -> None:
    objects = rendered(report, "everything")
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    assert sorted(policies) == sorted(PREFIX + n for n in ("gateway", "adapters", "vllm-engine", "postgresql"))
    engine_from = policies[PREFIX + "vllm-engine"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert engine_from["app.kubernetes.io/component"] == "adapter-vllm"
    adapters_from = policies[PREFIX + "adapters"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert adapters_from["app.kubernetes.io/component"] == "gateway"
    adapter_pods = [o for o in pod_templates(objects) if "adapter-" in o["metadata"]["name"]]
    assert len(adapter_pods) == 5
    guarded = policies[PREFIX + "adapters"]["podSelector"]["matchLabels"]
    assert all(selects(guarded, o["spec"]["template"]["metadata"]["labels"]) for o in adapter_pods)
    assert "from" not in policies[PREFIX + "gateway"]["ingress"][0]  # ingressFrom empty: everyone
    behind_ingress = one(rendered(report, "ingress.yaml"), "NetworkPolicy", PREFIX + "gateway")
    namespace = {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    assert behind_ingress["spec"]["ingress"][0]["from"] == [{"namespaceSelector": namespace}]


def test_engine_api_key_reaches_engines_and_adapter_from_one_secret(report: dict[str, Any]) -> None:
    objects = rendered(report, "engine-key")
    ref = {"secretKeyRef": {"name": "vllm-key", "key": "k"}}
    assert env(one(objects, "StatefulSet", PREFIX + "vllm-engine"))["VLLM_API_KEY"] == ref
    assert env(one(objects, "Deployment", PREFIX + "adapter-vllm"))["MODELYARD_UPSTREAM_API_KEY"] == ref
    assert not [a for a in container(one(objects, "StatefulSet", PREFIX + "vllm-engine"))["args"] if "api-key" in a]
