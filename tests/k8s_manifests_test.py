#!/usr/bin/env python3
"""Checks k8s/ against the server binaries it runs, then runs the cpu-demo overlay on loopback.

1. Renders every overlay (kustomize's resources, labels, images, replicas and JSON 6902 patches,
   the subset k8s/ uses) and validates each object against the Kubernetes schemas with a real
   validator: tools/npm/validate_k8s.mjs (npm kubernetes-models, @kubernetes-models/keda and
   @kubernetes-models/prometheus-operator, whose ajv schemas come from the API's OpenAPI spec).
2. Checks what a schema cannot: every flag a container passes exists in that binary's
   --helpfull; probes, ports and Services agree with --port and --metrics_port; probes ask for the
   service's own health name; grace periods outlast --shutdown_grace; every container has
   requests and limits and runs non-root on a read-only root; each Deployment has a disruption
   budget; only the gateway may reach the workers' gRPC ports; the gpu overlay puts the workers
   on Hopper GPUs with an autoscaler each, whose queries name metrics the servers export; each
   overlay's patch replaces an argument with the same flag.
   With TLS on (k8s/components/tls) the probes use the plaintext --health_port, which must be a
   containerPort.
3. Runs the three servers as processes with the cpu-demo overlay's flags (ports moved to free
   ones, the model folder a random-weight toy model, the TLS, mTLS and token files made here
   with openssl; health checks go to --health_port and the chats to the gateway over TLS with a
   bearer token): a server answers NOT_SERVING while its
   model loads, then SERVING; the gateway is NOT_SERVING until a worker
   of each kind is reachable, a chat with an image goes through (mistral-chat --gateway), the
   request id of the gateway's summary line appears in both workers' logs, each /metrics parses
   with the Prometheus client's own parser and holds what the chat did, the gateway leaves and
   re-enters rotation within seconds when the decoder worker stops and comes back, a gateway
   refuses a decoder worker that serves another model (fingerprint), and a second server on a
   busy port fails to start.

Usage: k8s_manifests_test.py K8S_DIR VALIDATOR TEKKEN_JSON IMAGE BINARY...
(the three servers, make_random_model, health_probe and mistral-chat)
"""
import copy
import json
import os
import re
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml
from prometheus_client.parser import text_string_to_metric_families

HEALTH_NAMES = {
    "gateway_server": "pixtral.v1.Gateway",
    "vision_worker": "pixtral.v1.VisionEncoder",
    "decoder_worker": "pixtral.v1.Decoder",
}
WORKER_PORTS = {9001, 9002}


