"""deploy/k8s read as one deployment, and the checks that its files agree with each other.

There is no cluster, no helm and no chart here, so what a cluster would find out at install time is
checked from the files: :func:`name_problems` (every name one file uses exists in the file that
defines it), :func:`secret_problems` (every Secret read is documented in deploy/k8s/README.md and
created by its commands; no password is written down) and :func:`k8s_object` (a manifest is a
Kubernetes object with no unknown field, through the Kubernetes models dagster-k8s validates its
own Jobs with). Each check returns the problems as sentences, so a test can show that a broken copy
is caught.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import kubernetes.client as k8s
import yaml
from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict

from retrain_assets.constants import REPO_ROOT

K8S_DIR = REPO_ROOT / "deploy" / "k8s"
CONFIG = K8S_DIR / "config.yaml"
VALUES = K8S_DIR / "values.yaml"
SCHEMA = K8S_DIR / "values.schema.json"
README = K8S_DIR / "README.md"
DOCKERFILE = K8S_DIR / "Dockerfile"
MANIFESTS = K8S_DIR / "manifests"

MODELS = {
    ("v1", "ConfigMap"): k8s.V1ConfigMap,
    ("v1", "PersistentVolumeClaim"): k8s.V1PersistentVolumeClaim,
    ("v1", "Secret"): k8s.V1Secret,
    ("v1", "Service"): k8s.V1Service,
    ("apps/v1", "Deployment"): k8s.V1Deployment,
    ("apps/v1", "StatefulSet"): k8s.V1StatefulSet,
}
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY|URI|WEBHOOK", re.IGNORECASE)


@dataclass
class Deployment:
    """The parsed files of deploy/k8s (deep-copied by :meth:`copy` for a broken variant)."""

    config: dict[str, Any]
    values: dict[str, Any]
    manifests: list[dict[str, Any]]
    readme: str
    dockerfile: str
    sources: dict[str, str] = field(default_factory=dict)

    def copy(self) -> Deployment:
        return copy.deepcopy(self)

    def objects(self, kind: str) -> dict[str, dict[str, Any]]:
        return {doc["metadata"]["name"]: doc for doc in self.manifests if doc.get("kind") == kind}

    @property
    def user_deployment(self) -> dict[str, Any]:
        return self.values["dagster-user-deployments"]["deployments"][0]

    @property
    def namespace(self) -> str:
        return self.helm_install()[2]

    def helm_install(self) -> tuple[str, str, str]:
        """(release, chart version, namespace) of the README's `helm upgrade --install` command."""
        found = re.search(r"helm upgrade --install (\S+) dagster/dagster --version (\S+) --namespace (\S+) "
                          r"-f deploy/k8s/values\.yaml", self.readme)
        assert found, "deploy/k8s/README.md has no `helm upgrade --install ... dagster/dagster` command"
        return found.group(1), found.group(2), found.group(3)


