#!/usr/bin/env python3
"""Checks the deployment material in deploy/.

    scripts/check-manifests.py [--rollbackd BIN] [--no-kubectl] [--deploy DIR]

1. Every YAML file parses (all documents), and so does every YAML or TOML
   file embedded in a ConfigMap.
2. Every kustomization builds. With `kubectl` on PATH it is built by
   `kubectl kustomize` and, as a check of the check, also by the structural
   build below, and the two must yield the same objects. Without kubectl (or
   with --no-kubectl) only the structural build runs: it resolves
   `resources` (files and directories, recursively), `namespace`, `labels`
   (with `includeSelectors`), `configMapGenerator` and `secretGenerator`
   (`files` and `literals`, with kustomize's content-hash name suffix left
   out) and `patches` that delete an object (`$patch: delete`); any other
   kustomization field is reported as unsupported rather than ignored.
3. The built objects (and the sidecar example) fit together the way a
   cluster needs them to: selectors select the pods; the Service targets a
   container port and the ServiceMonitor a Service port; the probes hit
   /healthz and /readyz on the port rollbackd listens on, which must not be a
   loopback address (kubelet probes the pod IP); the --config file is in a
   mounted ConfigMap and (with --rollbackd) passes `rollbackd check-config`;
   no Secret holds a value (tokens are the operator's, created outside
   the manifests) and every secretKeyRef to a Secret in the build names
   its key; requests, limits and a non-root security context are set;
   every alert rule has an expression.
4. The Collector's kafka exporter writes the topics and encoding the
   in-cluster rollbackd config reads, to the same brokers.
5. The gate's examples (deploy/kubernetes/gate) call rollbackd's Service
   the way the controllers must: the Argo Rollouts AnalysisTemplate's web
   metric GETs /v1/gate with the service, environment and version args,
   reads `{$.verdict}` with "pass" as success and "fail" as failure, keeps
   measuring on "wait" (inconclusiveLimit covers every measurement), and
   takes its bearer token from a secretKeyRef; the Flagger Canary's
   webhooks POST to /v1/gate/flagger with a metadata.type equal to their
   own type (one of the gate's), and a token that is a placeholder to
   substitute, never a value.

Needs PyYAML (scripts/deps.sh installs it into the test virtualenv). Exits 1
listing every problem found.
"""

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
KUBE = os.path.join(DEPLOY, "kubernetes")

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "configMapGenerator",
    "secretGenerator",
    "patches",
}

problems = []


def problem(where, what):
    problems.append(f"{os.path.relpath(where, ROOT) if os.path.isabs(where) else where}: {what}")


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# 1. Every YAML file parses.
def parse_all():
    count = 0
    for dirpath, _, names in os.walk(DEPLOY):
        for name in sorted(names):
            if not name.endswith((".yaml", ".yml")):
                continue
            path = os.path.join(dirpath, name)
            try:
                count += len(load_docs(path))
            except yaml.YAMLError as e:
                problem(path, f"YAML does not parse: {e}")
    return count


# 2. Structural kustomize build.
def key(obj):
    return (obj.get("kind"), obj.get("metadata", {}).get("name"))


def generated(kind, gen, base_dir, where):
    data = {}
    for item in gen.get("files", []):
        k, _, f = item.partition("=") if "=" in item else (os.path.basename(item), "", item)
        path = os.path.join(base_dir, f)
        if not os.path.isfile(path):
            problem(where, f"{kind} generator {gen.get('name')}: file {f} does not exist")
            continue
        with open(path, encoding="utf-8") as fh:
            data[k] = fh.read()
    for item in gen.get("literals", []):
        k, sep, v = item.partition("=")
        if not sep:
            problem(where, f"{kind} generator {gen.get('name')}: literal {item!r} is not KEY=VALUE")
        data[k] = v
    unknown = set(gen) - {"name", "files", "literals", "options", "behavior"}
    if unknown:
        problem(where, f"{kind} generator fields not supported by the structural build: {sorted(unknown)}")
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": gen["name"]}, "data": data}
    if kind == "Secret":
        obj["type"] = "Opaque"
    return obj


