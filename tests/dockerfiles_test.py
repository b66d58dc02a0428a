#!/usr/bin/env python3
"""Reads docker/*.Dockerfile against the binaries they package (no container engine runs here).

For each role's Dockerfile:
- multi-stage: a build stage that runs tools/setup.sh and `bazel build` of the role's target, a
  runtime stage that is not the build stage, on debian:12-slim (the workers through a CUDA
  runtime stage);
- the runtime stage provides every shared library the binary loads, as `ldd` resolves them
  here: each Debian library's package (dpkg -S) must be among the packages the stage installs,
  their dependencies (apt-cache depends --recurse) or the base image's required packages; each
  CUDA library must be copied from the build stage or come from the NVIDIA runtime package that
  ships it; and every package it installs must provide one of those libraries (nothing else,
  but ca-certificates for the gateway's https image downloads);
- the binary is copied from the build stage to the path the Kubernetes manifests run, the stage
  runs as a non-root USER, EXPOSEs the ports the manifests use, and its CMD passes only flags
  the binary's --helpfull lists; no model file is copied in.
Usage: dockerfiles_test.py DOCKER_DIR K8S_BASE_DIR BINARY...
"""
import functools
import os
import re
import shlex
import subprocess
import sys

import yaml

# role Dockerfile -> (binary, Bazel target, image name in k8s/base)
ROLES = {
    "gateway.Dockerfile": ("gateway_server", "//services/gateway:gateway_server",
                           "pixtral-gateway"),
    "vision-worker.Dockerfile": ("vision_worker", "//services/vision_worker:vision_worker",
                                 "pixtral-vision-worker"),
    "decoder-worker.Dockerfile": ("decoder_worker", "//services/decoder_worker:decoder_worker",
                                  "pixtral-decoder-worker"),
}
# Which NVIDIA Debian 12 package ships a CUDA library (NVIDIA's packaging, for CUDA 13.0).
NVIDIA_PACKAGES = {
    "libcudart.so": "cuda-cudart-13-0",
    "libcublas.so": "libcublas-13-0",
    "libcublasLt.so": "libcublas-13-0",
    "libnccl.so": "libnccl2",
}
ALLOWED_EXTRA = {"ca-certificates"}


def parse(path):
    """Stages: a list of {name, base, instructions: [(KEYWORD, text)]}, with continuations."""
    with open(path) as f:
        text = re.sub(r"\\\n", " ", f.read())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            stages.append({"base": words[0],
                           "name": words[2] if len(words) > 2 and words[1].upper() == "AS" else None,
                           "instructions": []})
        else:
            stages[-1]["instructions"].append((keyword, rest.strip()))
    return stages


def apt_installs(stage):
    """What the stage's RUNs leave installed: apt-get install, less apt-get purge/remove."""
    packages, removed = [], set()
    for keyword, text in stage["instructions"]:
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", text):
            words = shlex.split(command)
            if words[:2] == ["apt-get", "install"]:
                packages += [w for w in words[2:] if not w.startswith("-")]
            elif words[:2] in (["apt-get", "purge"], ["apt-get", "remove"]):
                removed |= {w for w in words[2:] if not w.startswith("-")}
    return [p for p in packages if p not in removed]


def chain(stages, stage):
    """`stage` and the stages it is built FROM (by name), innermost last."""
    names = {s["name"]: s for s in stages if s["name"]}
    out = [stage]
    while out[-1]["base"] in names:
        out.append(names[out[-1]["base"]])
    return out


@functools.lru_cache(maxsize=None)
def closure_of(packages):
    if not packages:
        return frozenset()
    out = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
         "--no-breaks", "--no-replaces", "--no-enhances"] + list(packages),
        capture_output=True, text=True).stdout
    found = {line.strip() for line in out.splitlines() if not line.startswith(" ")}
    found |= {m.group(1) for m in re.finditer(r"^\s+(?:Pre)?Depends: <?([^\s>]+)>?", out, re.M)}
    return frozenset(p.split(":")[0] for p in found)


def closure(packages):
    return closure_of(tuple(sorted(set(packages))))