def load_deployment() -> Deployment:
    """deploy/k8s as it is in the repository."""
    manifests, sources = [], {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                manifests.append(doc)
                sources[f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"] = path.name
    return Deployment(
        config=yaml.safe_load(CONFIG.read_text(encoding="utf-8")),
        values=yaml.safe_load(VALUES.read_text(encoding="utf-8")),
        manifests=manifests,
        readme=README.read_text(encoding="utf-8"),
        dockerfile=DOCKERFILE.read_text(encoding="utf-8"),
        sources=sources,
    )


def k8s_object(doc: dict[str, Any]) -> Any:
    """The Kubernetes client model of a manifest; raises on an unknown kind, an unknown field at
    any depth, a missing required field or a value of the wrong kind."""
    model = MODELS.get((doc.get("apiVersion"), doc.get("kind")))
    if model is None:
        raise ValueError(f"no model for apiVersion {doc.get('apiVersion')!r} kind {doc.get('kind')!r}")
    return k8s_model_from_dict(model, k8s_snake_case_dict(model, doc))


# --------------------------------------------------------------------------------------------
# Pieces of the files
# --------------------------------------------------------------------------------------------


def env_value(env: list[dict[str, Any]], name: str) -> Any:
    return next((e.get("value", e.get("valueFrom")) for e in env or [] if e.get("name") == name), None)


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return workload["spec"]["template"]["spec"]["containers"]


def cli_args(container: dict[str, Any]) -> dict[str, str]:
    """`--key=value` arguments of a container."""
    return dict(arg[2:].split("=", 1) for arg in container.get("args", []) if arg.startswith("--") and "=" in arg)


def pods_behind(dep: Deployment, service: dict[str, Any]) -> list[dict[str, Any]]:
    """The workloads whose pod labels match the Service's selector."""
    selector = service["spec"].get("selector") or {}
    workloads = [*dep.objects("Deployment").values(), *dep.objects("StatefulSet").values()]
    return [w for w in workloads if selector and selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]


def service_for_host(dep: Deployment, host: str) -> tuple[dict[str, Any] | None, str]:
    """The Service a cluster DNS name (`name`, `name.ns`, `name.ns.svc[.cluster.local]`) resolves to."""
    name, _, rest = host.partition(".")
    namespace = rest.split(".")[0] if rest else dep.namespace
    if rest and not re.fullmatch(rf"{re.escape(namespace)}(\.svc(\.cluster\.local)?)?", rest):
        return None, f"{host} is not a cluster Service name"
    service = dep.objects("Service").get(name)
    if service is None:
        return None, f"{host}: no Service {name!r} in deploy/k8s/manifests"
    if service["metadata"].get("namespace") != namespace:
        return None, f"{host}: Service {name} is in namespace {service['metadata'].get('namespace')}, not {namespace}"
    return service, ""


def container_port(dep: Deployment, service: dict[str, Any], port: int) -> tuple[dict[str, Any] | None, str]:
    """The container (and its port) that a Service port leads to."""
    entry = next((p for p in service["spec"]["ports"] if p["port"] == port), None)
    name = service["metadata"]["name"]
    if entry is None:
        return None, f"Service {name} has no port {port}"
    target = entry.get("targetPort", port)
    for workload in pods_behind(dep, service):
        for container in containers(workload):
            for p in container.get("ports", []):
                if target in (p.get("name"), p["containerPort"]):
                    return container, ""
    return None, f"Service {name} port {port} leads to no container port {target!r} of the pods it selects"


def docker_targets(dockerfile: str) -> set[str]:
    return set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.MULTILINE))


def readme_images(readme: str) -> dict[str, str]:
    """image -> Dockerfile target, from the README's `docker build` commands."""
    registry = re.search(r"^REGISTRY=(\S+)$", readme, re.MULTILINE)
    builds = re.findall(r'docker build -f deploy/k8s/Dockerfile --target (\S+) +-t "?\$REGISTRY/([^"\s]+)"? \.', readme)
    return {f"{registry.group(1) if registry else '$REGISTRY'}/{image}": target for target, image in builds}


def readme_configmaps(readme: str) -> dict[str, str]:
    """ConfigMap name -> key, from `kubectl create configmap NAME --from-file=KEY=deploy/k8s/config.yaml`."""
    return dict(re.findall(r"create configmap (\S+) --from-file=([^=\s]+)=deploy/k8s/config\.yaml", readme))


def readme_secrets(readme: str) -> dict[str, set[str]]:
    """Secret name -> keys, from the README's table of Secrets (rows starting with `` | `name` | ``)."""
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| ([^|]*) \|", readme, re.MULTILINE)
    return {name: set(re.findall(r"`([A-Za-z0-9_.-]+)`", keys)) for name, keys in rows}