def add_labels(obj, pairs, selectors):
    obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    if not selectors:
        return
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"):
        spec.setdefault("selector", {})
        ml = spec["selector"].get("matchLabels") or {}
        ml.update(pairs)
        spec["selector"]["matchLabels"] = ml
        spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    elif kind == "Service":
        sel = spec.get("selector") or {}
        sel.update(pairs)
        spec["selector"] = sel
    elif kind == "PodDisruptionBudget":
        spec.setdefault("selector", {})
        ml = spec["selector"].get("matchLabels") or {}
        ml.update(pairs)
        spec["selector"]["matchLabels"] = ml


def structural_build(directory, seen=()):
    path = os.path.join(directory, "kustomization.yaml")
    if directory in seen:
        problem(path, "kustomization cycle")
        return []
    if not os.path.isfile(path):
        problem(directory, "no kustomization.yaml")
        return []
    try:
        k = load_docs(path)[0]
    except (yaml.YAMLError, IndexError) as e:
        problem(path, f"kustomization does not parse: {e}")
        return []
    unsupported = set(k) - SUPPORTED_FIELDS
    if unsupported:
        problem(path, f"fields not supported by the structural build: {sorted(unsupported)}")
    objs = []
    for r in k.get("resources", []):
        target = os.path.normpath(os.path.join(directory, r))
        if os.path.isdir(target):
            objs.extend(structural_build(target, seen + (directory,)))
        elif os.path.isfile(target):
            try:
                objs.extend(copy.deepcopy(load_docs(target)))
            except yaml.YAMLError:
                pass  # reported by parse_all
        else:
            problem(path, f"resource {r} does not exist")
    for gen in k.get("configMapGenerator", []):
        objs.append(generated("ConfigMap", gen, directory, path))
    for gen in k.get("secretGenerator", []):
        objs.append(generated("Secret", gen, directory, path))
    for p in k.get("patches", []):
        body = yaml.safe_load(p.get("patch", "")) if "patch" in p else None
        if not isinstance(body, dict) or body.get("$patch") != "delete":
            problem(path, "only `$patch: delete` patches are supported by the structural build")
            continue
        t = p.get("target", {})
        kind, name = t.get("kind", body.get("kind")), t.get("name", body["metadata"]["name"])
        before = len(objs)
        objs = [o for o in objs if key(o) != (kind, name)]
        if len(objs) == before:
            problem(path, f"patch deletes {kind}/{name}, which is not there")
    for entry in k.get("labels", []):
        for o in objs:
            add_labels(o, entry.get("pairs", {}), entry.get("includeSelectors", False))
    if "namespace" in k:
        for o in objs:
            if o.get("kind") not in CLUSTER_SCOPED:
                o.setdefault("metadata", {})["namespace"] = k["namespace"]
    seen_keys = set()
    for o in objs:
        if key(o) in seen_keys:
            problem(path, f"{key(o)} defined twice")
        seen_keys.add(key(o))
    return objs


HASH = re.compile(r"-[a-z0-9]{10}$")


def unhash(name):
    return HASH.sub("", name) if isinstance(name, str) else name


