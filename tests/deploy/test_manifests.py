"""The deployment files agree with the code and with each other.

What a typo in YAML would otherwise only show in a cluster: every manifest parses; every
setting named in the ConfigMap, a Deployment or docker-compose.yml is a real settings
field, and one the service it is given to reads; every Deployment probes /healthz and
/readyz on its service's port, runs hardened, bounded and spread over nodes; KEDA
watches the queues the tool-runner really consumes; alert rules use metrics the services
really export. Then the real validators (kubernetes-validate,
promtool, docker-compose) when they are installed, an honest skip when they are not.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agentry_shared import settings as settings_module
from agentry_shared.access import SERVICES as BROKER_SERVICES
from agentry_shared.access import definitions, user_name
from agentry_shared.settings import (
    CommonSettings,
    GatewaySettings,
    MemorySettings,
    OfflineModelSettings,
    ReasonerSettings,
    ToolRunnerSettings,
    TracingSettings,
)
from agentry_shared.topology import Topology
from pydantic_settings import BaseSettings

from tests.stack import broker_users_script

yaml = pytest.importorskip("yaml", reason="PyYAML reads the manifests: pip install pyyaml")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
BASE = K8S / "base"
COMPOSE_FILE = ROOT / "docker-compose.yml"
RULES = K8S / "prometheus" / "agentry-rules.yaml"
RULES_TEST = K8S / "prometheus" / "agentry-rules.test.yaml"
COMPOSE_PROMETHEUS = K8S / "prometheus" / "prometheus-compose.yml"
UID = 10001
POOLS = {"default", "sandbox", "network"}
# bubblewrap needs user namespaces and a fresh /proc, which a container's defaults refuse
# (docs/deploy.md, "The tool-runner sandbox"); every pool runs it.
SANDBOXED_DEPLOYMENTS = {f"tool-runner-{pool}" for pool in POOLS}
# Oldest supported: 1.30, the first with securityContext.appArmorProfile; and the newest known.
OLDEST_KUBERNETES = "1.30.0"


@dataclass(frozen=True)
class Service:
    folder: str
    port_var: str
    settings: type[CommonSettings]

    @property
    def script(self) -> str:
        return f"agentry-{self.folder}"

    @property
    def default_port(self) -> int:
        return int(self.settings.model_fields[self.port_var.lower()].default)


SERVICES = {
    "gateway": Service("gateway", "GATEWAY_PORT", GatewaySettings),
    "reasoner": Service("reasoner", "REASONER_PORT", ReasonerSettings),
    "tool-runner": Service("tool-runner", "TOOL_RUNNER_PORT", ToolRunnerSettings),
    "memory": Service("memory", "MEMORY_PORT", MemorySettings),
    "offline-model": Service("offline-model", "OFFLINE_MODEL_PORT", OfflineModelSettings),
}


def setting_names() -> set[str]:
    """Every environment variable any service reads: all settings fields, upper-cased, of
    the shared settings module and of a service's own `settings.py` where it has one."""
    modules = [settings_module]
    for path in sorted(ROOT.glob("services/*/agentry_*/settings.py")):
        modules.append(importlib.import_module(f"{path.parent.name}.settings"))
    names: set[str] = set()
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseSettings) and value is not BaseSettings:
                names.update(field.upper() for field in value.model_fields)
    return names


SETTINGS = setting_names()


@functools.cache
def _parsed(path: Path) -> tuple[dict[str, Any], ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(doc for doc in yaml.load_all(path.read_text(), Loader=loader) if doc is not None)


def load(path: Path) -> list[dict[str, Any]]:
    """The documents of a YAML file (parsed once per session; callers only read them)."""
    return list(_parsed(path))


def kustomization(folder: Path) -> dict[str, Any]:
    return load(folder / "kustomization.yaml")[0]


def base_resources() -> list[dict[str, Any]]:
    return [doc for name in kustomization(BASE)["resources"] for doc in load(BASE / name)]


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def config() -> dict[str, str]:
    return dict(of_kind(base_resources(), "ConfigMap")["agentry-config"]["data"])


def deployments() -> dict[str, dict[str, Any]]:
    return of_kind(base_resources(), "Deployment")


def keda_resources() -> list[dict[str, Any]]:
    keda = K8S / "keda"
    return [doc for name in kustomization(keda)["resources"] for doc in load(keda / name)]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions In/NotIn/Exists)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and labels.get(key) in values)
            or (op == "Exists" and key not in labels)
            or (op == "DoesNotExist" and key in labels)
        ):
            return False
    return True


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def service_of(deployment: dict[str, Any]) -> Service:
    return SERVICES[pod_labels(deployment)["app.kubernetes.io/component"]]


def the_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per pod"
    return dict(containers[0])


def container_env_names(container: dict[str, Any]) -> set[str]:
    return {item["name"] for item in container.get("env", [])}


# --- (a) everything parses -------------------------------------------------------------


def yaml_files() -> Iterator[Path]:
    yield COMPOSE_FILE
    yield from sorted(K8S.rglob("*.yaml"))