def created_secrets(readme: str) -> set[str]:
    return set(re.findall(r"create secret generic (\S+)", readme))


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def name_problems(dep: Deployment) -> list[str]:
    """Every name one file uses exists in the file that defines it, with the same port, path, user."""
    problems: list[str] = []
    ns = dep.namespace
    for doc in dep.manifests:
        if doc["metadata"].get("namespace") != ns:
            problems.append(f"{doc['kind']} {doc['metadata']['name']} is not in the release namespace {ns}")
    executor = dep.config["automation"]
    if executor.get("executor") != "k8s":
        problems.append("config.yaml: automation.executor is not k8s")
    if executor.get("executor_config", {}).get("job_namespace", ns) != ns:
        problems.append(f"config.yaml: job_namespace is not the release namespace {ns} (the run pods' namespace)")

    # MLflow: the tracking URI -> Service -> container; the server accepts that Host header.
    uri = urlsplit(dep.config["mlflow"]["tracking_uri"])
    service, why = service_for_host(dep, uri.hostname or "")
    container = None
    if service is None:
        problems.append(f"config.yaml mlflow.tracking_uri: {why}")
    else:
        container, why = container_port(dep, service, uri.port or 80)
        if container is None:
            problems.append(f"config.yaml mlflow.tracking_uri: {why}")
    if container is not None:
        args = cli_args(container)
        served = next(p["containerPort"] for p in container["ports"])
        if int(args.get("port", 5000)) != served:
            problems.append(f"mlflow server listens on {args.get('port', 5000)}, its container port is {served}")
        allowed = args.get("allowed-hosts", "").split(",")
        if uri.netloc not in allowed:
            problems.append(f"mlflow server --allowed-hosts lacks {uri.netloc}: MLflow answers 403 to that Host header")
        if not args.get("artifacts-destination", "").startswith("s3://"):
            problems.append("mlflow server has no --artifacts-destination s3://...")

    # Dagster's PostgreSQL: values -> Service -> StatefulSet with that user, database and Secret.
    pg = dep.values["postgresql"]
    service, why = service_for_host(dep, pg["postgresqlHost"])
    if service is None:
        problems.append(f"values.yaml postgresql.postgresqlHost: {why}")
    else:
        container, why = container_port(dep, service, pg["service"]["port"])
        if container is None:
            problems.append(f"values.yaml postgresql.service.port: {why}")
        else:
            env = container.get("env", [])
            for var, want in (("POSTGRES_USER", pg["postgresqlUsername"]), ("POSTGRES_DB", pg["postgresqlDatabase"])):
                if env_value(env, var) != want:
                    problems.append(f"PostgreSQL {var} is {env_value(env, var)!r}, values.yaml says {want!r}")
            ref = (env_value(env, "POSTGRES_PASSWORD") or {}).get("secretKeyRef", {})
            if (ref.get("name"), ref.get("key")) != (dep.values["global"]["postgresqlSecretName"], "postgresql-password"):
                problems.append("PostgreSQL's POSTGRES_PASSWORD is not the chart's Secret "
                                "global.postgresqlSecretName / postgresql-password")
    init = "".join(cm.get("data", {}).get(k, "") for cm in dep.objects("ConfigMap").values() for k in cm.get("data", {}))
    if not re.search(rf"CREATE DATABASE mlflow OWNER {re.escape(pg['postgresqlUsername'])}\b", init):
        problems.append("no init script creates database mlflow for the PostgreSQL user")
    backend = f"@{pg['postgresqlHost']}:{pg['service']['port']}/mlflow"
    if backend not in dep.readme:
        problems.append(f"README's mlflow-backend-store uri does not point at {backend}")

    # Volumes: the config file and the shared volume reach RETRAIN_CONFIG, storage.root, landing_dir.
    user = dep.user_deployment
    mounts = {m["name"]: m["mountPath"] for m in user.get("volumeMounts", [])}
    configmaps = readme_configmaps(dep.readme)
    pvcs = dep.objects("PersistentVolumeClaim")
    config_file = env_value(user.get("env"), "RETRAIN_CONFIG") or ""
    shared: list[str] = []
    for volume in user.get("volumes", []):
        where = mounts.get(volume["name"])
        if where is None:
            problems.append(f"values.yaml: volume {volume['name']} is not mounted")
        if "configMap" in volume:
            name = volume["configMap"]["name"]
            if name not in configmaps:
                problems.append(f"values.yaml: ConfigMap {name} is not created by the README")
            elif config_file != f"{where}/{configmaps[name]}":
                problems.append(f"values.yaml: RETRAIN_CONFIG={config_file} is not "
                                f"{where}/{configmaps[name]} (ConfigMap {name})")
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in pvcs:
                problems.append(f"values.yaml: no PersistentVolumeClaim {claim} in deploy/k8s/manifests")
            elif "ReadWriteMany" not in pvcs[claim]["spec"]["accessModes"]:
                problems.append(f"PersistentVolumeClaim {claim} is not ReadWriteMany (pods on several nodes mount it)")
            if where:
                shared.append(where.rstrip("/") + "/")
    paths = {"storage.root": dep.config["storage"]["root"], "dataset.landing_dir": dep.config["dataset"]["landing_dir"]}
    for key, path in paths.items():
        if not any(str(path).startswith(root) for root in shared):
            problems.append(f"config.yaml {key} {path} is not on the shared volume ({', '.join(shared) or 'none mounted'})")

    # Images: built by the README's commands from targets of the Dockerfile; its user owns the volume.
    images = readme_images(dep.readme)
    targets = docker_targets(dep.dockerfile)
    wanted = {f"{user['image']['repository']}:{user['image']['tag']}": "retrain"}
    mlflow = dep.objects("Deployment").get("mlflow")
    wanted.update({c["image"]: "mlflow" for c in (containers(mlflow) if mlflow else [])})
    for image, target in wanted.items():
        if images.get(image) != target:
            problems.append(f"{image} is not built by the README's `docker build --target {target}`")
    for image, target in images.items():
        if target not in targets:
            problems.append(f"the README builds {image} from target {target}, which deploy/k8s/Dockerfile lacks")
    uid = re.search(r"useradd --uid (\d+)", dep.dockerfile)
    run_pod = dep.values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"]
    for where, group in (("the user deployment", (user.get("podSecurityContext") or {}).get("fsGroup")),
                         ("the run launcher", (run_pod.get("securityContext") or {}).get("fsGroup"))):
        if not uid or group != int(uid.group(1)):
            problems.append(f"values.yaml: fsGroup of {where} is {group}, the image's user is {uid and uid.group(1)}")
    return problems