def kubectl_build(directory):
    out = subprocess.run(
        ["kubectl", "kustomize", directory], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        problem(directory, f"kubectl kustomize failed: {out.stderr.strip()}")
        return None
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def summary(objs, generated_kinds=("ConfigMap", "Secret")):
    return sorted(
        (o["kind"], unhash(o["metadata"]["name"]) if o["kind"] in generated_kinds else o["metadata"]["name"],
         o["metadata"].get("namespace"))
        for o in objs
    )


# 3. The objects fit together.
def subset(small, big):
    return bool(small) and all(big.get(k) == v for k, v in small.items())


def find(objs, kind, name):
    for o in objs:
        if o.get("kind") == kind and unhash(o["metadata"]["name"]) == unhash(name):
            return o
    return None


def pod_specs(objs):
    for o in objs:
        if o.get("kind") in ("Deployment", "DaemonSet", "StatefulSet"):
            t = o.get("spec", {}).get("template", {})
            yield o, t.get("metadata", {}).get("labels", {}) or {}, t.get("spec", {})
        elif o.get("kind") == "Pod":
            yield o, o["metadata"].get("labels", {}) or {}, o.get("spec", {})


def check_config(where, text, rollbackd):
    if not rollbackd:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
    try:
        # In the cluster the tokens come from the operator's Secret.
        env = dict(os.environ, ROLLBACKD_WEBHOOK_TOKEN="from-the-secret", ROLLBACKD_ADMIN_TOKEN="from-the-secret")
        out = subprocess.run(
            [rollbackd, "check-config", "--config", f.name], capture_output=True, text=True, check=False, env=env
        )
        if out.returncode != 0:
            problem(where, f"rollbackd check-config: {out.stderr.strip()}")
        return out.stdout
    finally:
        os.unlink(f.name)


def check_pod(where, owner, labels, spec, objs, rollbackd):
    name = f"{owner['kind']}/{owner['metadata']['name']}"
    if owner["kind"] != "Pod":
        sel = owner.get("spec", {}).get("selector", {}).get("matchLabels") or {}
        if not subset(sel, labels):
            problem(where, f"{name}: selector {sel} does not select its pod template labels {labels}")
    containers = {c["name"]: c for c in spec.get("containers", [])}
    all_ports = {
        p.get("name"): p["containerPort"] for c in containers.values() for p in c.get("ports", [])
    }
    c = containers.get("rollbackd") or containers.get("executor")
    if c is None:
        problem(where, f"{name}: no container named rollbackd or executor")
        return
    # The reference executor (`rollbackd execute`) serves no HTTP: no probes.
    executor = (c.get("args") or [""])[0] == "execute"
    sa = spec.get("serviceAccountName")
    if sa and not find(objs, "ServiceAccount", sa):
        problem(where, f"{name}: serviceAccountName {sa} is not defined")
    pod_sc = spec.get("securityContext", {}) or {}
    c_sc = c.get("securityContext", {}) or {}
    if not (c_sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))):
        problem(where, f"{name}: rollbackd does not run with runAsNonRoot: true")
    res = c.get("resources", {})
    for part in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in (res.get(part) or {}):
                problem(where, f"{name}: resources.{part}.{r} missing")
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}

    def port_of(p):
        return ports.get(p) if isinstance(p, str) else p

    # The config file, from a mounted ConfigMap.
    args = c.get("args", [])
    cfg_path = args[args.index("--config") + 1] if "--config" in args else None
    listen_port = None
    if cfg_path is None:
        problem(where, f"{name}: rollbackd has no --config argument")
    else:
        mounts = {m["mountPath"].rstrip("/"): m["name"] for m in c.get("volumeMounts", [])}
        vol = mounts.get(os.path.dirname(cfg_path))
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        cm_name = (volumes.get(vol, {}).get("configMap") or {}).get("name")
        cm = find(objs, "ConfigMap", cm_name) if cm_name else None
        text = (cm or {}).get("data", {}).get(os.path.basename(cfg_path))
        if text is None:
            problem(where, f"{name}: --config {cfg_path} is not a key of a mounted ConfigMap")
        else:
            cfg = tomllib.loads(text)
            check_config(f"{where} ({name} config)", text, rollbackd)
            listen = cfg.get("http", {}).get("listen", "127.0.0.1:9464")
            host, _, port = listen.rpartition(":")
            listen_port = int(port)
            if not executor and (host.startswith("127.") or host in ("localhost", "[::1]")):
                problem(where, f"{name}: http.listen {listen} is loopback; kubelet probes the pod IP")
            if executor and not cfg.get("executor", {}).get("templates"):
                problem(where, f"{name}: the executor's config has no [executor.templates]")
    probes = () if executor else (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"))
    for probe, path in probes:
        get = (c.get(probe) or {}).get("httpGet")
        if not get:
            problem(where, f"{name}: no {probe} httpGet")
            continue
        if get.get("path") != path:
            problem(where, f"{name}: {probe} path {get.get('path')}, want {path}")
        port = port_of(get.get("port"))
        if port is None or (listen_port is not None and port != listen_port):
            problem(where, f"{name}: {probe} port {get.get('port')} is not the listen port {listen_port}")
    for e in c.get("env", []):
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            # A Secret outside the build is the operator's (tokens are never
            # written in the manifests); one inside must hold the key.
            s = find(objs, "Secret", ref["name"])
            keys = set((s or {}).get("data", {}) or {}) | set((s or {}).get("stringData", {}) or {})
            if s is not None and ref["key"] not in keys:
                problem(where, f"{name}: env {e['name']} refers to {ref['name']}/{ref['key']}, which is not there")
    return all_ports


def check_set(where, objs, rollbackd):
    for o in objs:
        for f in ("apiVersion", "kind"):
            if not o.get(f):
                problem(where, f"an object without {f}")
        if o.get("kind") == "Secret" and (o.get("data") or o.get("stringData")):
            name = o.get("metadata", {}).get("name")
            problem(where, f"Secret/{name} holds values: tokens belong in a Secret the operator creates, not in the manifests")
        if not o.get("metadata", {}).get("name"):
            problem(where, f"a {o.get('kind')} without metadata.name")
    namespaces = {o["metadata"].get("namespace") for o in objs if o.get("kind") not in CLUSTER_SCOPED}
    if len(namespaces) > 1:
        problem(where, f"objects in several namespaces {sorted(map(str, namespaces))}: pods see only their own")
    pods = list(pod_specs(objs))
    ports = {}
    for owner, labels, spec in pods:
        ports.update(check_pod(where, owner, labels, spec, objs, rollbackd) or {})
    for o in objs:
        kind, name, spec = o["kind"], o["metadata"]["name"], o.get("spec", {})
        if kind == "Service":
            sel = spec.get("selector") or {}
            if not any(subset(sel, labels) for _, labels, _ in pods):
                problem(where, f"Service/{name}: selector {sel} selects no pod")
            for p in spec.get("ports", []):
                t = p.get("targetPort", p.get("port"))
                if (isinstance(t, str) and t not in ports) or (isinstance(t, int) and t not in ports.values()):
                    problem(where, f"Service/{name}: targetPort {t} is not a container port")
        elif kind == "ServiceMonitor":
            sel = spec.get("selector", {}).get("matchLabels") or {}
            svcs = [s for s in objs if s["kind"] == "Service" and subset(sel, s["metadata"].get("labels", {}))]
            if not svcs:
                problem(where, f"ServiceMonitor/{name}: selector {sel} selects no Service")
            names = {p.get("name") for s in svcs for p in s.get("spec", {}).get("ports", [])}
            for ep in spec.get("endpoints", []):
                if ep.get("port") not in names:
                    problem(where, f"ServiceMonitor/{name}: port {ep.get('port')} is not a Service port")
        elif kind == "PodDisruptionBudget":
            sel = spec.get("selector", {}).get("matchLabels") or {}
            owners = [w for w, labels, _ in pods if subset(sel, labels)]
            if not owners:
                problem(where, f"PodDisruptionBudget/{name}: selector {sel} selects no pod")
            if any(w["kind"] == "DaemonSet" for w in owners):
                problem(where, f"PodDisruptionBudget/{name}: selects DaemonSet pods, which drains do not evict")
        elif kind == "ClusterRoleBinding":
            for sub in o.get("subjects", []):
                if sub.get("kind") == "ServiceAccount":
                    sa = find(objs, "ServiceAccount", sub.get("name"))
                    if not sa or sa["metadata"].get("namespace") != sub.get("namespace"):
                        problem(where, f"ClusterRoleBinding/{name}: subject {sub} is not a ServiceAccount here")
            ref = o.get("roleRef", {})
            if not find(objs, ref.get("kind"), ref.get("name")):
                problem(where, f"ClusterRoleBinding/{name}: roleRef {ref} is not defined here")
        elif kind == "PrometheusRule":
            rules = [r for g in spec.get("groups", []) for r in g.get("rules", [])]
            if not rules:
                problem(where, f"PrometheusRule/{name}: no rules")
            for r in rules:
                if not r.get("expr") or not (r.get("alert") or r.get("record")):
                    problem(where, f"PrometheusRule/{name}: rule without alert/record or expr: {r}")
        elif kind == "ConfigMap":
            for k, v in (o.get("data") or {}).items():
                try:
                    if k.endswith((".yaml", ".yml")):
                        yaml.safe_load(v)
                    elif k.endswith(".toml"):
                        tomllib.loads(v)
                except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
                    problem(where, f"ConfigMap/{name}: {k} does not parse: {e}")


# 4. The Collector writes what rollbackd reads.
def check_collector(rollbackd):
    path = os.path.join(DEPLOY, "otel-collector", "collector.yaml")
    col = load_docs(path)[0]
    kafka = col["exporters"]["kafka"]
    with open(os.path.join(KUBE, "base", "rollbackd.toml"), encoding="utf-8") as f:
        text = f.read()
    cfg = tomllib.loads(text)
    if sorted(kafka.get("brokers", [])) != sorted(cfg["kafka"]["brokers"].split(",")):
        problem(path, f"brokers {kafka.get('brokers')} are not rollbackd's {cfg['kafka']['brokers']}")
    if not rollbackd:
        return
    out = check_config(path, text, rollbackd) or ""
    line = next((l for l in out.splitlines() if l.startswith("topics: ")), "")
    topics = dict(kv.split("=", 1) for kv in line[len("topics: "):].split())
    for signal, topic_key in (("traces", "otlp_spans"), ("metrics", "otlp_metrics")):
        got = kafka.get(signal, {})
        if got.get("topic") != topics.get(topic_key):
            problem(path, f"{signal} topic {got.get('topic')} is not rollbackd's {topic_key} {topics.get(topic_key)}")
        if got.get("encoding") != topics.get("otlp_encoding"):
            problem(path, f"{signal} encoding {got.get('encoding')} is not rollbackd's {topics.get('otlp_encoding')}")
    for name, pipeline in col["service"]["pipelines"].items():
        if "kafka" not in pipeline.get("exporters", []):
            problem(path, f"pipeline {name} does not export to kafka")


GATE_HOOKS = {"confirm-rollout", "pre-rollout", "confirm-traffic-increase", "rollout", "confirm-promotion", "rollback"}
TOKEN_PLACEHOLDER = "${ROLLBACKD_WEBHOOK_TOKEN}"


def service_urls():
    """The URL prefixes that reach rollbackd's Service of the base build."""
    base = os.path.join(KUBE, "base")
    objs = structural_build(base)
    urls = set()
    for o in objs:
        if o.get("kind") != "Service":
            continue
        name = o["metadata"]["name"]
        ns = o["metadata"].get("namespace", "default")
        for port in o.get("spec", {}).get("ports", []):
            for host in (f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"):
                urls.add(f"http://{host}:{port['port']}")
    return urls


def check_analysis_template(where, t, urls):
    args = {a["name"]: a for a in t.get("spec", {}).get("args", [])}
    webs = [m for m in t.get("spec", {}).get("metrics", []) if "web" in m.get("provider", {})]
    if not webs:
        problem(where, "AnalysisTemplate has no web metric")
    for m in webs:
        web = m["provider"]["web"]
        url = web.get("url", "")
        base, _, query = url.partition("?")
        if not any(base == u + "/v1/gate" for u in urls):
            problem(where, f"metric {m.get('name')}: url {url!r} is not /v1/gate on rollbackd's Service ({sorted(urls)})")
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        for q in ("service", "environment", "version"):
            arg = re.fullmatch(r"\{\{\s*args\.([\w-]+)\s*\}\}", params.get(q, ""))
            if not arg or arg.group(1) not in args:
                problem(where, f"metric {m.get('name')}: query {q} is not one of the template's args")
        if web.get("method", "GET") != "GET":
            problem(where, f"metric {m.get('name')}: the gate is a GET")
        if web.get("jsonPath") != "{$.verdict}":
            problem(where, f"metric {m.get('name')}: jsonPath must be {{$.verdict}}")
        if m.get("successCondition") != 'result == "pass"' or m.get("failureCondition") != 'result == "fail"':
            problem(where, f"metric {m.get('name')}: successCondition must be result == \"pass\" and failureCondition result == \"fail\"")
        count = m.get("count")
        if count is None or int(m.get("inconclusiveLimit", 0)) < int(count):
            problem(where, f"metric {m.get('name')}: a count, and an inconclusiveLimit of at least it (\"wait\" is measured again)")
        auth = [h for h in web.get("headers", []) if h.get("key", "").lower() == "authorization"]
        token = re.fullmatch(r"Bearer \{\{\s*args\.([\w-]+)\s*\}\}", auth[0].get("value", "")) if auth else None
        ref = args.get(token.group(1), {}).get("valueFrom", {}).get("secretKeyRef", {}) if token else {}
        if not ref.get("name") or not ref.get("key"):
            problem(where, f"metric {m.get('name')}: the Authorization header must be Bearer {{{{args.X}}}} with X from a secretKeyRef naming its key")


def check_canary(where, c, urls):
    hooks = [w for w in c.get("spec", {}).get("analysis", {}).get("webhooks", []) if w.get("url", "").endswith("/v1/gate/flagger")]
    types = set()
    for w in hooks:
        name, meta = w.get("name"), w.get("metadata") or {}
        if w["url"][: -len("/v1/gate/flagger")] not in urls:
            problem(where, f"webhook {name}: url {w['url']!r} is not rollbackd's Service")
        if w.get("type") not in GATE_HOOKS or meta.get("type") != w.get("type"):
            problem(where, f"webhook {name}: metadata.type must repeat its type, one of {sorted(GATE_HOOKS)}")
        if meta.get("token") != TOKEN_PLACEHOLDER:
            problem(where, f"webhook {name}: metadata.token must be the placeholder {TOKEN_PLACEHOLDER} (no token in the manifests)")
        if not meta.get("service") or not meta.get("environment"):
            problem(where, f"webhook {name}: metadata must name the service and environment")
        types.add(w.get("type"))
    for needed in ("rollout", "confirm-promotion"):
        if needed not in types:
            problem(where, f"no {needed} webhook calling the gate")


def check_gate():
    d = os.path.join(KUBE, "gate")
    urls = service_urls()
    kinds = {}
    for name in sorted(os.listdir(d)):
        path = os.path.join(d, name)
        for obj in load_docs(path):
            kind = obj.get("kind")
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind == "AnalysisTemplate":
                check_analysis_template(path, obj, urls)
            elif kind == "Canary":
                check_canary(path, obj, urls)
            else:
                problem(path, f"unexpected {kind}")
    for kind in ("AnalysisTemplate", "Canary"):
        if not kinds.get(kind):
            problem(d, f"no {kind}")


def main():
    ap = argparse.ArgumentParser(description="Checks the deployment material in deploy/.")
    ap.add_argument("--rollbackd", help="a rollbackd binary, to run check-config on embedded configs")
    ap.add_argument("--no-kubectl", action="store_true", help="only the structural build")
    ap.add_argument("--deploy", help="the deploy/ directory to check (default: this checkout's)")
    args = ap.parse_args()
    if args.deploy:
        global ROOT, DEPLOY, KUBE
        DEPLOY = os.path.abspath(args.deploy)
        ROOT = os.path.dirname(DEPLOY)
        KUBE = os.path.join(DEPLOY, "kubernetes")

    print(f"parsed {parse_all()} YAML documents")
    kubectl = shutil.which("kubectl") if not args.no_kubectl else None
    for name in sorted(os.listdir(KUBE)):
        d = os.path.join(KUBE, name)
        if not os.path.isfile(os.path.join(d, "kustomization.yaml")):
            continue
        objs = structural_build(d)
        how = "structural build"
        if kubectl:
            built = kubectl_build(d)
            if built is not None:
                if summary(built) != summary(objs):
                    problem(d, f"kubectl kustomize and the structural build differ:\n  {summary(built)}\n  {summary(objs)}")
                objs, how = built, "kubectl kustomize (structural build agrees)"
        check_set(d, objs, args.rollbackd)
        print(f"{os.path.relpath(d, ROOT)}: {how}: " + ", ".join(f"{k}/{n}" for k, n, _ in summary(objs)))
    sidecar = os.path.join(KUBE, "sidecar", "collector-with-rollbackd.yaml")
    check_set(sidecar, load_docs(sidecar), args.rollbackd)
    print(f"{os.path.relpath(sidecar, ROOT)}: checked")
    check_collector(args.rollbackd)
    print("deploy/otel-collector/collector.yaml: checked")
    check_gate()
    print("deploy/kubernetes/gate: checked")
    if problems:
        print(f"\n{len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        sys.exit(1)
    print("manifests OK")


if __name__ == "__main__":
    main()