@pytest.mark.parametrize("path", list(yaml_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    docs = load(path)
    assert docs, f"{path} has no document"
    assert all(isinstance(doc, dict) for doc in docs)


def test_kustomizations_name_files_that_exist() -> None:
    for folder in (BASE, K8S / "keda", K8S / "prometheus", K8S / "mongodb"):
        k = kustomization(folder)
        named = list(k.get("resources", []))
        named += [f for gen in k.get("configMapGenerator", []) for f in gen.get("files", [])]
        named += [p["path"] for p in k.get("patches", []) if "path" in p]
        assert named, folder
        for name in named:
            target = folder / name
            assert target.is_file() or (target / "kustomization.yaml").is_file(), f"{target} is named but missing"
    listed = set(kustomization(BASE)["resources"])
    # The Secret template is left out on purpose: apply -k must never overwrite real secrets.
    templates = {"secret.example.yaml", "broker-users.example.yaml"}
    unlisted = {p.name for p in BASE.glob("*.yaml")} - listed - {"kustomization.yaml", *templates}
    assert not unlisted, f"files in k8s/base not in its kustomization: {unlisted}"


# --- (b) cross-references --------------------------------------------------------------


def test_configmap_names_only_real_settings() -> None:
    unknown = set(config()) - SETTINGS
    assert not unknown, f"ConfigMap keys no settings class reads: {sorted(unknown)}"


def test_deployments_and_secret_name_only_real_settings() -> None:
    secret = load(BASE / "secret.example.yaml")[0]
    names = set(secret["stringData"])
    for deployment in deployments().values():
        names |= container_env_names(the_container(deployment))
    unknown = names - SETTINGS
    assert not unknown, f"environment variables no settings class reads: {sorted(unknown)}"


def own_settings(service: Service) -> set[str]:
    """What one service's process reads: its settings class (the OpenTelemetry variables too)."""
    return {name.upper() for name in (*service.settings.model_fields, *TracingSettings.model_fields)}


# Image variables that are not settings: Python's and pip's, the healthcheck's pointer to the
# port setting, and the build's commit (agentry_shared.metrics reads it).
NOT_SETTINGS = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_DISABLE_PIP_VERSION_CHECK"}
NOT_SETTINGS |= {"PORT_VARIABLE", "AGENTRY_GIT_SHA"}


def test_each_service_is_given_only_settings_it_reads() -> None:
    """A variable set on one service's container (Deployment, an overlay's patch of it,
    compose, its image) that only another service reads is ignored as silently as a typo:
    e.g. MONGODB_URL on the reasoner, or LLM_MODEL on the gateway."""
    wrong = []
    mongodb = K8S / "mongodb"  # the one overlay that patches a container
    patches = [load(mongodb / p["path"])[0] for p in kustomization(mongodb)["patches"] if "path" in p]
    for name, deployment in deployments().items():
        service = service_of(deployment)
        containers = [the_container(deployment)]
        containers += [
            c for p in patches if p["metadata"]["name"] == name for c in p["spec"]["template"]["spec"]["containers"]
        ]
        for container in containers:
            wrong += [f"Deployment {name}: {n}" for n in sorted(container_env_names(container) - own_settings(service))]
    for name, compose_service in agentry_compose_services().items():
        service = SERVICES[compose_service["build"]["args"]["SERVICE"]]
        wrong += [f"compose {name}: {n}" for n in sorted(set(compose_service["environment"]) - own_settings(service))]
    for name, service in SERVICES.items():
        env = {item.partition("=")[0] for item in " ".join(instructions(image_of(name), "ENV")).split()}
        wrong += [f"image {name}: {n}" for n in sorted(env - NOT_SETTINGS - own_settings(service))]
    assert not wrong, "variables set where no setting reads them:\n" + "\n".join(wrong)


def test_gateway_never_runs_the_development_identity_in_kubernetes() -> None:
    """Pinned in the Deployment's env (which wins over envFrom), absent from the ConfigMap."""
    env = {item["name"]: item for item in the_container(deployments()["gateway"]).get("env", [])}
    assert env["AUTH_DEV_IDENTITY"] == {"name": "AUTH_DEV_IDENTITY", "value": "false"}
    assert "AUTH_DEV_IDENTITY" not in config()
    # Optional so a JWKS deployment can leave it out: the gateway itself refuses to start keyless.
    assert env["AUTH_JWT_SECRET"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_secret_refs_resolve() -> None:
    secret = load(BASE / "secret.example.yaml")[0]
    for name, deployment in deployments().items():
        for item in the_container(deployment).get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref is None or item["name"] == "AMQP_URL":  # its own user: the next test
                continue
            assert ref["name"] == secret["metadata"]["name"], name
            assert ref["key"] == item["name"], f"{name}: {item['name']} from key {ref['key']}"
            if not ref.get("optional", False):
                assert ref["key"] in secret["stringData"], f"{name} requires {ref['key']}, not in the template"


def broker_env_key(component: str) -> str:
    return "AMQP_URL_" + component.upper().replace("-", "_")


def test_each_deployment_uses_its_own_broker_user() -> None:
    """AMQP_URL from its own key of the broker-users Secret, required (no pod without it);
    the template and the generator have exactly those keys."""
    template = load(BASE / "broker-users.example.yaml")[0]
    namespace = config()["AGENTRY_NAMESPACE"]
    keys = {broker_env_key(s) for s in BROKER_SERVICES}
    assert set(template["stringData"]) == {*keys, "users.json", "RABBITMQ_MANAGEMENT_URL"}
    for service in BROKER_SERVICES:
        assert template["stringData"][broker_env_key(service)].startswith(f"amqp://{user_name(namespace, service)}:")
    for name, deployment in deployments().items():
        component = pod_labels(deployment)["app.kubernetes.io/component"]
        env = {item["name"]: item for item in the_container(deployment).get("env", [])}
        if component not in BROKER_SERVICES:
            assert "AMQP_URL" not in env, name  # the offline model has no broker user
            continue
        ref = env["AMQP_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": template["metadata"]["name"], "key": broker_env_key(component)}, name
    generated = json.loads(broker_users_script().k8s_secret(namespace, "broker:5672", "/", "http://a:b@broker:15672"))
    assert set(generated["stringData"]) == set(template["stringData"])
    users = json.loads(generated["stringData"]["users.json"])["users"]
    assert {u["name"] for u in users} == {user_name(namespace, s) for s in BROKER_SERVICES}


def test_broker_permissions_are_those_of_access_py() -> None:
    """The committed permissions the Job imports: regenerate with `make broker-permissions`."""
    committed = json.loads((BASE / "broker-permissions.json").read_text())
    topology = Topology(config()["AGENTRY_NAMESPACE"], int(config()["AGENTRY_PARTITIONS"]))
    assert committed == definitions(topology, "/"), "stale: run `make broker-permissions`"
    assert {p["user"] for p in committed["permissions"]} == {user_name(topology.namespace, s) for s in BROKER_SERVICES}
    # Nobody writes to the default exchange (it reaches every queue by name).
    assert not any(re.fullmatch(p["write"], name) for p in committed["permissions"] for name in ("", "amq.default"))
    (generator,) = kustomization(BASE)["configMapGenerator"]
    assert generator == {"name": "agentry-broker-permissions", "files": ["broker-permissions.json"]}


def test_the_broker_users_job_imports_users_then_permissions() -> None:
    (job,) = of_kind(base_resources(), "Job").values()
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert mounts["/broker/users"]["secret"]["secretName"] == "agentry-broker-users"
    assert mounts["/broker/permissions"]["configMap"]["name"] == "agentry-broker-permissions"
    script = container["args"][0]
    assert script.index("/broker/users/users.json") < script.index("/broker/permissions/broker-permissions.json")
    assert "--fail" in script and "set -eu" in script
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", sorted(deployments()))
def test_deployment_probes_its_own_port(name: str) -> None:
    deployment = deployments()[name]
    service = service_of(deployment)
    container = the_container(deployment)
    port = int(config()[service.port_var])
    assert port == service.default_port, f"{service.port_var} differs from the settings default"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port}

    def probed_port(probe: dict[str, Any]) -> int:
        target = probe["httpGet"]["port"]
        return int(ports[target]) if isinstance(target, str) else int(target)

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probed_port(container["livenessProbe"]) == port
    assert probed_port(container["readinessProbe"]) == port
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"
    # The ConfigMap reaches the container, so BIND_HOST=0.0.0.0 and the port apply.
    assert {"configMapRef": {"name": "agentry-config"}} in container["envFrom"]
    assert config()["BIND_HOST"] == "0.0.0.0"
    services = [
        s
        for s in of_kind(base_resources(), "Service").values()
        if selects({"matchLabels": s["spec"]["selector"]}, pod_labels(deployment))
    ]
    assert len(services) == 1, f"{name}: {len(services)} Services select it"
    assert services[0]["spec"]["ports"][0]["targetPort"] in ("http", port)


@pytest.mark.parametrize("name", sorted(deployments()))
def test_deployment_is_hardened_and_bounded(name: str) -> None:
    deployment = deployments()[name]
    pod = deployment["spec"]["template"]["spec"]
    container = the_container(deployment)
    pod_sc, sc = pod["securityContext"], container["securityContext"]
    assert pod_sc.get("runAsNonRoot") is True or sc.get("runAsNonRoot") is True
    assert pod_sc["runAsUser"] == UID and pod_sc["runAsGroup"] == UID
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert not sc.get("privileged", False)
    assert pod["automountServiceAccountToken"] is False
    if name in SANDBOXED_DEPLOYMENTS:
        # What bubblewrap needs, and no more: still no capability, no root, no escalation.
        assert pod_sc["seccompProfile"] == {"type": "Unconfined"}
        assert pod_sc["appArmorProfile"] == {"type": "Unconfined"}
        assert pod["hostUsers"] is False and sc["procMount"] == "Unmasked"
    else:
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "appArmorProfile" not in pod_sc and "procMount" not in sc and "hostUsers" not in pod
    # A read-only root still needs a writable /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name}: {kind}"


@pytest.mark.parametrize("name", sorted(deployments()))
def test_termination_grace_outlasts_shutdown_grace(name: str) -> None:
    deployment = deployments()[name]
    container = the_container(deployment)
    grace = float(config()["SHUTDOWN_GRACE_SECONDS"])
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop = float(command[1]) if command[:1] == ["sleep"] else 0.0
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > pre_stop + grace


def test_scaling_matches_what_each_component_allows() -> None:
    resources = base_resources()
    found = deployments()
    partitions = int(config()["AGENTRY_PARTITIONS"])
    assert found["gateway"]["spec"]["replicas"] == 2
    assert found["reasoner"]["spec"]["replicas"] == 2
    assert found["offline-model"]["spec"]["replicas"] == 1
    # The embedded store is one SQLite file: one memory process, never two at once.
    assert found["memory"]["spec"]["replicas"] == 1
    assert found["memory"]["spec"]["strategy"]["type"] == "Recreate"
    hpas = of_kind(resources, "HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} == {"gateway", "reasoner"}
    for hpa in hpas.values():
        assert hpa["spec"]["minReplicas"] >= 2
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # Replicas share the partitions out: beyond the partition count one would get none.
    assert hpas["reasoner"]["spec"]["maxReplicas"] <= partitions
    assert hpas["reasoner"]["spec"]["maxReplicas"] > found["reasoner"]["spec"]["replicas"]
    pdbs = of_kind(resources, "PodDisruptionBudget")
    covered = {
        name for name, d in found.items() for p in pdbs.values() if selects(p["spec"]["selector"], pod_labels(d))
    }
    assert covered == {"gateway", "reasoner", *(f"tool-runner-{pool}" for pool in POOLS)}


def test_memory_runs_several_replicas_with_mongodb() -> None:
    """k8s/mongodb: memory on MongoDB, two or more replicas rolled one at a time, no volume
    of its own, an HPA within the partition count and a PDB."""
    overlay = K8S / "mongodb"
    patch = load(overlay / "memory-replicas.yaml")[0]
    assert patch["spec"]["replicas"] >= 2
    assert patch["spec"]["strategy"]["type"] == "RollingUpdate"
    assert patch["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    env = {e["name"]: e for e in patch["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MONGODB_URL"]["valueFrom"]["secretKeyRef"]["optional"] is False
    scaling = {doc["kind"]: doc for doc in load(overlay / "memory-scaling.yaml")}
    hpa = scaling["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "memory"
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"] <= int(config()["AGENTRY_PARTITIONS"])
    assert scaling["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return
    built = kustomize_build(kubectl, overlay)
    assert "PersistentVolumeClaim" not in {doc["kind"] for doc in built}
    memory = of_kind(built, "Deployment")["memory"]
    assert memory["spec"]["replicas"] == patch["spec"]["replicas"]
    assert all("persistentVolumeClaim" not in v for v in memory["spec"]["template"]["spec"]["volumes"])
    assert {doc["metadata"].get("namespace") for doc in built if doc["kind"] != "Namespace"} == {"agentry"}
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in built:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def scaled_out() -> set[str]:
    """The Deployments that may run more than one pod: more than one replica in the base or
    an overlay, or a target of an HPA (base, k8s/mongodb) or of a KEDA ScaledObject."""
    names = {name for name, d in deployments().items() if d["spec"]["replicas"] > 1}
    mongodb = K8S / "mongodb"
    overlay = load(mongodb / "memory-scaling.yaml")
    patches = [load(mongodb / p["path"])[0] for p in kustomization(mongodb)["patches"] if "path" in p]
    names |= {p["metadata"]["name"] for p in patches if p.get("spec", {}).get("replicas", 1) > 1}
    for doc in [*base_resources(), *overlay, *keda_resources()]:
        if doc["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"):
            names.add(doc["spec"]["scaleTargetRef"]["name"])
    return names


def test_replicas_spread_across_nodes() -> None:
    """Every Deployment that may run several pods spreads them over nodes (so one node's
    loss is not every replica's), counting only its own pods."""
    found = deployments()
    patched = {
        doc["metadata"]["name"]: doc
        for p in kustomization(K8S / "mongodb")["patches"]
        if "path" in p
        for doc in load(K8S / "mongodb" / p["path"])
    }
    names = scaled_out()
    assert {"gateway", "reasoner", "memory", *SANDBOXED_DEPLOYMENTS} <= names
    for name in sorted(names):
        pod = found[name]["spec"]["template"]["spec"]
        constraints = pod.get("topologySpreadConstraints") or patched.get(name, {}).get("spec", {}).get(
            "template", {}
        ).get("spec", {}).get("topologySpreadConstraints", [])
        by_node = [c for c in constraints if c["topologyKey"] == "kubernetes.io/hostname"]
        assert by_node, f"{name} may run several replicas but does not spread them over nodes"
        for constraint in by_node:
            assert constraint["maxSkew"] == 1, name
            counted = {n for n, d in found.items() if selects(constraint["labelSelector"], pod_labels(d))}
            assert counted == {name}, f"{name} spreads by the pods of {sorted(counted)}"


def test_tool_runner_pools_and_their_keda_queues() -> None:
    cfg = config()
    topology = Topology(cfg["AGENTRY_NAMESPACE"], int(cfg["AGENTRY_PARTITIONS"]))
    runners = {n: d for n, d in deployments().items() if pod_labels(d)["app.kubernetes.io/component"] == "tool-runner"}
    pools = {}
    for name, deployment in runners.items():
        args = the_container(deployment)["args"]
        assert args[0] == "--pools" and len(args) == 2, name
        pools[name] = args[1]
        assert name == f"tool-runner-{args[1]}"
    assert set(pools.values()) == POOLS
    keda = keda_resources()
    scaled = of_kind(keda, "ScaledObject")
    auths = of_kind(keda, "TriggerAuthentication")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} == set(runners)
    for obj in scaled.values():
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        target = obj["spec"]["scaleTargetRef"]["name"]
        assert obj["spec"]["minReplicaCount"] >= 1
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == topology.tool_queue(pools[target])
        auth = auths[trigger["authenticationRef"]["name"]]
        # As the tool-runner's own user, which may look at its pool queues.
        host = {"parameter": "host", "name": "agentry-broker-users", "key": "AMQP_URL_TOOL_RUNNER"}
        assert auth["spec"]["secretTargetRef"] == [host]


# RabbitMQ's pods as their usual installers label them. The RabbitMQ Cluster Operator names
# each cluster's pods after the RabbitmqCluster (its internal/metadata/label.go), so only
# `component` says "a broker" whatever the cluster is called; Helm charts (Bitnami's) set
# `name: rabbitmq`.
BROKER_PODS = {
    "cluster operator": {
        "app.kubernetes.io/name": "production-ready",
        "app.kubernetes.io/component": "rabbitmq",
        "app.kubernetes.io/part-of": "rabbitmq",
    },
    "helm chart": {"app.kubernetes.io/name": "rabbitmq", "app.kubernetes.io/instance": "broker"},
}


def egress_reaches(policy: dict[str, Any], labels: dict[str, str], port: int) -> bool:
    """Whether an egress rule of the policy admits a pod with these labels (in any
    namespace) on this TCP port."""
    for rule in policy["spec"].get("egress", []):
        if not any(p.get("port") == port for p in rule.get("ports", [])):
            continue
        for peer in rule.get("to", []):
            if peer.get("namespaceSelector") == {} and selects(peer.get("podSelector", {}), labels):
                return True
    return False


def test_network_policies_reach_the_broker_whatever_installed_it() -> None:
    """A broker from the Cluster Operator under any cluster name, or from a Helm chart: the
    services reach AMQP, the Job the management API; no other port, no other pod."""
    policies = of_kind(base_resources(), "NetworkPolicy")
    amqp, management = policies["allow-rabbitmq"], policies["broker-users-to-management"]
    for installer, labels in BROKER_PODS.items():
        for port in (5672, 5671):
            assert egress_reaches(amqp, labels, port), f"AMQP {port} to a broker of the {installer}"
        assert egress_reaches(management, labels, 15672), f"the management API of the {installer}'s broker"
        assert not egress_reaches(amqp, labels, 15672) and not egress_reaches(management, labels, 5672)
    other = {"app.kubernetes.io/name": "postgres", "app.kubernetes.io/component": "database"}
    assert not egress_reaches(amqp, other, 5672) and not egress_reaches(management, other, 15672)


def pod_target(labels: dict[str, str], port: int) -> dict[str, str]:
    """The meta labels Kubernetes service discovery (role: pod) gives a pod's port."""
    meta = {f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v for k, v in labels.items()}
    return {**meta, "__meta_kubernetes_pod_container_port_number": str(port)}


def relabel_keeps(job: dict[str, Any], target: dict[str, str]) -> bool:
    """Whether the job's `keep` relabellings keep the target (Prometheus joins the source
    labels with `;`, a missing one as empty, and anchors the regex)."""
    for rule in job["relabel_configs"]:
        if rule.get("action") == "keep":
            value = rule.get("separator", ";").join(target.get(name, "") for name in rule["source_labels"])
            if not re.fullmatch(rule["regex"], value):
                return False
    return True


def test_network_policies_deny_by_default_and_keep_tools_inside() -> None:
    resources = base_resources()
    policies = of_kind(resources, "NetworkPolicy")
    deny = [
        p
        for p in policies.values()
        if p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ]
    assert deny and not any("ingress" in p["spec"] or "egress" in p["spec"] for p in deny)
    found = {**deployments(), **of_kind(resources, "Job")}
    for name, policy in policies.items():
        if policy["spec"]["podSelector"]:
            assert any(selects(policy["spec"]["podSelector"], pod_labels(d)) for d in found.values()), (
                f"NetworkPolicy {name} selects no pod"
            )
    # Only the network pool, and the reasoner and memory (a hosted model), leave the cluster.
    leaving = set()
    for policy in policies.values():
        if any("ipBlock" in peer for rule in policy["spec"].get("egress", []) for peer in rule.get("to", [])):
            leaving |= {n for n, d in found.items() if selects(policy["spec"]["podSelector"], pod_labels(d))}
    assert leaving == {"tool-runner-network", "reasoner", "memory"}


# --- docker-compose.yml and Dockerfiles ------------------------------------------------


def compose() -> dict[str, Any]:
    return load(COMPOSE_FILE)[0]


def agentry_compose_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if "build" in s}


def test_compose_services_and_settings() -> None:
    services = compose()["services"]
    assert {"rabbitmq", "mongo"} <= set(services)
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.13")
    assert services["mongo"]["image"] == "mongo:7"
    ours = agentry_compose_services()
    assert set(ours) == {*SERVICES, "tool-runner-sandbox"}
    for name, service in ours.items():
        env = service["environment"]
        unknown = set(env) - SETTINGS
        assert not unknown, f"{name}: environment variables no settings class reads: {sorted(unknown)}"
        assert env["BIND_HOST"] == "0.0.0.0"
        assert "AMQP_URL" not in env, f"{name}: its own user's AMQP_URL comes from its env_file"
        assert (ROOT / service["build"]["dockerfile"]).is_file()
        if name != "offline-model":  # the only service without a broker connection
            assert "rabbitmq" in service["depends_on"], name
        for dependency in service.get("depends_on", {}).values():
            assert dependency["condition"] == "service_healthy"
    assert ours["reasoner"]["scale"] == 2
    assert ours["memory"]["environment"]["MONGODB_URL"].startswith("mongodb://mongo:27017")
    assert "mongo" in ours["memory"]["depends_on"]
    assert "offline-model:8090" in ours["reasoner"]["environment"]["OPENAI_BASE_URL"]
    assert ours["tool-runner"]["command"] == ["--pools", "default,network"]
    assert ours["tool-runner-sandbox"]["command"] == ["--pools", "sandbox"]
    served = {p for s in ("tool-runner", "tool-runner-sandbox") for p in ours[s]["command"][1].split(",")}
    assert served == POOLS
    # Nothing listens beyond loopback; of our services only the gateway is published.
    for name, service in services.items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} beyond loopback"
    assert [n for n, s in ours.items() if s.get("ports")] == ["gateway"]
    assert ours["gateway"]["ports"] == ["127.0.0.1:8080:8080"]


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> the repository file a compose service bind-mounts there."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith("./"):
            found[target] = (ROOT / source).resolve()
    return found


def test_compose_prometheus_scrapes_every_service_and_the_broker() -> None:
    """The `prometheus` service loads k8s/prometheus's compose config and alert rules, and
    that config scrapes each Agentry service of compose on the port its settings give it
    (every container of it: DNS A records) and RabbitMQ's plugin per object."""
    services = compose()["services"]
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:v2.")
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]
    flags = dict(flag.removeprefix("--").partition("=")[::2] for flag in prometheus["command"])
    config_path = Path(flags["config.file"])
    mounts = _mounts(prometheus)
    assert mounts[str(config_path)] == COMPOSE_PROMETHEUS
    config = load(COMPOSE_PROMETHEUS)[0]
    # rule_files are relative to the config file: the same name beside it, in the repository and in the container.
    for rule_file in config["rule_files"]:
        assert mounts[str(config_path.parent / rule_file)] == (COMPOSE_PROMETHEUS.parent / rule_file).resolve() == RULES

    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    scraped: set[tuple[str, int]] = set()
    for sd in jobs["agentry"].get("dns_sd_configs", []):
        assert sd["type"] == "A"  # every container of a scaled service, not one of them
        scraped |= {(name, int(sd["port"])) for name in sd["names"]}
    for static in jobs["agentry"].get("static_configs", []):
        scraped |= {(host, int(port)) for host, _, port in (t.rpartition(":") for t in static["targets"])}
    expected = set()
    for name, service in agentry_compose_services().items():
        port_var = SERVICES[service["build"]["args"]["SERVICE"]].port_var
        expected.add((name, int(service["environment"][port_var])))
    assert scraped == expected

    # RabbitMQ's rabbitmq_prometheus plugin, enabled by the rabbitmq service, per queue.
    plugins = services["rabbitmq"]["environment"]["RABBITMQ_ENABLED_PLUGINS"].split(",")
    assert "rabbitmq_prometheus" in plugins and "rabbitmq_management" in plugins
    assert jobs["rabbitmq"]["metrics_path"] == "/metrics/per-object"
    assert [t for s in jobs["rabbitmq"]["static_configs"] for t in s["targets"]] == ["rabbitmq:15692"]


def test_kubernetes_scrapes_the_brokers_plugin() -> None:
    """k8s/ has no broker of its own (RabbitMQ runs from its operator or elsewhere): what it
    ships is the scrape of the broker's plugin, a job for the Prometheus of the cluster."""
    scrape = load(K8S / "prometheus" / "rabbitmq-scrape.yaml")
    (job,) = [job for doc in scrape for job in doc.get("scrape_configs", [])]
    assert job["metrics_path"] == "/metrics/per-object"
    # The brokers the NetworkPolicies let the services reach, on the plugin's port only.
    for labels in BROKER_PODS.values():
        assert relabel_keeps(job, pod_target(labels, 15692)), labels
        assert not relabel_keeps(job, pod_target(labels, 5672)), labels
    assert not relabel_keeps(job, pod_target({"app.kubernetes.io/name": "agentry"}, 15692))
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus, or `make prometheus`)")
    result = subprocess.run(
        [promtool, "check", "config", "rabbitmq-scrape.yaml"],
        cwd=K8S / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        # Debian builds Prometheus without Kubernetes service discovery (its client libraries are not packaged).
        pytest.skip("this promtool has no Kubernetes service discovery (Debian's build): the job is checked as YAML")
    assert result.returncode == 0, result.stdout + result.stderr


DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Stage:
    name: str | None
    base: str
    instructions: tuple[str, ...]  # continuation lines joined, comments dropped


def dockerfile_stages() -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages of the one Dockerfile, in order."""
    lines: list[str] = []
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1].rstrip() + " " + raw.strip()
        else:
            lines.append(raw.strip())
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    current: list[str] = []
    for line in lines:
        word, _, rest = line.partition(" ")
        if word == "FROM":
            match = re.fullmatch(r"(\S+)(?: AS (\S+))?", rest)
            assert match is not None, line
            stages.append(Stage(match.group(2), match.group(1), ()))
            current = []
        elif not stages:
            assert word == "ARG", f"only ARG may precede the first FROM: {line}"
            name, _, default = rest.partition("=")
            global_args[name] = default
        else:
            current.append(line)
            stages[-1] = Stage(stages[-1].name, stages[-1].base, tuple(current))
    return global_args, stages


def image_of(service: str) -> list[Stage]:
    """The stages the image of `--build-arg SERVICE=<service>` is made of, base first
    (the last stage, then the stage each FROM names, down to the external image)."""
    global_args, stages = dockerfile_stages()
    named = {stage.name: stage for stage in stages if stage.name}
    values = {**global_args, "SERVICE": service}
    chain = [stages[-1]]
    while True:
        base = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], chain[-1].base)
        if base not in named:
            assert base == values["PYTHON_IMAGE"], f"{service}: FROM {base} is neither a stage nor the base image"
            return chain[::-1]
        chain.append(named[base])


def instructions(stages: list[Stage], word: str) -> list[str]:
    return [line.partition(" ")[2] for stage in stages for line in stage.instructions if line.split()[0] == word]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_dockerfile_builds_each_service_from_its_package(name: str) -> None:
    """What `docker build --build-arg SERVICE=<name> .` gives, instruction by instruction."""
    service = SERVICES[name]
    global_args, stages = dockerfile_stages()
    assert re.fullmatch(r"python:3\.11-slim-\w+", global_args["PYTHON_IMAGE"])
    scripts = tomllib.loads((ROOT / "services" / service.folder / "pyproject.toml").read_text())["project"]["scripts"]
    assert service.script in scripts
    # Multi-stage: the venv is built in `build` (which is not part of the image) and copied in.
    (build,) = [stage for stage in stages if stage.name == "build"]
    build_text = "\n".join(build.instructions)
    accepted = re.search(r'case "\$\{SERVICE\}" in (\S+)\)', build_text)
    assert accepted is not None and set(accepted.group(1).split("|")) == set(SERVICES)
    assert "COPY services/${SERVICE} /src/services/${SERVICE}" in build.instructions
    assert "pip install --no-cache-dir -c /src/constraints.txt /src/shared /src/services/${SERVICE}" in build_text
    image = image_of(name)
    assert build not in image
    assert "--from=build /opt/venv /opt/venv" in instructions(image, "COPY")
    # The service's own entrypoint, non-root, its port exposed and health-checked.
    assert instructions(image, "ENTRYPOINT")[-1] == f'["{service.script}"]'
    assert instructions(image, "USER")[-1] == f"{UID}:{UID}"
    assert image[-1].instructions.index(f"USER {UID}:{UID}") > 0  # after the last stage's own steps
    assert instructions(image, "EXPOSE") == [str(service.default_port)]
    env = " ".join(instructions(image, "ENV")).split()
    assert "BIND_HOST=0.0.0.0" in env
    assert f"{service.port_var}={service.default_port}" in env
    assert f"PORT_VARIABLE={service.port_var}" in env
    (healthcheck,) = instructions(image, "HEALTHCHECK")
    assert "/healthz" in healthcheck and "os.environ[os.environ['PORT_VARIABLE']]" in healthcheck
    groupadd = " ".join(instructions(image, "RUN"))
    assert f"--uid {UID} --gid {UID}" in groupadd


def apt_packages(stages: list[Stage]) -> set[str]:
    found = re.findall(r"apt-get install -y --no-install-recommends ([^&]+)", " ".join(instructions(stages, "RUN")))
    return {package for group in found for package in group.split()}


def test_tool_runner_image_has_the_sandbox() -> None:
    image = image_of("tool-runner")
    # python3, not python3-minimal alone: the sandboxed child imports json.
    assert {"bubblewrap", "python3"} <= apt_packages(image)
    assert any("/usr/bin/python3 -S -I" in run for run in instructions(image, "RUN"))
    # ... and only there: the other images stay slim.
    for name in set(SERVICES) - {"tool-runner"}:
        assert not apt_packages(image_of(name)), name


def test_compose_builds_each_service_with_the_one_dockerfile() -> None:
    for name, service in agentry_compose_services().items():
        built = service["build"]["args"]["SERVICE"]
        assert built in SERVICES and name.startswith(built), name
        assert service["image"] == f"agentry-{built}:local"
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile", "args": {"SERVICE": built}}
    assert not list(ROOT.glob("services/*/Dockerfile")), "one Dockerfile, at the repository root"


def test_dockerignore_keeps_the_context_small() -> None:
    lines = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {"*", "!constraints.txt", "!shared/", "!services/", "**/.venv", "**/tests", "**/*.egg-info"} <= lines


# --- alert rules use real metrics ------------------------------------------------------


# Run apart, so the series it creates stay out of this process's registry: every metric of
# the five services, with the series a process has once it serves a model and a tool.
_EXPORTED_SCRIPT = """
import importlib, json
from prometheus_client import REGISTRY
for package in PACKAGES:
    importlib.import_module(package + ".metrics")
importlib.import_module("agentry_reasoner.metrics").watch_model("m", lambda: "closed")
importlib.import_module("agentry_tool_runner.metrics").initialise_tools([("t", "p")])
for service in SERVICES:
    importlib.import_module("agentry_shared.metrics").publish_build_info(service)
suffixes = {"counter": ["_total", "_created"], "gauge": [""], "histogram": ["_bucket", "_count", "_sum", "_created"]}
names, values = {}, {}
for collector in set(REGISTRY._names_to_collectors.values()):
    name, kind = getattr(collector, "_name", ""), getattr(collector, "_type", "")
    if name.startswith("agentry_"):
        for suffix in suffixes[kind]:
            names[name + suffix] = list(collector._labelnames) + (["le"] if suffix == "_bucket" else [])
for family in REGISTRY.collect():
    for sample in family.samples:
        for label, value in sample.labels.items():
            values.setdefault(sample.name, {}).setdefault(label, []).append(value)
print(json.dumps({"names": names, "values": values}))
"""
# Labels Prometheus adds to every scraped series (and Kubernetes relabelling, often).
TARGET_LABELS = {"__name__", "job", "instance", "pod", "namespace"}
# Label values only known at run time (model and tool names, MCP pools, the build).
OPEN_LABELS = {"model", "tool", "pool", "version", "git_sha"}


@functools.cache
def exported_series() -> tuple[dict[str, list[str]], dict[str, dict[str, set[str]]]]:
    """Every series name the services export, with its label names; and the values each
    label takes from start-up (the services create every closed-set value at 0)."""
    from tests.packages import PACKAGES

    script = f"PACKAGES = {sorted(PACKAGES.values())!r}\nSERVICES = {sorted(PACKAGES)!r}\n{_EXPORTED_SCRIPT}"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    found = json.loads(done.stdout)
    values = {name: {k: set(v) for k, v in labels.items()} for name, labels in found["values"].items()}
    return found["names"], values


def selectors(expr: str) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """(series name, [(label, operator, value)]) of each agentry_* selector in a PromQL
    expression or a promtool input series."""
    for match in re.finditer(r"\b(agentry_[a-z0-9_]+)\s*(?:\{([^}]*)\})?", expr):
        matchers = re.findall(r"""(\w+)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""", match[2] or "")
        yield match[1], [(label, op, double or single) for label, op, double, single in matchers]


def wrong_selections(expr: str) -> list[str]:
    """What in the expression names a series, label or label value no service exports."""
    names, values = exported_series()
    wrong = []
    for name, matchers in selectors(expr):
        if name not in names:
            wrong.append(f"{name}: no such series")
            continue
        for label, op, value in matchers:
            if label not in {*names[name], *TARGET_LABELS}:
                wrong.append(f"{name}: no label {label}")
                continue
            known = values.get(name, {}).get(label)
            if known is None or label in OPEN_LABELS or "$" in value:
                continue
            # A regex is checked where it is a list of words ("crashed|timeout"; a dot
            # taken as itself, as in "turn.requested"), an exact match always.
            literals = [w for w in value.split("|") if re.fullmatch(r"[\w.]+", w)] if "~" in op else [value]
            for literal in literals:
                if literal and literal not in known:
                    wrong.append(f"{name}: {label} is never {literal!r} (it is one of {sorted(known)})")
    return wrong


def test_rules_dashboard_and_rule_tests_select_what_the_services_export() -> None:
    """An alert on a series, label or label value no service exports never fires, and a
    promtool test fed such series proves nothing: names with the suffixes of their type
    (_total of a counter, _bucket of a histogram), label names of that metric, and values
    of the closed label sets (outcomes, kinds, histogram buckets) as the services write them."""
    wrong = []
    for group in load(RULES)[0]["groups"]:
        for rule in group["rules"]:
            wrong += [f"rule {rule.get('alert') or rule['record']}: {w}" for w in wrong_selections(rule["expr"])]
    for test in load(RULES_TEST)[0]["tests"]:
        for series in test.get("input_series", []):
            wrong += [f"{RULES_TEST.name} input: {w}" for w in wrong_selections(series["series"])]
        for case in test.get("promql_expr_test", []):
            wrong += [f"{RULES_TEST.name} expr: {w}" for w in wrong_selections(case["expr"])]

    def targets(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
        for panel in panels:
            yield from targets(panel.get("panels", []))
            yield from ((panel["title"], target["expr"]) for target in panel.get("targets", []))

    dashboard = json.loads((K8S / "grafana" / "agentry-dashboard.json").read_text())
    for title, expr in targets(dashboard["panels"]):
        wrong += [f"panel {title}: {w}" for w in wrong_selections(expr)]
    assert not wrong, "selections of nothing:\n" + "\n".join(sorted(set(wrong)))


# --- (c) the real validators, when installed -------------------------------------------


def kustomize_build(kubectl: str, folder: Path) -> list[dict[str, Any]]:
    built = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def test_kubernetes_validate_strict() -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (pip install kubernetes-validate)"
    )
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        docs = [doc for folder in (BASE, K8S / "prometheus") for doc in kustomize_build(kubectl, folder)]
    else:
        # Without kubectl the files are validated one by one, without kustomize's namespace.
        docs = base_resources()
    docs += load(BASE / "secret.example.yaml") + load(BASE / "broker-users.example.yaml")
    assert len(docs) > 20
    for version in sorted({OLDEST_KUBERNETES, kubernetes_validate.latest_version()}):
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def test_promtool_rules_and_rule_tests() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    for args in (["check", "rules", RULES.name], ["test", "rules", RULES_TEST.name]):
        result = subprocess.run([promtool, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_compose_gives_each_service_its_own_broker_user(tmp_path: Path) -> None:
    """Each service's env_file holds the AMQP_URL of its own user; the broker loads the
    users and exactly access.py's permissions at boot, from the same generated folder."""
    services = compose()["services"]
    namespace = compose()["x-agentry-env"]["AGENTRY_NAMESPACE"]
    for name, service in agentry_compose_services().items():
        if name == "offline-model":
            assert "env_file" not in service
            continue
        own = "tool-runner" if name.startswith("tool-runner") else name
        assert service["env_file"] == f"data/compose/{own}.env", name
    assert set(services["rabbitmq"]["volumes"]) >= {
        "./data/compose/rabbitmq.conf:/etc/rabbitmq/conf.d/20-agentry.conf:ro",
        "./data/compose/definitions.json:/etc/rabbitmq/definitions.json:ro",
    }
    assert not any(k.startswith("RABBITMQ_DEFAULT") for k in services["rabbitmq"].get("environment", {}))
    script = broker_users_script()
    script.compose(namespace, tmp_path)
    assert (tmp_path / "rabbitmq.conf").read_text().strip() == "load_definitions = /etc/rabbitmq/definitions.json"
    loaded = json.loads((tmp_path / "definitions.json").read_text())
    granted = definitions(Topology(namespace, 1), "/")
    admin = f"{namespace}-admin"
    assert [p for p in loaded["permissions"] if p["user"] != admin] == granted["permissions"]
    assert loaded["topic_permissions"] == granted["topic_permissions"]
    assert loaded["vhosts"] == [{"name": "/"}]
    hashes = {u["name"]: u for u in loaded["users"]}
    for user in BROKER_SERVICES:
        url = script.read_env(tmp_path / f"{user}.env")["AMQP_URL"]
        parts = script.urlsplit(url)
        assert (parts.username, parts.hostname, parts.port) == (user_name(namespace, user), "rabbitmq", 5672)
        assert hashes[parts.username]["tags"] == []
        stored = base64.b64decode(hashes[parts.username]["password_hash"])
        assert stored[4:] == hashlib.sha256(stored[:4] + parts.password.encode()).digest()
        assert (tmp_path / f"{user}.env").stat().st_mode & 0o077 == 0
    assert hashes[admin]["tags"] == ["administrator"]
    # Run again: the passwords are kept (the broker's stored hashes stay valid).
    before = (tmp_path / "gateway.env").read_text()
    script.compose(namespace, tmp_path)
    assert (tmp_path / "gateway.env").read_text() == before


def test_promtool_accepts_the_compose_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus, or `make prometheus`)")
    result = subprocess.run(
        [promtool, "check", "config", COMPOSE_PROMETHEUS.name],
        cwd=COMPOSE_PROMETHEUS.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout  # the alert rules load with it


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    return None


def test_docker_compose_config(tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither docker-compose nor `docker compose` is installed (apt-get install docker-compose)")
    # In a copy, with the generated broker users (their env files must exist), never in ROOT/data.
    project = tmp_path / "project"
    project.mkdir()
    (project / "docker-compose.yml").write_text(COMPOSE_FILE.read_text())
    broker_users_script().compose("agentry", project / "data" / "compose")
    result = subprocess.run(
        [*command, "-f", "docker-compose.yml", "config", "-q"], cwd=project, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (project / "data" / "compose" / "gateway.env").unlink()  # fail closed: no users, no stack
    result = subprocess.run(
        [*command, "-f", "docker-compose.yml", "config", "-q"], cwd=project, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0


def test_every_alert_has_a_promtool_test() -> None:
    rules = load(K8S / "prometheus" / "agentry-rules.yaml")[0]
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    tests = load(K8S / "prometheus" / "agentry-rules.test.yaml")[0]["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case["exp_alerts"]}
    assert alerts - tested == set(), f"alerts without a firing test: {sorted(alerts - tested)}"
