#!/usr/bin/env bash
# Syncbit against a Kubernetes API server: a real scheduler and three real
# agents talk to tests/fixtures/kube_api.py (a fixture written from the
# documented API, as strict as the real server: TLS, tokens, RBAC, list and
# watch with bookmarks and 410, the patch types). The RBAC it enforces is the
# one deploy/rbac.yaml ships, so a call the shipped roles forbid fails here.
# Covers labels from Nodes, readiness gates (only after the data is complete,
# pods created later, dataset rm, agent restart, API server restart mid-watch,
# 410, a rotated token, pods of other nodes never patched), node labels and
# the managed-labels annotation, the optional taint, Dataset objects with
# their status and `kubectl wait`, and the join-token Secret.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster.sh"
ROOT=$(cd "$HERE/../.." && pwd)

KD=$T/kube
mkdir -p "$KD"
start_kube() {
	python3 "$FIXTURES/kube_api.py" --dir "$KD" --state "$T/kube-state.json" --bookmark-interval 1 \
		"$@" 2>>"$T/kube.log" &
	KPID=$!
	PIDS+=($KPID)
	for _ in $(seq 100); do
		[ -s "$KD/port" ] && curl -sf --cacert "$KD/ca.crt" "https://127.0.0.1:$(cat "$KD/port")/readyz" >/dev/null && return 0
		sleep 0.1
	done
	echo "kube_api did not start" >&2; tail "$T/kube.log" >&2; return 1
}
start_kube || { bad "API server fixture starts"; finish; exit 1; }
API=https://127.0.0.1:$(cat "$KD/port") CTL=http://127.0.0.1:$(cat "$KD/ctl-port")
ADMIN=$(cat "$KD/admin-token")

# ---- identities: one token per agent (so the audit tells them apart), one
# for the scheduler; the rules are deploy/rbac.yaml's, bound as it binds them.
python3 - "$ROOT/deploy/rbac.yaml" "$KD" <<'EOF'
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
roles = {(d["kind"], d["metadata"]["name"]): d["rules"] for d in docs if d["kind"] in ("ClusterRole", "Role")}
users = {"syncbit-agent": ["agent-n1", "agent-n2", "agent-n3"], "syncbit-scheduler": ["scheduler"]}
rbac, tokens = [], {}
for d in docs:
    if d["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
        continue
    for s in d["subjects"]:
        for u in users[s["name"]]:
            rbac.append({"subjects": ["system:serviceaccount:syncbit:" + u],
                         "rules": roles[(d["roleRef"]["kind"], d["roleRef"]["name"])]})
for sa, us in users.items():
    for u in us:
        tokens["tok-" + u] = {"user": "system:serviceaccount:syncbit:" + u, "groups": ["system:serviceaccounts"]}
        open(sys.argv[2] + "/tok-" + u, "w").write("tok-" + u + "\n")
json.dump(rbac, open(sys.argv[2] + "/rbac.json", "w"))
json.dump(tokens, open(sys.argv[2] + "/tokens.json", "w"))
EOF
# kubeconfig WHO: a kubeconfig with a tokenFile, namespace syncbit.
kubeconfig() {
	cat >"$KD/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: c
clusters:
- name: fixture
  cluster:
    server: $API
    certificate-authority: ca.crt
users:
- name: u
  user:
    tokenFile: tok-$1
contexts:
- name: c
  context: {cluster: fixture, user: u, namespace: syncbit}
EOF
	echo "$KD/$1.kubeconfig"
}

# api METHOD PATH [BODY [CONTENT-TYPE]] as the admin; the answer on stdout.
api() {
	curl -s --cacert "$KD/ca.crt" -H "Authorization: Bearer $ADMIN" -X "$1" \
		${3:+-H "Content-Type: ${4:-application/json}" --data-binary "$3"} "$API$2"
}
ctl_put() { curl -sf -X POST -H 'Content-Type: application/json' --data-binary "$1" "$CTL/ctl/objects" >/dev/null; }
# jpy PATH EXPR: evaluate EXPR with d = the object at PATH; prints it, exit 0 when truthy.
jpy() {
	api GET "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print(r); sys.exit(0 if r else 1)' "$2"
}
# gate POD TYPE: "status reason" of the pod's condition TYPE ("none" without).
gate() {
	api GET "/api/v1/namespaces/default/pods/$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for c in (d.get("status") or {}).get("conditions") or []:
    if c["type"] == sys.argv[1]:
        print(c["status"], c.get("reason", "")); break
else:
    print("none")' "$2"
}
# until_true SECONDS command...: poll every 0.2 s.
until_true() {
	local deadline=$((SECONDS + $1)); shift
	until "$@" >/dev/null 2>&1; do [ $SECONDS -ge $deadline ] && { "$@"; return 1; }; sleep 0.2; done
}
gate_is() { [ "$(gate "$1" "$2")" = "$3" ]; }
pod() { # pod NAME NODE GATE...
	local name=$1 node=$2; shift 2
	local gates=""
	for g in "$@"; do gates="$gates${gates:+,}{\"conditionType\":\"syncbit.io/$g\"}"; done
	api POST /api/v1/namespaces/default/pods "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"$name\",\"namespace\":\"default\"},\"spec\":{\"nodeName\":\"$node\",\"containers\":[{\"name\":\"c\",\"image\":\"x\"}],\"readinessGates\":[$gates]},\"status\":{\"phase\":\"Running\"}}" >/dev/null
}

ctl_put '{"items":[
 {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"syncbit"}},
 {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default"}},
 {"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","labels":{"gpu":"h100","kubernetes.io/hostname":"n1"}},"spec":{"taints":[{"key":"team","value":"a","effect":"NoSchedule"}]}},
 {"apiVersion":"v1","kind":"Node","metadata":{"name":"n2","labels":{"gpu":"h100"}},"spec":{}},
 {"apiVersion":"v1","kind":"Node","metadata":{"name":"n3","labels":{"gpu":"a10"}},"spec":{}}]}'