def load_all(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def binary_flags(binary):
    out = subprocess.run([binary, "--helpfull"], capture_output=True, text=True).stdout
    return set(re.findall(r"^\s+--([a-z_0-9]+) ", out, flags=re.M))


def flag_name(arg):
    return arg.split("=", 1)[0].lstrip("-")


def args_of(container):
    return {flag_name(a): a.split("=", 1)[1] if "=" in a else "" for a in container["args"]}


def duration_seconds(text):
    match = re.fullmatch(r"(\d+)s", text)
    assert match, f"--shutdown_grace={text}: use whole seconds"
    return int(match.group(1))


# ---- Rendering ---------------------------------------------------------------------------------


def resolve(node, keys):
    for key in keys:
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def apply_patch(obj, operations, failures, where):
    for op in operations:
        keys = op["path"].strip("/").split("/")
        parent = resolve(obj, keys[:-1])
        last = keys[-1]
        if isinstance(parent, list):
            if op["op"] == "add" and last == "-":
                parent.append(op["value"])
                continue
            last = int(last)
        if op["op"] == "replace":
            old = parent[last]
            if isinstance(old, str) and flag_name(old) != flag_name(op["value"]):
                failures.append(f"{where}: patch {op['path']} replaces {old} with {op['value']}")
            parent[last] = op["value"]
        elif op["op"] == "add":
            if isinstance(parent, list):
                parent.insert(last, op["value"])
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            del parent[last]
        else:
            failures.append(f"{where}: unsupported patch op {op['op']}")


def render(directory, failures):
    """The objects `kubectl kustomize directory` would print, for the features k8s/ uses."""
    (kustomization,) = load_all(os.path.join(directory, "kustomization.yaml"))
    known = {"apiVersion", "kind", "resources", "components", "labels", "images", "replicas",
             "patches"}
    for key in kustomization:
        if key not in known:
            failures.append(f"{directory}: kustomization field {key} is not rendered by this test")
    objects = []
    for resource in kustomization.get("resources", []):
        path = os.path.normpath(os.path.join(directory, resource))
        objects += render(path, failures) if os.path.isdir(path) else load_all(path)
    # A Component's resources join, and its patches apply before the kustomization's own.
    patches = []
    for component in kustomization.get("components", []):
        path = os.path.normpath(os.path.join(directory, component))
        (spec,) = load_all(os.path.join(path, "kustomization.yaml"))
        for resource in spec.get("resources", []):
            objects += load_all(os.path.join(path, resource))
        patches += spec.get("patches", [])
    patches += kustomization.get("patches", [])
    for label in kustomization.get("labels", []):
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for image in kustomization.get("images", []):
        for obj in objects:
            for container in pod_containers(obj):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    for replica in kustomization.get("replicas", []):
        matches = [o for o in objects if o["kind"] == "Deployment"
                   and o["metadata"]["name"] == replica["name"]]
        if not matches:
            failures.append(f"{directory}: replicas for unknown {replica['name']}")
        for obj in matches:
            obj["spec"]["replicas"] = replica["count"]
    for patch in patches:
        target = patch["target"]
        matches = [o for o in objects if o["kind"] == target["kind"]
                   and o["metadata"]["name"] == target["name"]]
        if len(matches) != 1:
            failures.append(f"{directory}: patch target {target} matches {len(matches)} objects")
        for obj in matches:
            apply_patch(obj, yaml.safe_load(patch["patch"]), failures, directory)
    return objects


def pod_spec(obj):
    if obj["kind"] in ("Deployment", "Job"):
        return obj["spec"]["template"]["spec"]
    return None


def pod_containers(obj):
    spec = pod_spec(obj)
    return spec["containers"] if spec else []


# ---- Checks ------------------------------------------------------------------------------------


def check_pod_security(name, obj, failures):
    spec = pod_spec(obj)
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        failures.append(f"{name}: pod does not set runAsNonRoot")
    for container in spec["containers"]:
        context = container.get("securityContext", {})
        if not context.get("readOnlyRootFilesystem"):
            failures.append(f"{name}: {container['name']} root filesystem is writable")
        if context.get("allowPrivilegeEscalation", True):
            failures.append(f"{name}: {container['name']} allows privilege escalation")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            failures.append(f"{name}: {container['name']} keeps its capabilities")
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(kind, {}):
                    failures.append(f"{name}: {container['name']} has no {kind}.{resource}")


def check_deployment(deployment, flags_of, failures):
    name = deployment["metadata"]["name"]
    pod = pod_spec(deployment)
    check_pod_security(name, deployment, failures)
    for container in pod["containers"]:
        binary = os.path.basename(container["command"][0])
        if binary not in flags_of:
            failures.append(f"{name}: runs unknown binary {binary}")
            continue
        args = args_of(container)
        for flag in args:
            if flag not in flags_of[binary]:
                failures.append(f"{name}: {binary} has no flag --{flag}")
        port = int(args.get("port", "0"))
        # With TLS the probes use the plaintext health-only port (kubelet cannot speak TLS).
        health_port = int(args.get("health_port", port))
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if "health_port" in args and ports.get("health") != health_port:
            failures.append(f"{name}: containerPort health differs from --health_port")
        if ports.get("grpc") != port:
            failures.append(f"{name}: containerPort grpc differs from --port={port}")
        if ports.get("metrics") != int(args.get("metrics_port", "-1")):
            failures.append(f"{name}: containerPort metrics differs from --metrics_port")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe not in container:
                continue
            spec = container[probe]
            # gRPC health checks go to --health_port where TLS is on; a TCP connect to --port.
            expected = health_port if "grpc" in spec else port
            probe_port = (spec.get("grpc") or spec.get("tcpSocket") or {}).get("port")
            if probe_port != expected:
                failures.append(f"{name}: {probe} checks a port other than {expected}")
            if "grpc" in spec and spec["grpc"].get("service") != HEALTH_NAMES[binary]:
                failures.append(f"{name}: {probe} should ask for {HEALTH_NAMES[binary]}")
        if "readinessProbe" not in container or "livenessProbe" not in container:
            failures.append(f"{name}: needs readiness and liveness probes")
        if "grpc" in container.get("livenessProbe", {}) and binary == "gateway_server":
            failures.append(f"{name}: a gateway NOT_SERVING for want of workers must stay alive")
        grace = duration_seconds(args.get("shutdown_grace", "10s"))
        if pod.get("terminationGracePeriodSeconds", 30) <= grace:
            failures.append(f"{name}: terminationGracePeriodSeconds must exceed --shutdown_grace")


def selects(selector, labels):
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        if expression["operator"] != "In" or labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def check_overlay(overlay, objects, flags_of, exported_metrics, failures):
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    pod_labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    for deployment in deployments.values():
        check_deployment(deployment, flags_of, failures)
    for job in by_kind.get("Job", []):
        check_pod_security(f"{overlay}/{job['metadata']['name']}", job, failures)
    for service in by_kind.get("Service", []):
        if not any(selects({"matchLabels": service["spec"]["selector"]}, l)
                   for l in pod_labels.values()):
            failures.append(f"{overlay}: Service {service['metadata']['name']} selects no pods")
    for name, labels in pod_labels.items():
        if not any(selects(p["spec"]["selector"], labels)
                   for p in by_kind.get("PodDisruptionBudget", [])):
            failures.append(f"{overlay}: {name} has no PodDisruptionBudget")
    # Who may reach a worker's gRPC port: only pods the policies name, and those the gateway's.
    for name in ("vision-worker", "decoder-worker"):
        policies = [p for p in by_kind.get("NetworkPolicy", [])
                    if selects(p["spec"]["podSelector"], pod_labels[name])]
        if not policies:
            failures.append(f"{overlay}: no NetworkPolicy guards {name}")
        for policy in policies:
            for rule in policy["spec"].get("ingress", []):
                ports = {p["port"] for p in rule.get("ports", [])}
                if ports & WORKER_PORTS and rule.get("from") != [
                        {"podSelector": {"matchLabels": {"app": "gateway"}}}]:
                    failures.append(f"{overlay}: {policy['metadata']['name']} opens a worker port "
                                    "to more than the gateway")
    if overlay == "gpu":
        for name in ("vision-worker", "decoder-worker"):
            pod = pod_spec(deployments[name])
            container = pod["containers"][0]
            if container["resources"]["limits"].get("nvidia.com/gpu") != 1:
                failures.append(f"gpu: {name} does not take one GPU")
            if "--backend=cuda" not in container["args"]:
                failures.append(f"gpu: {name} does not run the CUDA backend")
            terms = pod.get("affinity", {}).get("nodeAffinity", {}).get(
                "requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms", [])
            if not any(e["key"] == "nvidia.com/gpu.family" and e["values"] == ["hopper"]
                       for t in terms for e in t["matchExpressions"]):
                failures.append(f"gpu: {name} is not pinned to Hopper nodes (sm_90a kernels)")
            if not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])):
                failures.append(f"gpu: {name} does not tolerate GPU node taints")
        decoder = pod_spec(deployments["decoder-worker"])
        if not any(m["mountPath"] == "/dev/shm" for m in decoder["containers"][0]["volumeMounts"]):
            failures.append("gpu: the decoder worker has no /dev/shm for NCCL")
        scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in by_kind.get("ScaledObject", [])}
        for name in ("vision-worker", "decoder-worker"):
            if name not in scaled:
                failures.append(f"gpu: no autoscaler for {name}")
                continue
            for trigger in scaled[name]["spec"]["triggers"]:
                for metric in re.findall(r"pixtral_[a-z_]+", trigger["metadata"]["query"]):
                    base = re.sub(r"_(bucket|sum|count)$", "", metric)
                    if base not in exported_metrics.get(name, set()):
                        failures.append(f"gpu: {name}'s autoscaler queries {metric}, which "
                                        f"{name} does not export")
        if not by_kind.get("ServiceMonitor"):
            failures.append("gpu: no ServiceMonitor")


