#!/usr/bin/env bash
# deploy/ as `kubectl apply -k deploy/` would send it: the kustomize base
# renders, and what it renders is what an operator of a GPU cluster needs
# (the objects, the agent's priority, tolerations, Downward API, probes,
# host paths, least-privilege RBAC), the examples use the names Syncbit
# writes, and the CRD accepts the example Dataset. The RBAC is also what
# test_kube runs Syncbit under, so a call it forbids fails there.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$HERE/../.." && pwd)

if ! command -v kubectl >/dev/null; then
	bad "kubectl is installed (tests/deps.sh installs kubernetes-client)"
	finish
	exit 1
fi
check "kubectl kustomize deploy/ renders" bash -c "kubectl kustomize '$ROOT/deploy' >'$T/all.yaml'"

# q DESCRIPTION EXPR: EXPR over o (kind/name -> object) and docs is true.
q() {
	local d=$1 expr=$2
	check "$d" python3 - "$T/all.yaml" "$expr" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
o = {d["kind"] + "/" + d["metadata"]["name"]: d for d in docs}
def container(kind, name, c=0):
    return o[kind + "/" + name]["spec"]["template"]["spec"]["containers"][c]
def rules(kind, name):
    return [(g, r, v) for x in o[kind + "/" + name]["rules"] for g in x["apiGroups"] for r in x["resources"] for v in x["verbs"]]
r = eval(sys.argv[2])
if not r:
    print("false:", sys.argv[2])
sys.exit(0 if r else 1)
EOF
}

q "every object is there" 'all(k in o for k in ["Namespace/syncbit", "CustomResourceDefinition/datasets.syncbit.io", "ServiceAccount/syncbit-agent", "ServiceAccount/syncbit-scheduler", "ClusterRole/syncbit-agent", "ClusterRole/syncbit-scheduler", "StatefulSet/syncbit-scheduler", "Service/syncbit-scheduler", "DaemonSet/syncbit-agent"])'
q "namespaced objects land in syncbit" 'all(d["metadata"].get("namespace") == "syncbit" for d in docs if d["kind"] in ("StatefulSet", "DaemonSet", "Service", "ServiceAccount", "Role", "RoleBinding"))'
q "the agent is system-node-critical" 'o["DaemonSet/syncbit-agent"]["spec"]["template"]["spec"]["priorityClassName"] == "system-node-critical"'
q "the agent tolerates GPU nodes and its own taint" '{t["key"] for t in o["DaemonSet/syncbit-agent"]["spec"]["template"]["spec"]["tolerations"]} >= {"nvidia.com/gpu", "syncbit.io/syncing"}'
q "NODE_NAME and POD_IP come from the Downward API" '{e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container("DaemonSet", "syncbit-agent")["env"] if "valueFrom" in e and "fieldRef" in e["valueFrom"]}.items() >= {"NODE_NAME": "spec.nodeName", "POD_IP": "status.podIP"}.items()'
q "liveness /healthz, readiness /readyz" 'container("DaemonSet", "syncbit-agent")["livenessProbe"]["httpGet"]["path"] == "/healthz" and container("DaemonSet", "syncbit-agent")["readinessProbe"]["httpGet"]["path"] == "/readyz"'
q "the agent has resource requests" '"cpu" in container("DaemonSet", "syncbit-agent")["resources"]["requests"]'
q "cache and datasets share one host path (links, not copies)" '[v["hostPath"]["path"] for v in o["DaemonSet/syncbit-agent"]["spec"]["template"]["spec"]["volumes"] if "hostPath" in v and v["name"] == "data"] == ["/var/lib/syncbit"] and "--data=/var/lib/syncbit/cache" in container("DaemonSet", "syncbit-agent")["args"] and "--target=/var/lib/syncbit/datasets" in container("DaemonSet", "syncbit-agent")["args"]'
q "the join token is mounted 0400 from the Secret the scheduler creates" '[v["secret"] for v in o["DaemonSet/syncbit-agent"]["spec"]["template"]["spec"]["volumes"] if "secret" in v] == [{"secretName": "syncbit-join-token", "defaultMode": 0o400}] and "--token-secret=syncbit-join-token" in container("StatefulSet", "syncbit-scheduler")["args"]'
q "the agent dials the scheduler's Service" '"--scheduler=syncbit-scheduler.syncbit.svc:7400" in container("DaemonSet", "syncbit-agent")["args"]'
q "one scheduler, its state on a PVC, not root" 'o["StatefulSet/syncbit-scheduler"]["spec"]["replicas"] == 1 and o["StatefulSet/syncbit-scheduler"]["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data" and o["StatefulSet/syncbit-scheduler"]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]'
q "the agent may not write nodes" 'not [x for x in rules("ClusterRole", "syncbit-agent") if x[1] == "nodes" and x[2] not in ("get", "list", "watch")]'
q "the agent writes only pods/status (patch)" '[x for x in rules("ClusterRole", "syncbit-agent") if x[2] not in ("get", "list", "watch")] == [("", "pods/status", "patch")]'
q "the scheduler patches nodes and writes dataset status, nothing wider" 'set(rules("ClusterRole", "syncbit-scheduler")) == {("", "nodes", v) for v in ("get", "list", "watch", "patch")} | {("syncbit.io", "datasets", v) for v in ("get", "list", "watch")} | {("syncbit.io", "datasets/status", v) for v in ("get", "patch", "update")}'
q "no wildcard anywhere in RBAC" 'not [x for d in docs if d["kind"] in ("ClusterRole", "Role") for x in d["rules"] if "*" in x["verbs"] + x["resources"] + x["apiGroups"]]'
q "the CRD is datasets.syncbit.io, cluster-scoped, with a status subresource" 'o["CustomResourceDefinition/datasets.syncbit.io"]["spec"]["scope"] == "Cluster" and o["CustomResourceDefinition/datasets.syncbit.io"]["spec"]["versions"][0]["subresources"] == {"status": {}}'