# ---- the origin: slow enough that a gate is seen False before True
mkdir -p "$T/www"
head -c $((6 << 20)) /dev/urandom >"$T/www/model.bin"
head -c $((1 << 20)) /dev/urandom >"$T/www/small.bin"
python3 "$FIXTURES/faulty_http.py" --dir "$T/www" >"$T/http.port" 2>"$T/http.log" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$T/http.port" ] && break; sleep 0.1; done
ORIGIN=http://127.0.0.1:$(head -1 "$T/http.port")
SLOW="$ORIGIN/m/rate=2000000,id=model/model.bin"

start_scheduler --kubeconfig "$(kubeconfig scheduler)" --token-secret syncbit-join-token --taint-until-ready ||
	{ bad "scheduler starts with --kubeconfig"; finish; exit 1; }
check "the scheduler creates the join-token Secret with its token" until_true 10 bash -c \
	"test \"\$(curl -s --cacert '$KD/ca.crt' -H 'Authorization: Bearer $ADMIN' $API/api/v1/namespaces/syncbit/secrets/syncbit-join-token | python3 -c 'import json,sys,base64; print(base64.b64decode(json.load(sys.stdin)[\"data\"][\"token\"]).decode().strip())')\" = \"\$(cat '$TOKEN')\""
# agents keep --labels role=gpu,idx=N; the Node adds gpu=...
for n in 1 2; do start_agent $n --kubeconfig "$(kubeconfig agent-n$n)" || bad "agent n$n starts with --kubeconfig"; done
# n3 runs in-cluster: the service account's files, the API at $KUBERNETES_SERVICE_HOST
mkdir -p "$KD/sa-n3"
cp "$KD/ca.crt" "$KD/sa-n3/ca.crt"; cp "$KD/tok-agent-n3" "$KD/sa-n3/token"; echo syncbit >"$KD/sa-n3/namespace"
KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=${API##*:} SYNCBIT_SERVICEACCOUNT_DIR=$KD/sa-n3 \
	start_agent 3 || bad "agent n3 starts in-cluster"
check "agent n3 found the API server in-cluster" until_true 10 grep -q 'kubernetes: in-cluster' "$T/a3.log"

pod p1 n1 model   # on n1, gated on the model
pod p3 n3 model   # on n3, whose labels the selector will not match
pod plain n2      # no syncbit gate: never touched

# node_labels N: the labels the scheduler holds for node nN.
node_labels() {
	"$SYNCBIT" node ls --scheduler "$SCHED" --token-file "$TOKEN" --json | python3 -c "
import json, sys
for n in json.load(sys.stdin)['nodes']:
    if n['name'] == 'n$1': print(','.join(sorted('%s=%s' % (k, v) for k, v in n['labels'].items())))"
}
check "agents register with their Node's labels under --labels" until_true 10 eval \
	"node_labels 1 | grep -q 'gpu=h100' && node_labels 1 | grep -q 'role=gpu' && node_labels 3 | grep -q 'gpu=a10'"
check "the Node's labels are recorded for the next start" grep -q h100 "$T/a1/node-labels.json"

"$SYNCBIT" ready model --wait --timeout 60 --socket "$T/a2.sock" >"$T/wait.out" 2>"$T/wait.err" &
WAITER=$!
expect_fail "ready --wait --timeout gives up with what is missing" 1 'model is not ready after 1 s: not assigned' \
	"$SYNCBIT" ready model --wait --timeout 1 --socket "$T/a1.sock"
check "dataset add model (selector gpu=h100, a Node label)" add_dataset model "$SLOW" --selector gpu=h100 --block-size 256KiB
check "n1's gate turns False while it syncs" until_true 10 gate_is p1 syncbit.io/model 'False Syncing'
check "n1 is tainted syncbit.io/syncing while it syncs" until_true 10 jpy /api/v1/nodes/n1 \
	'any(t["key"] == "syncbit.io/syncing" for t in d["spec"].get("taints", []))'
seen_true_early=0
for _ in $(seq 150); do
	r=$("$SYNCBIT" ready model --socket "$T/a1.sock" >/dev/null 2>&1 && echo 1 || echo 0)
	g=$(gate p1 syncbit.io/model)
	[ "$r" = 0 ] && [ "${g%% *}" = True ] && seen_true_early=1
	[ "$r" = 1 ] && break
	sleep 0.2
done
check "the gate never said True before the data was complete" test $seen_true_early = 0
check "n1 and n2 get the model" wait_ready 60 model 1 2
check "ready --wait (an init container) returns 0 once the model is there" wait "$WAITER"
check "ready --wait said what it waited for" grep -q 'waiting for model' "$T/wait.err"
check "p1's gate turns True once it is complete" until_true 10 gate_is p1 syncbit.io/model 'True Ready'
check "the condition has a lastTransitionTime" jpy /api/v1/namespaces/default/pods/p1 \
	'[c for c in d["status"]["conditions"] if c["type"] == "syncbit.io/model"][0]["lastTransitionTime"].endswith("Z")'
check "p3 (node n3, not selected) says NotAssigned" until_true 10 gate_is p3 syncbit.io/model 'False NotAssigned'
check "a pod without a syncbit gate gets no syncbit condition" test "$(gate plain syncbit.io/model)" = none
labelled() { jpy "/api/v1/nodes/$1" "d['metadata']['labels'].get('syncbit.io/model') == 'ready'"; }
unlabelled() { jpy "/api/v1/nodes/$1" "'syncbit.io/model' not in d['metadata']['labels']"; }
check "nodes n1 and n2 are labelled syncbit.io/model=ready" until_true 10 eval 'labelled n1 && labelled n2'
check "n3 is not labelled" jpy /api/v1/nodes/n3 '"syncbit.io/model" not in d["metadata"].get("labels", {})'
check "the labels set are listed in syncbit.io/managed-labels" jpy /api/v1/nodes/n1 \
	'd["metadata"]["annotations"]["syncbit.io/managed-labels"] == "model"'
check "the taint goes once the node is complete, another taint stays" until_true 10 jpy /api/v1/nodes/n1 \
	'[t["key"] for t in d["spec"].get("taints", [])] == ["team"]'

pod p2 n2 model
check "a pod created after the data arrived turns True" until_true 10 gate_is p2 syncbit.io/model 'True Ready'

api DELETE '/api/v1/namespaces/default/pods/p2?gracePeriodSeconds=0' >/dev/null
pod p2 n2 model
check "a pod deleted and created again under its name converges" until_true 10 gate_is p2 syncbit.io/model 'True Ready'

# ---- restarts: the agent, the API server mid-watch, a compaction (410), a rotated token
kill -9 "${AGENT_PID[1]}"; wait "${AGENT_PID[1]}" 2>/dev/null
start_agent 1 --kubeconfig "$KD/agent-n1.kubeconfig" || bad "agent n1 starts again"
pod p4 n1 model
check "after an agent restart a new pod converges" until_true 15 gate_is p4 syncbit.io/model 'True Ready'
check "the restarted agent kept p1 True" test "$(gate p1 syncbit.io/model)" = "True Ready"

curl -sf "$CTL/ctl/audit" >"$T/audit1.json" # the audit does not survive a restart
kill -9 "$KPID"; wait "$KPID" 2>/dev/null
start_kube || bad "API server fixture starts again"
pod p5 n2 model
check "after an API server restart mid-watch a new pod converges" until_true 20 gate_is p5 syncbit.io/model 'True Ready'

# Agents stopped while the history moves on and is compacted resume from a
# resourceVersion the server no longer has: 410, then a new list.
curl -sf "$CTL/ctl/audit" >"$T/audit2.json" && curl -sf -X POST "$CTL/ctl/audit/clear" >/dev/null
for n in 1 2 3; do kill -STOP "${AGENT_PID[$n]}"; done
curl -sf -X POST "$CTL/ctl/drop-watches" >/dev/null
pod p6 n1 model
api PATCH /api/v1/nodes/n3 '{"metadata":{"annotations":{"touched":"1"}}}' application/merge-patch+json >/dev/null
curl -sf -X POST "$CTL/ctl/compact" >/dev/null
for n in 1 2 3; do kill -CONT "${AGENT_PID[$n]}"; done
check "after a compaction (watches resume into 410) a new pod converges" until_true 20 gate_is p6 syncbit.io/model 'True Ready'

python3 - "$KD" <<'EOF'
import json, sys
d = sys.argv[1]
t = json.load(open(d + "/tokens.json"))
ent = t.pop("tok-agent-n2")
t["tok-agent-n2-rotated"] = ent
open(d + "/tok-agent-n2.new", "w").write("tok-agent-n2-rotated\n")
import os
os.rename(d + "/tok-agent-n2.new", d + "/tok-agent-n2")
json.dump(t, open(d + "/tokens.json.new", "w")); os.rename(d + "/tokens.json.new", d + "/tokens.json")
EOF
curl -sf -X POST "$CTL/ctl/drop-watches" >/dev/null
pod p7 n2 model
check "after the token was rotated n2 reads the new one and converges" until_true 20 gate_is p7 syncbit.io/model 'True Ready'

# ---- the audit: each agent patched only pods on its node, only pods/status
curl -sf "$CTL/ctl/audit" >"$T/audit3.json"
python3 -c "import json; json.dump(sum((json.load(open('$T/audit%d.json' % i)) for i in (1, 2, 3)), []), open('$T/audit.json', 'w'))"
check "after the 410 every agent listed its pods again" python3 - "$T/audit3.json" <<'EOF'
import json, sys
lists = {}
for r in json.load(open(sys.argv[1])):
    u = r.get("user") or ""
    if "agent-" in u and r["resource"] == "pods" and r["verb"] == "list":
        lists[u] = lists.get(u, 0) + 1
print(lists)
sys.exit(0 if len(lists) == 3 else 1)
EOF
check "agents wrote pod status only, and only on their own node's pods" python3 - "$T/audit.json" <<'EOF'
import json, sys
nodes = {"p1": "n1", "p4": "n1", "p6": "n1", "p2": "n2", "p5": "n2", "p7": "n2", "plain": "n2", "p3": "n3"}
bad = []
n = 0
for r in json.load(open(sys.argv[1])):
    u = r.get("user") or ""
    if not u.startswith("system:serviceaccount:syncbit:agent-") or r["verb"] in ("get", "list", "watch"):
        continue
    n += 1
    node = u.rsplit("-", 1)[1]
    if r["resource"] != "pods" or r.get("subresource") != "status" or nodes.get(r["name"]) != node:
        bad.append(r)
print(n, "writes by agents;", bad[:3])
sys.exit(1 if bad or n == 0 else 0)
EOF
check "no agent wrote a node (least privilege)" python3 -c "
import json, sys
sys.exit(any(r['resource'] == 'nodes' and r['verb'] not in ('get','list','watch') and 'agent-' in (r.get('user') or '') for r in json.load(open('$T/audit.json'))))"
check "p1's gate was patched only when it changed (at most 4 patches)" python3 -c "
import json
n = sum(1 for r in json.load(open('$T/audit.json')) if r.get('name') == 'p1' and r['verb'] == 'patch')
print(n); exit(0 if 1 <= n <= 4 else 1)"

# ---- Dataset objects
api POST /apis/syncbit.io/v1alpha1/datasets \
	"{\"apiVersion\":\"syncbit.io/v1alpha1\",\"kind\":\"Dataset\",\"metadata\":{\"name\":\"small\"},\"spec\":{\"source\":\"$ORIGIN/small.bin\",\"nodeSelector\":{\"gpu\":\"a10\"},\"blockSize\":262144}}" >/dev/null
check "a Dataset object becomes a dataset on the selected node (n3)" wait_ready 30 small 3
check "its status: 1 of 1 nodes ready, condition Ready True" until_true 15 jpy /apis/syncbit.io/v1alpha1/datasets/small \
	'd.get("status", {}).get("nodesReady") == 1 and d["status"]["nodesAssigned"] == 1 and d["status"]["conditions"][0]["status"] == "True"'
if command -v kubectl >/dev/null; then
	check "kubectl wait --for=condition=Ready dataset/small" \
		kubectl --kubeconfig "$KD/admin.kubeconfig" wait --for=condition=Ready dataset/small --timeout=20s
else
	skip "kubectl wait --for=condition=Ready dataset/small" "no kubectl installed (tests/deps.sh installs kubernetes-client)"
fi
check "dataset ls shows it" bash -c "'$SYNCBIT' dataset ls --scheduler $SCHED --token-file $TOKEN | grep -q small"
api DELETE /apis/syncbit.io/v1alpha1/datasets/small >/dev/null
check "deleting the object removes the dataset" until_true 15 bash -c \
	"! '$SYNCBIT' dataset ls --scheduler $SCHED --token-file $TOKEN | grep -q small"

# ---- a Node's labels change: n3 becomes h100, the model follows
api PATCH /api/v1/nodes/n3 '{"metadata":{"labels":{"gpu":"h100"}}}' application/merge-patch+json >/dev/null
check "n3 re-registers with its new labels and gets the model" wait_ready 60 model 3
check "p3 flips to True on n3" until_true 15 gate_is p3 syncbit.io/model 'True Ready'

# ---- dataset rm: gates False, labels gone, the annotation emptied
check "dataset rm model" "$SYNCBIT" dataset rm model --scheduler "$SCHED" --token-file "$TOKEN"
check "p1's gate turns False (Removed)" until_true 15 gate_is p1 syncbit.io/model 'False Removed'
check "the node labels are gone" until_true 15 eval 'unlabelled n1 && unlabelled n2 && unlabelled n3'
api PATCH /api/v1/nodes/n2 '{"metadata":{"labels":{"syncbit.io/pool":"a"}}}' application/merge-patch+json >/dev/null
sleep 2
check "a label someone else set under syncbit.io/ stays" jpy /api/v1/nodes/n2 "d['metadata']['labels'].get('syncbit.io/pool') == 'a'"
# ---- an API server without the CRD: one warning, labels go on
kill -TERM "$KPID"; wait "$KPID" 2>/dev/null
start_kube --no-crd || bad "API server fixture starts without the CRD"
check "dataset add model2 with the CRD gone" add_dataset model2 "$ORIGIN/small.bin" --selector gpu=h100 --block-size 256KiB
check "without the CRD node labels still follow" until_true 20 jpy /api/v1/nodes/n1 "d['metadata']['labels'].get('syncbit.io/model2') == 'ready'"
check "without the CRD the scheduler warned once" test "$(grep -c 'Dataset objects unavailable' "$T/sched.log")" -eq 1
stop_cluster
finish