def validate_schemas(validator, objects, overlay, failures):
    result = subprocess.run(["node", validator], input=json.dumps(objects), capture_output=True,
                            text=True)
    for line in result.stdout.splitlines():
        if line.startswith("FAIL"):
            failures.append(f"{overlay}: schema: {line}")
    if result.returncode != 0 and "FAIL" not in result.stdout:
        failures.append(f"{overlay}: validator failed: {result.stderr[-2000:]}")
    return sum(1 for line in result.stdout.splitlines() if line.startswith("ok "))


# ---- The cpu-demo overlay on loopback ---------------------------------------------------------


def free_port():
    # A free port below the kernel's ephemeral range (32768 and up): the other tests running at
    # the same time bind port 0, which draws from that range, and could take a port picked there
    # before our server binds it.
    while True:
        port = random.randrange(20000, 32000)
        if port in PICKED_PORTS:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        PICKED_PORTS.add(port)
        return port


PICKED_PORTS = set()


class Server:
    def __init__(self, binary, args, log_path):
        self.binary, self.args, self.log_path = binary, args, log_path
        self.process = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen([self.binary] + self.args, stdout=self.log,
                                        stderr=subprocess.STDOUT)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.log.close()

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


# A server's gRPC port -> its plaintext --health_port (TLS servers: the probe speaks plaintext).
HEALTH_PORT_OF = {}


