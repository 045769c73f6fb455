#!/usr/bin/env python3
"""What the rendered manifests say, and the CI checks on it. Python's standard library only.

    checks/manifests.py facts PATH           the routes, replicas, budgets, volume nodes and scrape
                                          targets, one a line (test/k3d-stub/run.sh builds its
                                          cluster from them)
    checks/manifests.py check-ingress PATH   the Ingress routes exactly `/` to log-output and
                                          `/pingpong` to pingpong, both pathType Exact, nothing else
    checks/manifests.py check-scrape PATH    every Deployment's pods carry prometheus.io/scrape "true",
                                          /path /metrics and /port = the port its server listens on
    checks/manifests.py selftest             each check fails on the manifests it must refuse

PATH is a kustomization directory (rendered with `kubectl kustomize`) or a directory or file
that `kubectl apply -f` reads. kubectl turns the YAML into JSON (`annotate --local` reads like
`apply -f` and needs no cluster), so no YAML library is needed.
"""

import json
import os
import subprocess
import sys

from selftest import expect

# The whole public surface: (path, pathType, service, service port). Everything else, probes and
# /metrics included, is reached at the pods.
ALLOWED_ROUTES = {
    ("/", "Exact", "log-output", "http"),
    ("/pingpong", "Exact", "pingpong", "http"),
}


def render(path):
    """The objects PATH holds, as kubectl reads them."""
    kustomized = os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, name))
        for name in ("kustomization.yaml", "kustomization.yml", "Kustomization")
    )
    if kustomized:
        yaml = subprocess.run(
            ["kubectl", "kustomize", path], check=True, capture_output=True, text=True
        ).stdout
        source = ["-f", "-"]
    else:
        yaml = None
        source = ["-f", path]
    out = subprocess.run(
        ["kubectl", "annotate", "--local", *source, "ci=1", "-o", "json"],
        input=yaml,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return parse_stream(out)


def parse_stream(text):
    """kubectl prints one JSON document per object, one after the other (or a List)."""
    decoder = json.JSONDecoder()
    objects, i = [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            break
        obj, i = decoder.raw_decode(text, i)
        objects.extend(obj.get("items", []) if obj.get("kind") == "List" else [obj])
    return objects


def of_kind(objects, kind):
    return [o for o in objects if o.get("kind") == kind]


def port_ref(port):
    return str(port.get("name") or port.get("number"))


def routes(objects):
    """Every (path, pathType, service, port) an Ingress routes; a default backend or a rule for
    one host is a route too, spelled so that it never equals an allowed one."""
    found = []
    for ing in of_kind(objects, "Ingress"):
        spec = ing.get("spec", {})
        default = spec.get("defaultBackend")
        if default:
            service = default.get("service", {})
            found.append(("<default backend>", "-", service.get("name", "?"), port_ref(service.get("port", {}))))
        for rule in spec.get("rules", []):
            host = rule.get("host")
            for p in rule.get("http", {}).get("paths", []):
                service = p.get("backend", {}).get("service", {})
                path = p.get("path", "")
                if host:
                    path = f"{host}{path}"
                found.append((path, p.get("pathType", "?"), service.get("name", "?"), port_ref(service.get("port", {}))))
    return found


def check_ingress(objects):
    """Problems, one a string; none when exactly the allowed routes exist."""
    found = routes(objects)
    problems = []
    for route in found:
        if route not in ALLOWED_ROUTES:
            problems.append("routes %s %s -> %s:%s, which is not one of the public routes" % route)
    for route in sorted(ALLOWED_ROUTES - set(found)):
        problems.append("does not route %s %s -> %s:%s" % route)
    if len(found) != len(set(found)):
        problems.append("routes one path twice")
    return problems


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", []) if "name" in e}


def scrape_targets(objects):
    """(deployment, port annotation, path annotation, scrape annotation) of every Deployment."""
    out = []
    for d in of_kind(objects, "Deployment"):
        ann = d.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {}) or {}
        out.append((d["metadata"]["name"], ann.get("prometheus.io/port"), ann.get("prometheus.io/path"), ann.get("prometheus.io/scrape")))
    return out


def check_scrape(objects):
    problems = []
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    if not deployments:
        problems.append("no Deployment")
    for name, port, path, scrape in scrape_targets(objects):
        if scrape != "true":
            problems.append(f"{name}: prometheus.io/scrape is {scrape!r}, expected \"true\"")
        if path != "/metrics":
            problems.append(f"{name}: prometheus.io/path is {path!r}, expected \"/metrics\"")
        containers = deployments[name]["spec"]["template"]["spec"].get("containers", [])
        # The annotated port must be a declared containerPort of the container whose server
        # listens on it (its PORT), so that a scrape reaches the process that has /metrics.
        serving = [
            c["name"]
            for c in containers
            for p in c.get("ports", [])
            if str(p.get("containerPort")) == str(port) and env_of(c).get("PORT") == str(port)
        ]
        if len(serving) != 1:
            problems.append(
                f"{name}: prometheus.io/port is {port!r}, which is not the containerPort and PORT of exactly one container"
            )
    return problems


def facts(objects):
    lines = ["route %s %s %s %s" % r for r in routes(objects)]
    for d in of_kind(objects, "Deployment"):
        lines.append(f"replicas {d['metadata']['name']} {d['spec'].get('replicas', 1)}")
    for pdb in of_kind(objects, "PodDisruptionBudget"):
        spec = pdb["spec"]
        app = spec.get("selector", {}).get("matchLabels", {}).get("app.kubernetes.io/name", "?")
        for field in ("minAvailable", "maxUnavailable"):
            if field in spec:
                lines.append(f"pdb {app} {field} {spec[field]}")
    for pv in of_kind(objects, "PersistentVolume"):
        terms = pv["spec"].get("nodeAffinity", {}).get("required", {}).get("nodeSelectorTerms", [])
        nodes = [
            v
            for t in terms
            for e in t.get("matchExpressions", [])
            if e.get("key") == "kubernetes.io/hostname" and e.get("operator") == "In"
            for v in e.get("values", [])
        ]
        lines.append(f"pv-nodes {pv['metadata']['name']} {' '.join(nodes) or '-'}")
    for name, port, path, scrape in scrape_targets(objects):
        lines.append(f"scrape {name} {scrape} {port} {path}")
    return lines


# --- self-test: each check refuses what it exists to refuse ------------------------------------


def ingress(paths, default=None):
    spec = {"rules": [{"http": {"paths": [
        {"path": p, "pathType": t, "backend": {"service": {"name": s, "port": {"name": "http"}}}}
        for p, t, s in paths
    ]}}]}
    if default:
        spec["defaultBackend"] = {"service": {"name": default, "port": {"name": "http"}}}
    return {"kind": "Ingress", "metadata": {"name": "i"}, "spec": spec}


def deployment(name, annotations, port, env_port):
    return {
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"template": {
            "metadata": {"annotations": annotations},
            "spec": {"containers": [
                {"name": "sidecar"},
                {"name": "server", "ports": [{"name": "http", "containerPort": port}],
                 "env": [{"name": "PORT", "value": env_port}]},
            ]},
        }},
    }