# The example Dataset against the CRD's schema (required fields, types).
check "the example Dataset fits the CRD schema" python3 - "$ROOT/deploy/crd.yaml" "$ROOT/deploy/examples/dataset-llama.yaml" <<'EOF'
import sys, yaml
crd = yaml.safe_load(open(sys.argv[1]))
ds = yaml.safe_load(open(sys.argv[2]))
v = crd["spec"]["versions"][0]
assert ds["apiVersion"] == crd["spec"]["group"] + "/" + v["name"] and ds["kind"] == crd["spec"]["names"]["kind"]
def check(schema, val, path):
    t = schema.get("type")
    types = {"object": dict, "string": str, "integer": int, "array": list}
    assert isinstance(val, types[t]), f"{path}: not {t}"
    if t == "object":
        for r in schema.get("required", []):
            assert r in val, f"{path}.{r} required"
        for k, sub in val.items():
            if k in schema.get("properties", {}):
                check(schema["properties"][k], sub, f"{path}.{k}")
            elif "additionalProperties" in schema:
                check(schema["additionalProperties"], sub, f"{path}.{k}")
            elif path != "" or k not in ("apiVersion", "kind", "metadata"):
                raise AssertionError(f"{path}.{k}: unknown field")
check(v["schema"]["openAPIV3Schema"], {k: ds[k] for k in ds if k not in ("apiVersion", "kind", "metadata")}, "")
EOF
check "the vLLM example waits both ways for a dataset the scheduler labels" python3 - "$ROOT/deploy/examples/vllm.yaml" <<'EOF'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
s = d["spec"]["template"]["spec"]
gate = s["readinessGates"][0]["conditionType"]
name = gate.split("/", 1)[1]
assert gate.startswith("syncbit.io/")
assert s["nodeSelector"] == {gate: "ready"}
init = s["initContainers"][0]["args"]
assert init[:3] == ["ready", name, "--wait"], init
assert any(v.get("hostPath", {}).get("path") == "/var/lib/syncbit/datasets" for v in s["volumes"])
EOF
finish