def health(probe, port, service=""):
    port = HEALTH_PORT_OF.get(port, port)
    result = subprocess.run([probe, f"--address=127.0.0.1:{port}", f"--service={service}",
                             "--timeout=2s"], capture_output=True, text=True)
    return result.stdout.strip().split(" ")[0]


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    families = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return families, samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def make_pki(work):
    """What the tls component's Secrets hold, made with openssl: an internal CA that signs each
    worker's certificate and the gateway's client certificate, a public CA for the gateway's
    serving certificate, and a token file. Returns {mount path in the pod: file here}."""
    pki = os.path.join(work, "pki")
    os.mkdir(pki)

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    def ca(name):
        key, cert = os.path.join(pki, f"{name}.key"), os.path.join(pki, f"{name}.crt")
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}")
        return key, cert

    def leaf(name, ca_key, ca_cert):
        key, csr = os.path.join(pki, f"{name}.key"), os.path.join(pki, f"{name}.csr")
        cert, ext = os.path.join(pki, f"{name}.crt"), os.path.join(pki, f"{name}.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        run("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
            "-out", cert, "-days", "2", "-extfile", ext)
        return key, cert

    internal_key, internal_ca = ca("internal-ca")
    public_key, public_ca = ca("public-ca")
    files = {}
    for name in ("vision-worker", "decoder-worker"):
        key, cert = leaf(name, internal_key, internal_ca)
        files[name] = {"/tls/server/tls.crt": cert, "/tls/server/tls.key": key,
                       "/tls/server/ca.crt": internal_ca}
    key, cert = leaf("gateway", public_key, public_ca)
    client_key, client_cert = leaf("gateway-client", internal_key, internal_ca)
    tokens = os.path.join(pki, "tokens")
    with open(tokens, "w") as f:
        f.write("k8s-test-token\n")
    files["gateway"] = {"/tls/server/tls.crt": cert, "/tls/server/tls.key": key,
                        "/tls/workers/ca.crt": internal_ca, "/tls/workers/tls.crt": client_cert,
                        "/tls/workers/tls.key": client_key, "/secrets/tokens/tokens": tokens}
    files["public_ca"], files["tokens"] = public_ca, tokens
    return files