def selftest():
    good = [("/pingpong", "Exact", "pingpong"), ("/", "Exact", "log-output")]
    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": "3000", "prometheus.io/path": "/metrics"}
    cases = [
        ("the public routes, Exact", check_ingress([ingress(good)]), []),
        (
            "an Ingress with Prefix routes (every path under / public)",
            check_ingress([ingress([("/pingpong", "Prefix", "pingpong"), ("/", "Prefix", "log-output")])]),
            [
                "routes /pingpong Prefix -> pingpong:http, which is not one of the public routes",
                "routes / Prefix -> log-output:http, which is not one of the public routes",
                "does not route / Exact -> log-output:http",
                "does not route /pingpong Exact -> pingpong:http",
            ],
        ),
        (
            "/metrics published",
            check_ingress([ingress(good + [("/metrics", "Exact", "log-output")])]),
            ["routes /metrics Exact -> log-output:http, which is not one of the public routes"],
        ),
        (
            "/pings published in a second Ingress",
            check_ingress([ingress(good), ingress([("/pings", "Exact", "pingpong")])]),
            ["routes /pings Exact -> pingpong:http, which is not one of the public routes"],
        ),
        (
            "a default backend",
            check_ingress([ingress(good, default="log-output")]),
            ["routes <default backend> - -> log-output:http, which is not one of the public routes"],
        ),
        ("scrape annotations on the serving port", check_scrape([deployment("d", scrape, 3000, "3000")]), []),
        (
            "no annotations",
            check_scrape([deployment("d", {}, 3000, "3000")]),
            [
                "d: prometheus.io/scrape is None, expected \"true\"",
                "d: prometheus.io/path is None, expected \"/metrics\"",
                "d: prometheus.io/port is None, which is not the containerPort and PORT of exactly one container",
            ],
        ),
        (
            "a port the server does not listen on",
            check_scrape([deployment("d", scrape, 3000, "3001")]),
            ["d: prometheus.io/port is '3000', which is not the containerPort and PORT of exactly one container"],
        ),
    ]
    return expect(cases)


def main(argv):
    if argv[1:2] == ["selftest"]:
        return 1 if selftest() else 0
    if len(argv) != 3 or argv[1] not in ("facts", "check-ingress", "check-scrape"):
        print(__doc__, file=sys.stderr)
        return 2
    command, path = argv[1], argv[2]
    objects = render(path)
    if command == "facts":
        print("\n".join(facts(objects)))
        return 0
    problems = check_ingress(objects) if command == "check-ingress" else check_scrape(objects)
    for problem in problems:
        print(f"{path}: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
