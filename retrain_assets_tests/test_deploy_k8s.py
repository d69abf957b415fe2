"""deploy/k8s, the Kubernetes deployment on Dagster's Helm chart, checked without a cluster: the
retrain config loads and its k8s executor builds a step Job (with dagster-k8s's own code), every
manifest is a Kubernetes object, the files agree on every name, every Secret is documented and none
is written down, and the Helm values fit deploy/k8s/values.schema.json. Each check is also shown to
reject a broken copy. What could not be checked here is listed in deploy/k8s/README.md."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import jsonschema
import pytest
from dagster._config import process_config
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.executor.init import InitExecutorContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import construct_dagster_k8s_job

from retrain_assets.constants import RETRAIN_JOB
from retrain_assets.definitions import build_definitions
from retrain_assets.executors import executor_for
from retrain_assets.settings import SettingsError, load_settings
from retrain_assets_tests.dagster_dev import free_port
from retrain_assets_tests.k8s_deployment import (
    CONFIG,
    SCHEMA,
    Deployment,
    containers,
    k8s_object,
    load_deployment,
    name_problems,
    secret_problems,
)
from retrain_assets_tests.services import (  # noqa: F401  (pytest fixture, used by name)
    MLFLOW,
    Postgres,
    postgres,
    stop_and_check,
    wait_ready,
)

WEBHOOK = "https://hooks.slack.com/services/T000/B000/XXXX"
OFFLINE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


@pytest.fixture
def deployment() -> Deployment:
    return load_deployment()


@pytest.fixture
def alert_secret(monkeypatch):
    monkeypatch.setenv("SLACK_WEBHOOK_URL", WEBHOOK)


# --- the retrain config ------------------------------------------------------------------------


def test_the_cluster_config_loads_with_our_loader_once_its_secret_is_set(monkeypatch):
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    with pytest.raises(SettingsError, match=r"alerts.webhook_url: refers to \$SLACK_WEBHOOK_URL, which is not set"):
        load_settings(CONFIG)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", WEBHOOK)
    settings = load_settings(CONFIG)
    assert settings.automation.executor == "k8s"
    assert settings.mlflow_tracking_uri == "http://mlflow.retrain.svc.cluster.local:5000"
    assert settings.duckdb_path == Path("/mnt/retrain/state/warehouse.duckdb")


def test_every_job_runs_on_the_configured_k8s_executor(alert_secret):
    settings = load_settings(CONFIG)
    assert executor_for("k8s", settings.automation.executor_config).name == "k8s_configured"
    defs = build_definitions(CONFIG)
    assert defs.resolve_job_def(RETRAIN_JOB).executor_def.name == "k8s_configured"
    assert defs.resolve_job_def("ingest_batch").executor_def.name == "k8s_configured"


def test_a_misspelt_executor_setting_in_a_copy_of_the_config_is_refused(tmp_path, alert_secret):
    broken = tmp_path / "config.yaml"
    broken.write_text(CONFIG.read_text().replace("job_namespace:", "namespace:"))
    with pytest.raises(Exception, match='does not fit the k8s executor: Received unexpected config entry "namespace"'):
        build_definitions(broken)


def _chart_container_context(dep: Deployment) -> dict:
    """The container context the chart hands to runs for our code location (the subchart's helper
    `dagsterUserDeployments.k8sContainerContext`, with includeConfigInLaunchedRuns enabled)."""
    user, release = dep.user_deployment, dep.helm_install()[0]
    subchart = f"{release}-dagster-user-deployments"  # the subchart's dagster.fullname
    return {"k8s": {
        "image_pull_policy": user["image"]["pullPolicy"],
        "env_config_maps": [f"{subchart}-{user['name']}-user-env"],
        "env_secrets": [s["name"] for s in user.get("envSecrets", [])],
        "volume_mounts": user["volumeMounts"],
        "volumes": user["volumes"],
        "resources": user["resources"],
        "namespace": dep.namespace,
        "service_account_name": f"{subchart}-user-deployments",
        "env": user["env"],
    }}


def test_a_step_job_built_by_dagster_k8s_carries_the_config_the_volumes_and_the_limits(tmp_path, alert_secret, deployment):
    """The Job the k8s executor would create for a step, built offline by dagster-k8s 0.29.27 from the
    run launcher the chart configures, the code location's container context and config.yaml."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(OFFLINE_KUBECONFIG)  # an unreachable cluster: only the client config is loaded
    settings = load_settings(CONFIG)
    release, chart_version, namespace = deployment.helm_install()
    user = deployment.user_deployment
    image = f"{user['image']['repository']}:{user['image']['tag']}"
    launcher_values = deployment.values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher = K8sRunLauncher(  # what the chart renders into dagster.yaml (its _run-launcher.tpl)
        instance_config_map=f"{release}-instance", dagster_home="/opt/dagster/dagster_home",
        postgres_password_secret=deployment.values["global"]["postgresqlSecretName"],
        job_namespace=namespace, service_account_name=release, image_pull_policy="Always",
        load_incluster_config=False, kubeconfig_file=str(kubeconfig),
        run_k8s_config={"pod_spec_config": launcher_values["runK8sConfig"]["podSpecConfig"]},
    )
    executor_config = {**settings.automation.executor_config,
                       "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    checked = process_config(k8s_job_executor.config_schema.config_type, executor_config)
    assert checked.success, checked.errors

    @dg.op
    def a_step():
        pass

    @dg.job
    def one_step():
        a_step()

    with dg.instance_for_test() as instance:
        executor = k8s_job_executor.executor_creation_fn(
            InitExecutorContext(InMemoryJob(one_step), k8s_job_executor, checked.value, instance))
    origin = RepositoryPythonOrigin(
        executable_path="/usr/local/bin/python",
        code_pointer=ModuleCodePointer("retrain_assets.definitions", "defs", working_directory=None),
        container_image=image, container_context=_chart_container_context(deployment))
    run = DagsterRun(job_name=RETRAIN_JOB, run_id="0f0f0f0f-0000-4000-8000-000000000000",
                     job_code_origin=JobPythonOrigin(RETRAIN_JOB, origin))
    # As K8sStepHandler._get_container_context does for a step (the executor keeps its own part of
    # the context on its step handler; there is no public accessor):
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False).merge(
        executor._step_handler._executor_container_context)
    job = construct_dagster_k8s_job(
        context.get_k8s_job_config(None, launcher).with_image(image), args=["dagster", "api", "execute_step"],
        job_name="dagster-step-0f0f0f0f", component="step_worker", user_defined_k8s_config=context.run_k8s_config)

    assert context.namespace == namespace == settings.automation.executor_config["job_namespace"]
    pod = job.spec.template.spec
    (container,) = pod.containers
    env = {e.name: e.value or e.value_from for e in container.env}
    assert env["RETRAIN_CONFIG"] == "/etc/retrain/config.yaml"
    assert env["DAGSTER_PG_PASSWORD"].secret_key_ref.name == "dagster-postgresql-secret"
    assert {"retrain-alerts"} <= {s.secret_ref.name for s in container.env_from if s.secret_ref}
    mounts = {m.mount_path: m.name for m in container.volume_mounts}
    volumes = {v.name: v for v in pod.volumes}
    assert volumes[mounts["/etc/retrain"]].config_map.name == "retrain-config"
    assert volumes[mounts["/mnt/retrain"]].persistent_volume_claim.claim_name == "retrain-shared"
    assert str(settings.storage.root).startswith("/mnt/retrain/")
    assert container.resources.requests == {"cpu": "500m", "memory": "1Gi"}  # step_k8s_config wins
    assert pod.security_context.fs_group == 1000
    assert container.image == image
    assert chart_version == importlib.metadata.version("dagster")  # the chart is versioned with Dagster


