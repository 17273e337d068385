"""The Kubernetes manifests (``deploy/``), checked offline, and the server's connection-age limit.

No cluster runs here: every overlay is rendered with ``kubectl kustomize`` and validated against the
Kubernetes API schemas that ``kubernetes-validate`` ships (strict: an unknown field is an error), then the
rendered objects are checked for what the server needs (probes on the gRPC health port, a termination grace
that covers the drain, non-root with a read-only root, settings recsvc's own loader accepts, ...). Overlays
are found by themselves: a new one under ``deploy/overlays/`` is checked like the others.

The connection-age tests run a real server: an aged connection gets GOAWAY, the client reconnects and keeps
getting answers.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import kubernetes_validate
import pytest
import yaml

from recsvc.config import ConfigError, Settings, load_settings
from recsvc.server.app import DRAIN_SETTLE_SECONDS, HARD_STOP_SECONDS, SERVICE_NAME
from recsvc.server.workers import BLAS_THREAD_VARIABLES
from tests.conftest import LiveServers, settings_for
from tests.test_security import certs  # noqa: F401  # the openssl-made certificates, a module-scoped fixture
from tests.toy_model import publish_toy

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if (p / "kustomization.yaml").exists())
#: Jobs run by hand (not part of an overlay), validated as they are.
JOBS = sorted((DEPLOY / "jobs").glob("*.yaml"))
HEALTH_PROBE = DEPLOY / "components" / "tls" / "health_probe.py"
#: The oldest Kubernetes the manifests target (preStop ``sleep`` is on by default from 1.30) and the newest
#: schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="needs kubectl (kubectl kustomize renders the overlays)")
POD_KINDS = ("Deployment", "StatefulSet", "CronJob", "Job")


@functools.cache
def _render(overlay: str) -> tuple[dict[str, Any], ...]:
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "kustomize", str(DEPLOY / "overlays" / overlay)], check=True,
                         capture_output=True, text=True, timeout=60)
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def _one(objects: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return dict(spec["template"]["spec"])


def _server(objects: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = _one(objects, "Deployment", "recsvc-server")
    (container,) = (c for c in _pod_spec(deployment)["containers"] if c["name"] == "server")
    return deployment, container


def _mount(pod: dict[str, Any], container: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The volume mount at ``path`` (or the one above it) and its volume."""
    mounts = [m for m in container["volumeMounts"]
              if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert mounts, f"{container['name']}: nothing mounted at {path}"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    (volume,) = (v for v in pod["volumes"] if v["name"] == mount["name"])
    return mount, volume


def _settings(objects: tuple[dict[str, Any], ...], container: dict[str, Any], pod: dict[str, Any],
              tmp_path: Path) -> Settings:
    """The settings this container starts with, loaded by recsvc's own loader from the rendered objects.

    The TOML file comes from the ConfigMap mounted at ``$RECSVC_CONFIG``; environment values from Secrets
    become placeholders. ``[events]`` variables are left out while this branch's settings have no such
    section (it lands with the real-time work; ``test_events_settings_name_a_shared_store`` checks them).
    """
    env = {e["name"]: e.get("value", f"placeholder-from-{e['name'].lower()}") for e in container.get("env", [])}
    config_path = env.pop("RECSVC_CONFIG")
    mount, volume = _mount(pod, container, config_path)
    config_map = _one(objects, "ConfigMap", volume["configMap"]["name"])
    key = mount.get("subPath") or Path(config_path).name
    local = tmp_path / f"{container['name']}.toml"
    local.write_text(config_map["data"][key])
    if "events" not in {f.name for f in dataclasses.fields(Settings)}:
        env = {k: v for k, v in env.items() if not k.startswith("RECSVC_EVENTS__")}
    return load_settings(local, env=env)


class RenderedServer(NamedTuple):
    """One overlay's rendered objects, its server Deployment, pod spec, container and loaded settings."""

    objects: tuple[dict[str, Any], ...]
    deployment: dict[str, Any]
    pod: dict[str, Any]
    container: dict[str, Any]
    settings: Settings


def _rendered_server(overlay: str, tmp_path: Path) -> RenderedServer:
    objects = _render(overlay)
    deployment, container = _server(objects)
    pod = _pod_spec(deployment)
    return RenderedServer(objects, deployment, pod, container, _settings(objects, container, pod, tmp_path))


# ------------------------------------------------------------------------------------------ schemas


@needs_kubectl
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_passes_the_kubernetes_schemas(overlay: str, version: str) -> None:
    objects = _render(overlay)
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "CronJob", "ConfigMap",
            "PersistentVolumeClaim"} <= {o["kind"] for o in objects}
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("job", JOBS, ids=[j.name for j in JOBS])
def test_the_jobs_run_by_hand_pass_the_kubernetes_schemas(job: Path, version: str) -> None:
    kubernetes_validate.validate(yaml.safe_load(job.read_text()), version, strict=True)