def required_packages():
    """What a debian:12-slim image holds: the packages of priority required."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Priority}\n"],
                         capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.endswith(" required")}


@functools.lru_cache(maxsize=None)
def owner(path):
    real = os.path.realpath(path)
    for candidate in (real, re.sub(r"^/usr", "", real), "/usr" + real):
        result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout.split(":")[0]
    return None


def libraries(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = {}
    for line in out.splitlines():
        match = re.match(r"\s*(\S+) => (\S+)", line)
        if match:
            libs[match.group(1)] = match.group(2)
        elif "not found" in line:
            raise AssertionError(f"{binary}: {line.strip()}")
    return libs


def binary_flags(binary):
    out = subprocess.run([binary, "--helpfull"], capture_output=True, text=True).stdout
    return set(re.findall(r"^\s+--([a-z_0-9]+) ", out, flags=re.M))


def k8s_containers(k8s_base):
    containers = {}
    for name in os.listdir(k8s_base):
        with open(os.path.join(k8s_base, name)) as f:
            for doc in yaml.safe_load_all(f):
                if doc and doc.get("kind") == "Deployment":
                    for c in doc["spec"]["template"]["spec"]["containers"]:
                        containers[c["image"]] = c
    return containers


def check(dockerfile, binary_path, containers, base_packages, failures):
    name = os.path.basename(dockerfile)
    binary, target, image = ROLES[name]
    stages = parse(dockerfile)
    final = stages[-1]
    builds = [s for s in stages if any(k == "RUN" and "tools/setup.sh" in t and
                                       f"bazel build" in t and target in t
                                       for k, t in s["instructions"])]
    if len(stages) < 2 or not builds or final in builds:
        failures.append(f"{name}: needs a build stage (tools/setup.sh, bazel build {target}) and "
                        "a separate runtime stage")
    runtime = chain(stages, final)
    if runtime[-1]["base"] != "debian:12-slim":
        failures.append(f"{name}: the runtime stage should start from debian:12-slim")
    instructions = [i for s in reversed(runtime) for i in s["instructions"]]
    copies = [t for k, t in instructions if k == "COPY" and "--from=build" in t]
    copied = [w for t in copies for w in t.split()[1:-1]]
    installed = [p for s in runtime for p in apt_installs(s)]
    provided = closure(installed) | base_packages

    used = set()
    for soname, path in libraries(binary_path).items():
        if path.startswith("/usr/local/cuda"):
            package = NVIDIA_PACKAGES.get(soname.split(".so")[0] + ".so")
            if any(os.path.basename(c) == soname for c in copied):
                continue
            if package in installed:
                used.add(package)
                continue
            failures.append(f"{name}: {binary} needs {soname} (CUDA), neither copied nor installed")
            continue
        package = owner(path)
        if package is None:
            failures.append(f"{name}: {binary} needs {path}, which no Debian package owns")
        elif package not in provided:
            failures.append(f"{name}: {binary} needs {soname} from {package}, not installed")
        else:
            used.add(package)
    for package in installed:
        if package not in used and package not in ALLOWED_EXTRA and \
                package not in NVIDIA_PACKAGES.values():
            failures.append(f"{name}: installs {package}, which {binary} does not load")

    command = containers.get(image, {}).get("command", [None])[0]
    if command is None:
        failures.append(f"{name}: k8s/base runs no container from image {image}")
    elif not any(t.split()[-1] == command and t.split()[-2].endswith(binary)
                 for t in copies):
        failures.append(f"{name}: the binary is not copied from the build stage to {command}")
    users = [t for k, t in instructions if k == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        failures.append(f"{name}: the runtime stage must run as a non-root USER")
    exposed = {int(p) for k, t in instructions if k == "EXPOSE" for p in t.split()}
    wanted = {p["containerPort"] for p in containers.get(image, {}).get("ports", [])}
    if exposed != wanted:
        failures.append(f"{name}: EXPOSEs {sorted(exposed)}, the manifests use {sorted(wanted)}")
    flags = binary_flags(binary_path)
    entrypoint = [t for k, t in instructions if k == "ENTRYPOINT"]
    if not entrypoint or yaml.safe_load(entrypoint[-1]) != [command]:
        failures.append(f"{name}: ENTRYPOINT should be [{command}]")
    for k, t in instructions:
        if k == "CMD":
            for arg in yaml.safe_load(t):
                if arg.split("=")[0].lstrip("-") not in flags:
                    failures.append(f"{name}: CMD passes {arg}, which {binary} does not have")
    for k, t in instructions:
        if k in ("COPY", "ADD") and re.search(r"safetensors|tekken\.json|params\.json|/models", t):
            failures.append(f"{name}: copies model files into the image: {t}")


def main():
    docker_dir, k8s_base = sys.argv[1:3]
    binaries = {os.path.basename(b): b for b in sys.argv[3:]}
    containers = k8s_containers(k8s_base)
    base_packages = closure(required_packages())
    failures = []
    for name, (binary, _, _) in sorted(ROLES.items()):
        path = os.path.join(docker_dir, name)
        if not os.path.exists(path):
            failures.append(f"missing {path}")
            continue
        check(path, binaries[binary], containers, base_packages, failures)
    for failure in failures:
        print("FAIL:", failure)
    print(f"checked {len(ROLES)} Dockerfiles: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