def secret_refs(dep: Deployment) -> list[tuple[str, str | None, str]]:
    """(Secret, key or None for all keys, where) for every Secret the deployment reads."""
    refs = [(dep.values["global"]["postgresqlSecretName"], "postgresql-password", "values.yaml global.postgresqlSecretName")]
    refs += [(s["name"], None, "values.yaml envSecrets") for s in dep.user_deployment.get("envSecrets", [])]
    for doc in dep.manifests:
        where = f"{doc['kind']} {doc['metadata']['name']}"
        for container in containers(doc) if doc["kind"] in ("Deployment", "StatefulSet") else []:
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.append((ref["name"], ref["key"], where))
            refs += [(src["secretRef"]["name"], None, where) for src in container.get("envFrom", []) if "secretRef" in src]
    return refs


def secret_problems(dep: Deployment) -> list[str]:
    """Every Secret read is in the README's table (with the key read) and created by its commands;
    no password, token or connection string is written in a file."""
    problems = []
    documented, created = readme_secrets(dep.readme), created_secrets(dep.readme)
    for name, key, where in secret_refs(dep):
        if name not in documented:
            problems.append(f"{where} reads Secret {name}, which deploy/k8s/README.md does not document")
        elif key is not None and key not in documented[name]:
            problems.append(f"{where} reads key {key} of Secret {name}, which the README does not list")
        if name not in created:
            problems.append(f"the README's commands never create Secret {name}")
    from_env_secrets = {k for s in dep.user_deployment.get("envSecrets", []) for k in documented.get(s["name"], ())}
    for var in re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", yaml.safe_dump(dep.config)):
        if var not in from_env_secrets:
            problems.append(f"config.yaml reads ${var}, which no Secret of the user deployment's envSecrets provides")
    envs = [("values.yaml", e) for e in dep.user_deployment.get("env", [])]
    envs += [(f"{d['kind']} {d['metadata']['name']}", e) for d in dep.manifests if d["kind"] in ("Deployment", "StatefulSet")
             for c in containers(d) for e in c.get("env", [])]
    for where, env in envs:
        if SECRETISH.search(env["name"]) and "value" in env:
            problems.append(f"{where}: {env['name']} is written as a literal value; read it from a Secret")
    if "postgresqlPassword" in dep.values.get("postgresql", {}) or dep.values.get("generatePostgresqlPasswordSecret"):
        problems.append("values.yaml writes the PostgreSQL password (postgresqlPassword / generatePostgresqlPasswordSecret)")
    for doc in dep.manifests:
        if doc["kind"] == "Secret":
            problems.append(f"Secret {doc['metadata']['name']} is written in deploy/k8s/manifests; create it by hand")
    return problems