def test_a_schema_violation_is_caught() -> None:
    """The validation above can fail: a misspelt field in a container is refused."""
    job = yaml.safe_load(JOBS[0].read_text())
    _pod_spec(job)  # a Job's pod spec, like the others
    job["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True  # capital S: wrong
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(job, KUBERNETES_VERSIONS[-1], strict=True)


# ------------------------------------------------------------------------------------------ behaviour


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_the_grpc_health_service_on_the_servers_port(overlay: str, tmp_path: Path) -> None:
    _, _, _, container, settings = _rendered_server(overlay, tmp_path)
    (grpc_port,) = (p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
    assert grpc_port == settings.server.port
    tls = bool(settings.server.tls_cert_file)
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[kind]
        if not tls:
            # the kubelet's native grpc probe: the standard health service, plaintext
            assert probe["grpc"]["port"] == grpc_port, kind
            service = probe["grpc"].get("service", "")
        else:
            # plaintext probes cannot reach a TLS port: the pod runs the TLS health probe on itself
            command = probe["exec"]["command"]
            assert "grpc" not in probe and command[1] == "/etc/recsvc/probe/health_probe.py", kind
            assert int(command[command.index("--port") + 1]) == grpc_port, kind
            ca = command[command.index("--ca") + 1]
            assert Path(ca).parent == Path(settings.server.tls_cert_file).parent, "the CA comes with the cert"
            service = command[command.index("--service") + 1] if "--service" in command else ""
        assert service == (SERVICE_NAME if kind == "readinessProbe" else ""), kind


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_grace_covers_the_drain(overlay: str, tmp_path: Path) -> None:
    _, _, pod, container, settings = _rendered_server(overlay, tmp_path)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = pre_stop + settings.server.shutdown_grace_seconds + DRAIN_SETTLE_SECONDS + HARD_STOP_SECONDS
    assert pod["terminationGracePeriodSeconds"] >= drain + 2, "no margin for the kubelet after the drain"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_non_root_with_a_read_only_root_and_sized_resources(overlay: str) -> None:
    objects = _render(overlay)
    pods = [o for o in objects if o["kind"] in POD_KINDS] + [yaml.safe_load(j.read_text()) for j in JOBS]
    assert len(pods) >= 2
    for obj in pods:
        pod = _pod_spec(obj)
        name = obj["metadata"].get("name") or obj["metadata"]["generateName"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod.get("automountServiceAccountToken") is False, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert "memory" in container["resources"]["limits"], name


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_server_is_one_process_with_one_blas_thread_and_only_the_writable_mounts_it_needs(
        overlay: str, tmp_path: Path) -> None:
    objects, _, pod, container, settings = _rendered_server(overlay, tmp_path)
    assert settings.server.workers == 1, "one worker per pod: Kubernetes is the supervisor (workers.py)"
    assert settings.server.host == "0.0.0.0"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert {v: env.get(v) for v in BLAS_THREAD_VARIABLES} == dict.fromkeys(BLAS_THREAD_VARIABLES, "1")
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/tmp"}
    mount, volume = _mount(pod, container, settings.server.artifact_root)
    assert mount["mountPath"] == settings.server.artifact_root and mount["readOnly"] is True
    claim = _one(objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "the trainer writes what every replica reads"
    assert settings.server.max_connection_age_seconds > 0, "long-lived clients must rebalance onto new replicas"
    for secret_file in (settings.server.tokens_file, settings.server.tls_cert_file, settings.server.tls_key_file):
        if secret_file:
            assert "secret" in _mount(pod, container, secret_file)[1], f"{secret_file} comes from a Secret"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_trainer_is_a_forbid_concurrency_cronjob_writing_the_servers_artifacts(
        overlay: str, tmp_path: Path) -> None:
    objects = _render(overlay)
    deployment, server = _server(objects)
    cron = _one(objects, "CronJob", "recsvc-trainer")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = _pod_spec(cron)
    (trainer,) = pod["containers"]
    assert "trainer" in trainer["image"] and "server" in server["image"]
    settings = _settings(objects, trainer, pod, tmp_path)
    server_settings = _settings(objects, server, _pod_spec(deployment), tmp_path)
    assert settings.server.artifact_root == server_settings.server.artifact_root  # train publishes there
    mount, volume = _mount(pod, trainer, settings.server.artifact_root)
    assert not mount.get("readOnly") and not volume["persistentVolumeClaim"].get("readOnly")
    _, server_volume = _mount(_pod_spec(deployment), server, server_settings.server.artifact_root)
    assert volume["persistentVolumeClaim"]["claimName"] == server_volume["persistentVolumeClaim"]["claimName"]


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_autoscaler_budget_and_headless_service_select_the_server(overlay: str) -> None:
    objects = _render(overlay)
    deployment, container = _server(objects)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()

    hpa = _one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert 2 <= hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]

    pdb = _one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"], "a drain must leave a server serving"

    service = _one(objects, "Service", "recsvc-server")
    assert service["spec"]["clusterIP"] == "None", "headless: clients balance calls over the pods themselves"
    assert service["spec"]["selector"].items() <= labels.items()
    (grpc_port,) = (p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert grpc_port["targetPort"] in ("grpc", *(p["containerPort"] for p in container["ports"]
                                                  if p["name"] == "grpc"))


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_events_settings_name_a_shared_store(overlay: str, tmp_path: Path) -> None:
    """Every replica and the trainer share one Redis; an embedded SQLite file per pod would split the events."""
    if "events" not in {f.name for f in dataclasses.fields(Settings)}:
        pytest.skip("this branch's settings have no [events] section yet (the real-time work adds it)")
    objects, _, _, container, settings = _rendered_server(overlay, tmp_path)
    assert settings.events.backend == "redis"
    (url,) = (e for e in container["env"] if e["name"] == "RECSVC_EVENTS__REDIS_URL")
    secret_name = url["valueFrom"]["secretKeyRef"]["name"]
    generated = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == secret_name]
    assert not generated or "redis-url" in generated[0]["data"]


# ------------------------------------------------------------------------------------------ TLS health probe


def _probe(port: int, ca: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(HEALTH_PROBE), "--port", str(port), "--ca", str(ca),
                           "--server-name", "localhost", *args], capture_output=True, text=True, timeout=30)


def test_the_tls_health_probe_passes_a_serving_server_and_fails_a_draining_one(
        live_server: LiveServers, tmp_path: Path, certs: Path) -> None:  # noqa: F811
    root = tmp_path / "artifacts"
    publish_toy(root)
    server = live_server(settings_for(root, tls_cert_file=str(certs / "server.crt"),
                                      tls_key_file=str(certs / "server.key")), target_host="localhost",
                         credentials=grpc.ssl_channel_credentials((certs / "ca.crt").read_bytes()))
    ok = _probe(server.port, certs / "ca.crt", "--service", SERVICE_NAME)
    assert (ok.returncode, ok.stdout.strip()) == (0, f"{SERVICE_NAME}: SERVING")
    wrong_ca = _probe(server.port, certs / "rogue-ca.crt")
    assert wrong_ca.returncode == 1 and "UNAVAILABLE" in wrong_ca.stdout
    server.holder.drain()
    draining = _probe(server.port, certs / "ca.crt", "--service", SERVICE_NAME)
    assert (draining.returncode, draining.stdout.strip()) == (1, f"{SERVICE_NAME}: NOT_SERVING")


# ------------------------------------------------------------------------------------------ connection age

#: A client that calls GetModelInfo for a few seconds over one channel, then prints what happened as JSON.
CLIENT = """
import json, sys, time
import grpc
from recsvc.v1 import recsvc_pb2, recsvc_pb2_grpc
channel = grpc.insecure_channel(sys.argv[1])
states = []
channel.subscribe(lambda state: states.append(state.name), try_to_connect=True)
stub = recsvc_pb2_grpc.RecommenderStub(channel)
ok, failures = 0, []
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        stub.GetModelInfo(recsvc_pb2.GetModelInfoRequest(), timeout=5)
        ok += 1
    except grpc.RpcError as exc:
        failures.append(exc.code().name)
    time.sleep(0.01)
channel.close()
print(json.dumps({"ok": ok, "failures": failures, "states": states}))
"""


def test_an_aged_connection_gets_goaway_and_the_client_reconnects_without_a_failed_call(
        live_server: LiveServers, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """max_connection_age 1 s: over 4 s one channel uses several connections and every call is answered.

    grpc's client treats GOAWAY as "reconnect": calls not yet sent go to a new connection (transparent
    retry), calls in flight finish within the grace. The client's http trace shows the GOAWAY and its
    ``max_age`` reason; the server's access log shows calls from several client ports (connections).
    """
    root = tmp_path / "artifacts"
    publish_toy(root)
    caplog.set_level("INFO", logger="recsvc.access")
    server = live_server(settings_for(root, max_connection_age_seconds=1.0, max_connection_age_grace_seconds=0.5,
                                      log_json=True))
    env = {**os.environ, "GRPC_TRACE": "http", "GRPC_VERBOSITY": "debug"}
    run = subprocess.run([sys.executable, "-c", CLIENT, server.target, "4"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["failures"] == [], "a GOAWAY for age must not fail a call"
    assert result["ok"] > 50
    goaways = [line for line in run.stderr.splitlines() if "goaway" in line.lower() and "max_age" in line]
    assert goaways, "the client never received the server's max_age GOAWAY"
    assert result["states"].count("READY") >= 3, result["states"]  # connected again after each GOAWAY
    peers = {getattr(r, "peer", None) for r in caplog.records if r.name == "recsvc.access"}
    assert len(peers) >= 3, f"calls arrived over {len(peers)} connection(s): {sorted(map(str, peers))}"


def test_without_an_age_limit_one_channel_keeps_one_connection(
        live_server: LiveServers, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The control for the test above: age 0 (no limit) and the same client stays on its first connection."""
    root = tmp_path / "artifacts"
    publish_toy(root)
    caplog.set_level("INFO", logger="recsvc.access")
    server = live_server(settings_for(root, max_connection_age_seconds=0.0, log_json=True))
    run = subprocess.run([sys.executable, "-c", CLIENT, server.target, "2.5"], capture_output=True, text=True,
                         timeout=60)
    result = json.loads(run.stdout)
    assert result["failures"] == [] and result["states"].count("READY") == 1
    assert len({getattr(r, "peer", None) for r in caplog.records if r.name == "recsvc.access"}) == 1


@pytest.mark.parametrize("field", ["max_connection_age_seconds", "max_connection_age_grace_seconds"])
def test_a_negative_connection_age_setting_is_refused_naming_it(
        live_server: LiveServers, tmp_path: Path, field: str) -> None:
    root = tmp_path / "artifacts"
    publish_toy(root)
    with pytest.raises(ConfigError, match=field):
        live_server(settings_for(root, **{field: -1.0}))