# --- the manifests -----------------------------------------------------------------------------


def test_every_manifest_names_itself_and_is_a_kubernetes_object_with_no_unknown_field(deployment):
    kinds = []
    for doc in deployment.manifests:
        assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), doc
        kinds.append(type(k8s_object(doc)).__name__)
    assert sorted(kinds) == ["V1ConfigMap", "V1Deployment", "V1PersistentVolumeClaim", "V1Service", "V1Service",
                             "V1StatefulSet"]


@pytest.mark.parametrize("breakage, message", [
    (lambda c: c.update(imagePullPolicyy="Always"), "Unexpected keys"),
    (lambda c: c["ports"][0].update(containerPort="http"), "invalid literal for int"),
    (lambda c: c.pop("name"), "`name`, must not be `None`"),
])
def test_a_manifest_with_a_misspelt_field_a_wrong_value_or_a_missing_name_is_refused(deployment, breakage, message):
    doc = deployment.copy().objects("Deployment")["mlflow"]
    breakage(containers(doc)[0])
    with pytest.raises(Exception, match=re.escape(message)):
        k8s_object(doc)


# --- names agree across the files --------------------------------------------------------------


def test_the_files_agree_on_every_name(deployment):
    assert name_problems(deployment) == []


def _mlflow(dep):
    return containers(dep.objects("Deployment")["mlflow"])[0]