def run_cpu_demo(objects, binaries, tekken, image, failures):
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    work = tempfile.mkdtemp(prefix="k8s_cpu_demo_")
    model = os.path.join(work, "model")
    subprocess.run([binaries["make_random_model"], f"--out={model}",
                    f"--tekken={tekken}"], check=True, capture_output=True)
    ports = {name: (free_port(), free_port(), free_port()) for name in deployments}
    pki = make_pki(work)
    address = {"vision-worker": f"127.0.0.1:{ports['vision-worker'][0]}",
               "decoder-worker": f"127.0.0.1:{ports['decoder-worker'][0]}"}

    def server(name):
        container = pod_spec(deployments[name])["containers"][0]
        args = []
        for arg in container["args"]:  # the overlay's flags; only addresses and ports move
            flag = flag_name(arg)
            if flag == "port":
                arg = f"--port={ports[name][0]}"
            elif flag == "metrics_port":
                arg = f"--metrics_port={ports[name][1]}"
            elif flag == "model_dir":
                arg = f"--model_dir={model}"
            elif flag == "vision_workers":
                arg = f"--vision_workers={address['vision-worker']}"
            elif flag == "decoder_workers":
                arg = f"--decoder_workers={address['decoder-worker']}"
            elif flag == "health_port":
                arg = f"--health_port={ports[name][2]}"
                HEALTH_PORT_OF[ports[name][0]] = ports[name][2]
            elif "=" in arg and arg.split("=", 1)[1] in pki.get(name, {}):
                arg = f"--{flag}={pki[name][arg.split('=', 1)[1]]}"  # a Secret's file
            args.append(arg)
        binary = binaries[os.path.basename(container["command"][0])]
        return Server(binary, args + ["--host=127.0.0.1"], os.path.join(work, f"{name}.log"))

    def move(server, port):
        """`server` on `port` with a health port of its own (for a second instance)."""
        server.args = [f"--port={port}" if a.startswith("--port=") else a for a in server.args]
        if any(a.startswith("--health_port=") for a in server.args):
            HEALTH_PORT_OF[port] = free_port()
            server.args = [f"--health_port={HEALTH_PORT_OF[port]}"
                           if a.startswith("--health_port=") else a for a in server.args]

    # What a client of the cpu-demo gateway needs: its CA and a bearer token.
    gateway_args = args_of(pod_spec(deployments["gateway"])["containers"][0])
    client_tls = ([f"--gateway_ca={pki['public_ca']}"] if "tls_cert" in gateway_args else []) + \
        ([f"--gateway_token_file={pki['tokens']}"] if "auth_token_file" in gateway_args else [])
    probe = binaries["health_probe"]
    servers = {name: server(name) for name in ("gateway", "vision-worker", "decoder-worker")}
    gateway_port, gateway_metrics, _ = ports["gateway"]
    try:
        # The gateway alone: up (metrics too) but out of rotation.
        servers["gateway"].start()
        if not wait_for(lambda: health(probe, gateway_port) in ("SERVING", "NOT_SERVING"), 30):
            failures.append("cpu-demo: the gateway did not start")
            return
        if not wait_for(lambda: health(probe, gateway_port, "pixtral.v1.Gateway") == "NOT_SERVING",
                        5):
            failures.append("cpu-demo: the gateway is SERVING with no worker up")
        scrape(gateway_metrics)
        for name in ("vision-worker", "decoder-worker"):
            servers[name].start()
        for name, service in (("vision-worker", "pixtral.v1.VisionEncoder"),
                              ("decoder-worker", "pixtral.v1.Decoder")):
            if not wait_for(lambda: health(probe, ports[name][0], service) == "SERVING" or
                            servers[name].process.poll() is not None, 180) or \
                    servers[name].process.poll() is not None:
                failures.append(f"cpu-demo: {name} never became SERVING: {servers[name].text()}")
                return
        if not wait_for(lambda: health(probe, gateway_port, "pixtral.v1.Gateway") == "SERVING", 5):
            failures.append("cpu-demo: the gateway stayed NOT_SERVING with both workers up")

        max_tokens = 6
        chat = subprocess.run(
            [binaries["mistral-chat"], f"--gateway=127.0.0.1:{gateway_port}",
             "--prompt=Describe the image.", f"--image={image}", f"--max_tokens={max_tokens}",
             "--temperature=0", *client_tls], capture_output=True, text=True, timeout=120)
        if chat.returncode != 0:
            failures.append(f"cpu-demo: the chat failed: {chat.stderr}")
            return

        # One summary line at the gateway; its request id in both workers' logs.
        lines = [l for l in servers["gateway"].text().splitlines()
                 if "method=/pixtral.v1.Gateway/StreamChatCompletion code=OK" in l]
        if len(lines) != 1:
            failures.append(f"cpu-demo: expected one gateway summary line, got {lines}")
            return
        request_id = re.search(r"request id=(\S+)", lines[0]).group(1)
        if not re.search(r"prompt_tokens=\d+ image_tokens=\d+ completion_tokens=\d+ ttft=",
                         lines[0]):
            failures.append(f"cpu-demo: the summary line lacks tokens and times: {lines[0]}")
        for name, method in (("vision-worker", "VisionEncoder/Encode"),
                             ("decoder-worker", "Decoder/Generate")):
            if f"request id={request_id} method=/pixtral.v1.{method} code=OK" not in \
                    servers[name].text():
                failures.append(f"cpu-demo: {name} did not log request {request_id}")
        if not re.search(r"^[IWEF]\d{4,8} \d\d:\d\d:\d\d\.\d{6} ", lines[0]):
            failures.append(f"cpu-demo: log lines lack level and time: {lines[0]}")

        # What each /metrics says about that one chat (the parser is the Prometheus client's).
        _, gw = scrape(gateway_metrics)
        method = "/pixtral.v1.Gateway/StreamChatCompletion"
        generated = value(gw, "pixtral_generation_tokens_total")
        expect = [
            (value(gw, "pixtral_requests_total", method=method, code="OK") == 1,
             "gateway: one OK StreamChatCompletion"),
            (value(gw, "pixtral_time_to_first_token_seconds_count") == 1, "gateway: one TTFT"),
            (value(gw, "pixtral_e2e_request_latency_seconds_count") == 1, "gateway: one e2e"),
            (generated is not None and 0 < generated <= max_tokens,
             f"gateway: 1..{max_tokens} generated tokens, got {generated}"),
            (value(gw, "pixtral_inter_token_latency_seconds_count") == generated - 1,
             "gateway: an inter-token gap per token after the first"),
            ((value(gw, "pixtral_prompt_tokens_total") or 0) > 100,
             "gateway: the image's prompt tokens"),
        ]
        families, vision = scrape(ports["vision-worker"][1])
        exported = {"vision-worker": families}
        expect += [
            (value(vision, "pixtral_images_encoded_total") == 1, "vision: one image encoded"),
            (value(vision, "pixtral_vision_encode_seconds_count") == 1, "vision: one encode call"),
            (value(vision, "pixtral_model_loaded") == 1, "vision: model loaded"),
        ]
        families, decoder = scrape(ports["decoder-worker"][1])
        exported["decoder-worker"] = families
        cache_tokens = int(args_of(pod_spec(deployments["decoder-worker"])["containers"][0])
                           ["cache_tokens"])
        expect += [
            (value(decoder, "pixtral_kv_cache_blocks_total") == -(-cache_tokens // 16),
             "decoder: KV cache blocks total = --cache_tokens / 16"),
            (value(decoder, "pixtral_kv_cache_blocks_used") == 0, "decoder: cache freed"),
            (value(decoder, "pixtral_num_requests_running") == 0, "decoder: nothing running"),
            (value(decoder, "pixtral_num_requests_waiting") == 0, "decoder: nothing waiting"),
            (value(decoder, "pixtral_request_queue_time_seconds_count") == 1, "decoder: queued once"),
            ((value(decoder, "pixtral_batch_size_count") or 0) >= generated - 1,
             "decoder: a batch size per decode step"),
            (value(decoder, "pixtral_requests_total", method="/pixtral.v1.Decoder/Generate",
                   code="OK") == 1, "decoder: one OK Generate"),
        ]
        for ok, what in expect:
            if not ok:
                failures.append(f"cpu-demo metrics: {what}")

        # The decoder worker goes away: the gateway leaves rotation; it comes back: it returns.
        servers["decoder-worker"].stop()
        if not wait_for(lambda: health(probe, gateway_port, "pixtral.v1.Gateway") == "NOT_SERVING",
                        5):
            failures.append("cpu-demo: the gateway stayed SERVING with no decoder worker")
        servers["decoder-worker"].start()
        started = time.monotonic()
        if not wait_for(lambda: health(probe, ports["decoder-worker"][0]) == "SERVING", 60):
            failures.append("cpu-demo: the decoder worker did not restart")
        elif not wait_for(lambda: health(probe, gateway_port, "pixtral.v1.Gateway") == "SERVING",
                          4):
            failures.append("cpu-demo: the gateway did not return to rotation within 4 s of the "
                            f"decoder worker (restart took {time.monotonic() - started:.1f} s)")

        # A decoder worker with another model: the gateway refuses it with a clear error.
        other_model = os.path.join(work, "other-model")
        subprocess.run([binaries["make_random_model"], f"--out={other_model}",
                        f"--tekken={tekken}", "--n_layers=3"], check=True, capture_output=True)
        other = server("decoder-worker")
        other.args = [a if not a.startswith("--model_dir=") else f"--model_dir={other_model}"
                      for a in other.args]
        other_port = free_port()
        other.args = [a if not a.startswith("--port=") else f"--port={other_port}"
                      for a in other.args]
        other.args = [a for a in other.args if not a.startswith("--metrics_port=")]
        move(other, other_port)
        other.log_path = os.path.join(work, "other-decoder.log")
        mixed = server("gateway")
        mixed_port = free_port()
        mixed.args = [f"--port={mixed_port}" if a.startswith("--port=") else
                      f"--decoder_workers=127.0.0.1:{other_port}"
                      if a.startswith("--decoder_workers=") else a
                      for a in mixed.args if not a.startswith("--metrics_port=")]
        move(mixed, mixed_port)
        mixed.log_path = os.path.join(work, "mixed-gateway.log")
        servers["other-decoder"], servers["mixed-gateway"] = other, mixed
        other.start()
        mixed.start()
        # The gateway's loading server answers NOT_SERVING too, with no Gateway service behind it:
        # wait for the real one (its "serving on port" line), which stays NOT_SERVING here.
        if not wait_for(lambda: health(probe, other_port) == "SERVING", 60) or \
                not wait_for(lambda: "serving on port" in mixed.text(), 60):
            failures.append("cpu-demo: the mismatched decoder worker or its gateway did not start: "
                            f"worker exit {other.process.poll()}, health "
                            f"{health(probe, other_port)!r}, log {other.text()[-600:]!r}; gateway "
                            f"exit {mixed.process.poll()}, log {mixed.text()[-600:]!r}")
        else:
            refused = subprocess.run(
                [binaries["mistral-chat"], f"--gateway=127.0.0.1:{mixed_port}", "--prompt=Hi",
                 "--max_tokens=2", *client_tls], capture_output=True, text=True, timeout=120)
            print("mismatched worker:", refused.stderr.strip()[-300:])
            if refused.returncode == 0 or "serves another model" not in refused.stderr:
                failures.append("cpu-demo: a decoder worker with another model was not refused: "
                                f"{refused.stderr}")
            if f"worker 127.0.0.1:{other_port} failed" not in mixed.text():
                failures.append("cpu-demo: the gateway did not log the mismatched worker's address")

        # Health while a model loads: NOT_SERVING on the port, then SERVING. The load is held
        # by a params.json that is a FIFO, fed only once NOT_SERVING was seen.
        slow_model = os.path.join(work, "slow-model")
        os.mkdir(slow_model)
        for name in os.listdir(model):
            if name != "params.json":
                os.symlink(os.path.join(model, name), os.path.join(slow_model, name))
        with open(os.path.join(model, "params.json"), "rb") as f:
            params = f.read()
        fifo = os.path.join(slow_model, "params.json")
        os.mkfifo(fifo)
        slow = server("decoder-worker")
        slow_port = free_port()
        slow.args = [f"--port={slow_port}" if a.startswith("--port=") else
                     f"--model_dir={slow_model}" if a.startswith("--model_dir=") else a
                     for a in slow.args if not a.startswith("--metrics_port=")]
        move(slow, slow_port)
        slow.log_path = os.path.join(work, "slow-decoder.log")
        servers["slow-decoder"] = slow
        slow.start()
        if not wait_for(lambda: health(probe, slow_port) == "NOT_SERVING", 10):
            failures.append("cpu-demo: a loading server does not answer NOT_SERVING")
        if health(probe, slow_port, "pixtral.v1.Decoder") == "SERVING":
            failures.append("cpu-demo: a loading decoder worker claims pixtral.v1.Decoder")

        def feed():  # each read of params.json opens the FIFO anew
            if health(probe, slow_port, "pixtral.v1.Decoder") == "SERVING":
                return True
            try:
                descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                return False  # no reader yet
            os.write(descriptor, params)
            os.close(descriptor)
            return False
        if not wait_for(feed, 60):
            failures.append("cpu-demo: the loading decoder worker never became SERVING: " +
                            slow.text()[-1500:])

        # A second vision worker on the busy port fails to start.
        busy = server("vision-worker")
        busy.log_path = os.path.join(work, "busy.log")
        busy.start()
        if busy.process.wait(timeout=60) == 0:
            failures.append("cpu-demo: a second server on a busy port started")
        busy.log.close()
    finally:
        for s in servers.values():
            if s.process:
                try:
                    s.stop()
                except Exception as error:  # report, then go on stopping the others
                    failures.append(f"cpu-demo: stopping {s.binary}: {error}")
    return exported


def main():
    k8s_dir, validator, tekken, image = sys.argv[1:5]
    binaries = {os.path.basename(b): os.path.abspath(b) for b in sys.argv[5:]}
    flags_of = {name: binary_flags(binaries[name]) for name in HEALTH_NAMES}
    for binary, flags in flags_of.items():
        assert "port" in flags, f"{binary} --helpfull lists no --port: {sorted(flags)[:10]}"
    failures = []
    overlays_dir = os.path.join(k8s_dir, "overlays")
    rendered = {o: render(os.path.join(overlays_dir, o), failures)
                for o in sorted(os.listdir(overlays_dir))}
    validated = 0
    for overlay, objects in rendered.items():
        validated += validate_schemas(validator, objects, overlay, failures)
    exported = run_cpu_demo(rendered["cpu-demo"], binaries, tekken, image, failures) or {}
    for overlay, objects in rendered.items():
        check_overlay(overlay, objects, flags_of, exported, failures)
    for failure in failures:
        print("FAIL:", failure)
    print(f"rendered {len(rendered)} overlays, {validated} objects valid against the schemas; "
          f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
