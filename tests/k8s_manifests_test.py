#!/usr/bin/env python3
"""Checks k8s/ against the server binaries it runs.

Every manifest parses; every flag a container passes exists in that binary's --helpfull; probes
and Services use the port the container listens on (probes: --health_port where TLS is on); the pod's termination grace outlasts the
server's --shutdown_grace; and each overlay's JSON patch replaces an argument with the same flag
(an index that drifted to another flag fails here, not in a cluster).
Usage: k8s_manifests_test.py K8S_DIR BINARY...
"""
import copy
import os
import re
import subprocess
import sys

import yaml


def load_all(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def binary_flags(binary):
    out = subprocess.run([binary, "--helpfull"], capture_output=True, text=True).stdout
    return set(re.findall(r"^\s+--([a-z_0-9]+) ", out, flags=re.M))


def flag_name(arg):
    return arg.split("=", 1)[0].lstrip("-")


def duration_seconds(text):
    match = re.fullmatch(r"(\d+)s", text)
    assert match, f"--shutdown_grace={text}: use whole seconds"
    return int(match.group(1))


def check_deployment(deployment, flags_of, failures):
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]["spec"]
    for container in pod["containers"]:
        binary = os.path.basename(container["command"][0])
        if binary not in flags_of:
            failures.append(f"{name}: runs unknown binary {binary}")
            continue
        args = {flag_name(a): a.split("=", 1)[1] if "=" in a else "" for a in container["args"]}
        for flag in args:
            if flag not in flags_of[binary]:
                failures.append(f"{name}: {binary} has no flag --{flag}")
        port = int(args.get("port", "0"))
        # With TLS the probes use the plaintext health-only port (kubelet cannot speak TLS).
        probe_port = int(args.get("health_port", port))
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe in container and container[probe]["grpc"]["port"] != probe_port:
                failures.append(f"{name}: {probe} checks a port other than {probe_port}")
        if "health_port" in args and probe_port not in [p["containerPort"] for p in
                                                        container["ports"]]:
            failures.append(f"{name}: --health_port={probe_port} is not a containerPort")
        if container["ports"][0]["containerPort"] != port:
            failures.append(f"{name}: containerPort differs from --port={port}")
        grace = duration_seconds(args.get("shutdown_grace", "10s"))
        if pod.get("terminationGracePeriodSeconds", 30) <= grace:
            failures.append(f"{name}: terminationGracePeriodSeconds must exceed --shutdown_grace")


def apply_patch(deployment, operations, failures):
    for op in operations:
        keys = op["path"].strip("/").split("/")
        node = deployment
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list) and keys[-1] == "-":
            if op["op"] != "add":
                failures.append(f"patch {op['path']}: '-' only appends")
            node.append(op["value"])
            continue
        last = int(keys[-1]) if isinstance(node, list) else keys[-1]
        if op["op"] == "replace":
            old = node[last]
            if isinstance(old, str) and flag_name(old) != flag_name(op["value"]):
                failures.append(f"patch {op['path']} replaces {old} with {op['value']}")
            node[last] = op["value"]
        elif op["op"] == "add" and isinstance(node, list):
            node.insert(last, op["value"])
        elif op["op"] == "add":
            node[last] = op["value"]
        else:
            failures.append(f"unsupported patch op {op['op']}")


def main():
    k8s_dir, binaries = sys.argv[1], sys.argv[2:]
    flags_of = {os.path.basename(b): binary_flags(b) for b in binaries}
    for binary, flags in flags_of.items():
        assert "port" in flags, f"{binary} --helpfull lists no --port: {sorted(flags)[:10]}"
    failures = []
    base = {}
    for path in sorted(os.listdir(os.path.join(k8s_dir, "base"))):
        if path == "kustomization.yaml":
            continue
        for doc in load_all(os.path.join(k8s_dir, "base", path)):
            if doc["kind"] == "Deployment":
                base[doc["metadata"]["name"]] = doc
                check_deployment(doc, flags_of, failures)
            elif doc["kind"] == "Service":
                target = base.get(doc["spec"]["selector"]["app"])
                if target is None:
                    failures.append(f"Service {doc['metadata']['name']} selects no Deployment")
    overlays = os.path.join(k8s_dir, "overlays")
    for overlay in sorted(os.listdir(overlays)):
        for kustomization in load_all(os.path.join(overlays, overlay, "kustomization.yaml")):
            deployments = copy.deepcopy(base)
            patches = []
            for component in kustomization.get("components", []):
                path = os.path.normpath(os.path.join(overlays, overlay, component))
                for doc in load_all(os.path.join(path, "kustomization.yaml")):
                    patches += doc.get("patches", [])
            patches += kustomization.get("patches", [])
            for patch in patches:
                apply_patch(deployments[patch["target"]["name"]], yaml.safe_load(patch["patch"]),
                            failures)
            for replica in kustomization.get("replicas", []):
                if replica["name"] not in deployments:
                    failures.append(f"{overlay}: replicas for unknown {replica['name']}")
            for deployment in deployments.values():
                check_deployment(deployment, flags_of, failures)
    for failure in failures:
        print("FAIL:", failure)
    print(f"checked {len(base)} deployments and {len(os.listdir(overlays))} overlays")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