def _postgres(dep):
    return containers(dep.objects("StatefulSet")["postgresql"])[0]


@pytest.mark.parametrize("breakage, message", [
    (lambda d: d.config["mlflow"].update(tracking_uri="http://mlflow-server.retrain.svc.cluster.local:5000"),
     "no Service 'mlflow-server'"),
    (lambda d: d.config["mlflow"].update(tracking_uri="http://mlflow.retrain.svc.cluster.local:8080"),
     "Service mlflow has no port 8080"),
    (lambda d: d.config["mlflow"].update(tracking_uri="http://mlflow.ml.svc.cluster.local:5000"), "namespace"),
    (lambda d: _mlflow(d)["args"].remove(next(a for a in _mlflow(d)["args"] if a.startswith("--allowed-hosts"))),
     "--allowed-hosts lacks mlflow.retrain.svc.cluster.local:5000"),
    (lambda d: d.objects("Service")["mlflow"]["spec"]["ports"][0].update(targetPort="web"), "no container port 'web'"),
    (lambda d: d.values["postgresql"].update(postgresqlHost="postgres.retrain.svc.cluster.local"), "no Service 'postgres'"),
    (lambda d: d.values["postgresql"].update(postgresqlDatabase="dagster_db"), "POSTGRES_DB"),
    (lambda d: _postgres(d)["env"][2]["valueFrom"]["secretKeyRef"].update(key="password"), "POSTGRES_PASSWORD"),
    (lambda d: d.user_deployment["volumes"][1]["persistentVolumeClaim"].update(claimName="retrain-state"),
     "no PersistentVolumeClaim retrain-state"),
    (lambda d: d.objects("PersistentVolumeClaim")["retrain-shared"]["spec"].update(accessModes=["ReadWriteOnce"]),
     "not ReadWriteMany"),
    (lambda d: d.user_deployment["env"][0].update(value="/etc/retrain/retrain.yaml"), "RETRAIN_CONFIG"),
    (lambda d: d.config["storage"].update(root="/data/state"), "storage.root /data/state is not on the shared volume"),
    (lambda d: d.config["automation"]["executor_config"].update(job_namespace="ml"), "job_namespace"),
    (lambda d: d.user_deployment["image"].update(tag="0.2.0"), "retrain-assets:0.2.0 is not built"),
    (lambda d: setattr(d, "dockerfile", d.dockerfile.replace("AS mlflow", "AS tracking")), "lacks"),
    (lambda d: setattr(d, "dockerfile", d.dockerfile.replace("--uid 1000", "--uid 1001")), "fsGroup"),
])
def test_a_copy_whose_names_disagree_is_caught(deployment, breakage, message):
    broken = deployment.copy()
    breakage(broken)
    assert any(message in problem for problem in name_problems(broken)), name_problems(broken)


# --- Secrets -----------------------------------------------------------------------------------


def test_every_secret_read_is_documented_and_created_and_none_is_written_down(deployment):
    assert secret_problems(deployment) == []


@pytest.mark.parametrize("breakage, message", [
    (lambda d: d.user_deployment["envSecrets"].append({"name": "retrain-extra"}), "does not document"),
    (lambda d: _mlflow(d)["env"][0].update(valueFrom={"secretKeyRef": {"name": "mlflow-backend-store", "key": "url"}}),
     "key url of Secret mlflow-backend-store"),
    (lambda d: _mlflow(d)["env"].__setitem__(0, {"name": "MLFLOW_BACKEND_STORE_URI", "value": "postgresql://u:p@h/db"}),
     "MLFLOW_BACKEND_STORE_URI is written as a literal value"),
    (lambda d: d.values["postgresql"].update(postgresqlPassword="hunter2"), "writes the PostgreSQL password"),
    (lambda d: d.config["alerts"].update(webhook_url="$TEAMS_WEBHOOK_URL"), "reads $TEAMS_WEBHOOK_URL"),
    (lambda d: d.manifests.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "retrain"}}),
     "written in deploy/k8s/manifests"),
    (lambda d: setattr(d, "readme", d.readme.replace("secret generic retrain-alerts", "secret retrain-alerts")),
     "never create Secret retrain-alerts"),
])
def test_an_undocumented_or_written_down_secret_is_caught(deployment, breakage, message):
    broken = deployment.copy()
    breakage(broken)
    assert any(message in problem for problem in secret_problems(broken)), secret_problems(broken)


# --- the Helm values against our schema --------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> jsonschema.Draft7Validator:
    document = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(document)
    return jsonschema.Draft7Validator(document)


def test_the_values_fit_our_schema(deployment, schema):
    assert [e.message for e in schema.iter_errors(deployment.values)] == []


def _deployment0(d):
    return d.values["dagster-user-deployments"]["deployments"][0]


@pytest.mark.parametrize("breakage, message", [
    (lambda d: _deployment0(d).update(volumeMount=_deployment0(d).pop("volumeMounts")), "'volumeMount' was unexpected"),
    (lambda d: _deployment0(d).update(port="3030"), "'3030' is not of type 'integer'"),
    (lambda d: _deployment0(d)["volumes"][1]["persistentVolumeClaim"].update(claimNam="x"), "'claimNam' was unexpected"),
    (lambda d: _deployment0(d)["env"][0].update(valu="/x"), "'valu' was unexpected"),
    (lambda d: _deployment0(d)["resources"]["requests"].update(memory="1 GB"), "does not match"),
    (lambda d: _deployment0(d).update(includeConfigInLaunchedRuns={"enabled": False}), "True was expected"),
    (lambda d: d.values["runLauncher"].update(type="CeleryK8sRunLauncher"), "'K8sRunLauncher' was expected"),
    (lambda d: d.values["concurrency"]["pools"].update(granularity="step"), "'step' is not one of ['op', 'run']"),
    (lambda d: d.values["postgresql"].update(postgresqlPassword="hunter2"), "False schema does not allow 'hunter2'"),
    (lambda d: d.values.update(generatePostgresqlPasswordSecret=True), "False was expected"),
    (lambda d: d.values.update(runLauncer={}), "'runLauncer' was unexpected"),
])
def test_a_broken_values_file_is_refused(deployment, schema, breakage, message):
    broken = deployment.copy()
    breakage(broken)
    messages = [e.message for e in schema.iter_errors(broken.values)]
    assert any(message in m for m in messages), messages


# --- MLflow with the manifest's arguments, on a real PostgreSQL --------------------------------


@pytest.mark.cli
@pytest.mark.timeout(300)
def test_mlflow_serves_the_tracking_uri_with_the_manifests_arguments_on_postgresql(deployment, postgres: Postgres, tmp_path):
    """`mlflow server` as manifests/mlflow.yaml starts it (only the port, the listen address and the
    bucket replaced: loopback, no S3 here), on a database made by the PostgreSQL init script, with
    the backend store URI the README's Secret holds; a request carrying the tracking URI's Host
    header is answered, one from an unknown host refused."""
    user = deployment.values["postgresql"]["postgresqlUsername"]
    conn = postgres.connect("postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE ROLE {user} LOGIN PASSWORD %s", (postgres.password,))
            init = deployment.objects("ConfigMap")["postgresql-init"]["data"]["create-mlflow-database.sql"]
            cur.execute(init)
    finally:
        conn.close()
    host = deployment.values["postgresql"]["postgresqlHost"]
    readme_uri = re.search(r'--from-literal=uri="(\S+)"', deployment.readme).group(1)
    backend = readme_uri.replace("$PG_PASSWORD", postgres.password).replace(
        f"{host}:{deployment.values['postgresql']['service']['port']}", f"{postgres.host}:{postgres.port}")
    port = free_port()
    replaced = ("--host=", "--port=", "--artifacts-destination=", "--workers=")
    args = [a for a in _mlflow(deployment)["args"] if not a.startswith(replaced)]
    command = [MLFLOW, *args, "--host=127.0.0.1", f"--port={port}",
               f"--artifacts-destination={tmp_path / 'artifacts'}", "--workers=1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({e["name"]: e["value"] for e in _mlflow(deployment)["env"] if "value" in e})
    env["MLFLOW_BACKEND_STORE_URI"] = backend
    log_path = tmp_path / "mlflow.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        wait_ready("mlflow server", proc, log_path, lambda: _status(port, "/health", "127.0.0.1") == 200, 120)
        tracking = urlsplit(deployment.config["mlflow"]["tracking_uri"])
        search = "/api/2.0/mlflow/experiments/search?max_results=1"
        assert _status(port, search, tracking.netloc) == 200, log_path.read_text()[-3000:]
        assert _status(port, search, "attacker.example:5000") == 403
        assert postgres.query("SELECT count(*) FROM experiments", db_name="mlflow") == [(1,)]  # MLflow's tables, in mlflow
    finally:
        stop_and_check(proc, "mlflow server")


def _status(port: int, path: str, host: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0
