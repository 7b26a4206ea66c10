#!/usr/bin/env bash
# The Kubernetes API fixture (tests/fixtures/kube_api.py) against curl and,
# where a kubectl is installed, kubectl: TLS, authentication, RBAC, patches,
# preconditions, validation, selectors, list+watch (bookmarks, 410 after a
# compaction, dropped streams) and state across a restart.
. "$(dirname "$0")/lib.sh"

KD=$T/kube
STATE=$T/kube-state.json
KLOG=$T/kube.log
KPID=

start_kube() {
	python3 "$FIXTURES/kube_api.py" --dir "$KD" --state "$STATE" --bookmark-interval 1 "$@" 2>>"$KLOG" &
	KPID=$!
	PIDS+=($KPID)
	for _ in $(seq 100); do
		[ -s "$KD/port" ] && curl -sf --cacert "$KD/ca.crt" "https://127.0.0.1:$(cat "$KD/port")/readyz" >/dev/null && return 0
		sleep 0.1
	done
	echo "kube_api did not start" >&2; cat "$KLOG" >&2; return 1
}
stop_kube() { kill -TERM "$KPID"; wait "$KPID" 2>/dev/null; }

start_kube || { bad "fixture starts"; finish; exit 1; }
P=$(cat "$KD/port") CTL=http://127.0.0.1:$(cat "$KD/ctl-port")
U=https://127.0.0.1:$P
ADMIN=$(cat "$KD/admin-token")

# req TOKEN METHOD PATH [curl args...]: the body goes to $T/b, the status is printed.
req() {
	local tok=$1 m=$2 p=$3; shift 3
	curl -s -o "$T/b" -w '%{http_code}' --cacert "$KD/ca.crt" -H "Authorization: Bearer $tok" -X "$m" "$@" "$U$p"
}
# jq-like assertions on $T/b (or a file given with -f FILE): py EXPR, with d the parsed JSON.
py() {
	local f=$T/b
	[ "$1" = -f ] && { f=$2; shift 2; }
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); r=eval(sys.argv[2]); print(r); sys.exit(0 if r else 1)' "$f" "$1"
}
is() { local want=$1; shift; local got; got=$("$@"); [ "$got" = "$want" ] || { echo "got $got, want $want; $(head -c 400 "$T/b")"; return 1; }; }
matches() { [[ $1 =~ $2 ]] || { echo "got '$1'"; return 1; }; }
types() { python3 -c 'import json,sys; print(" ".join(json.loads(l)["type"] for l in open(sys.argv[1]) if l.strip()))' "$1"; }
JSON=(-H 'Content-Type: application/json')
MERGE=(-H 'Content-Type: application/merge-patch+json')
SMP=(-H 'Content-Type: application/strategic-merge-patch+json')
JPATCH=(-H 'Content-Type: application/json-patch+json')

# --- TLS and authentication
check "TLS verifies against DIR/ca.crt (127.0.0.1 and localhost)" \
	bash -c "curl -sf --cacert '$KD/ca.crt' $U/healthz | grep -qx ok && curl -sf --cacert '$KD/ca.crt' https://localhost:$P/version | grep -q gitVersion"
check "a client without the CA refuses the server" bash -c "curl -s $U/healthz; [ \$? -eq 60 ]"
check "unknown token: 401 Status" is 401 req nope GET /api/v1/nodes
check "401 body is the real Status" py 'd == {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}'
check "no token: 401" is 401 curl -s -o /dev/null -w '%{http_code}' --cacert "$KD/ca.crt" "$U/api/v1/nodes"
check "client certificate (O=system:masters) authenticates" is 200 curl -s -o /dev/null -w '%{http_code}' \
	--cacert "$KD/ca.crt" --cert "$KD/admin.crt" --key "$KD/admin.key" "$U/api/v1/nodes"
echo '{"tok-a": {"user": "system:serviceaccount:syncbit:agent", "groups": ["system:serviceaccounts"]}}' >"$KD/tokens.json"
cat >"$KD/rbac.json" <<'EOF'
[{"subjects": ["system:serviceaccount:syncbit:agent"],
  "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"], "resourceNames": ["n1"]}]}]
EOF
check "tokens.json token is accepted" is 200 req tok-a GET /api/v1/namespaces/default/pods
sleep 1.1 # a new mtime for the rewritten file
echo '{"tok-b": {"user": "system:serviceaccount:syncbit:agent", "groups": ["system:serviceaccounts"]}}' >"$KD/tokens.json"
check "after rotation the old token gets 401" is 401 req tok-a GET /api/v1/namespaces/default/pods
check "and the new one works" is 200 req tok-b GET /api/v1/namespaces/default/pods

# --- setup through the control plane, then RBAC
cat >"$T/objs.json" <<'EOF'
{"items": [
 {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"zone": "a"}},
  "spec": {"taints": [{"key": "syncbit.io/loading", "effect": "NoSchedule"}, {"key": "old", "value": "x", "effect": "NoExecute"}]},
  "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
 {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2", "labels": {"zone": "b"}}},
 {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "default", "labels": {"app": "train"}},
  "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "img"}], "readinessGates": [{"conditionType": "syncbit.io/data-ready"}]},
  "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}},
 {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p2", "namespace": "default", "labels": {"app": "serve"}},
  "spec": {"nodeName": "n2", "containers": [{"name": "c", "image": "img"}]}, "status": {"phase": "Running"}}]}
EOF
check "POST /ctl/objects creates the setup objects" is 200 curl -s -o "$T/b" -w '%{http_code}' -X POST --data-binary @"$T/objs.json" "$CTL/ctl/objects"
COND='{"status":{"conditions":[{"type":"syncbit.io/data-ready","status":"True","reason":"Synced"}]}}'
check "pods granted, pods/status not: 403" is 403 req tok-b PATCH /api/v1/namespaces/default/pods/p1/status "${SMP[@]}" -d "$COND"
check "403 carries the real message and details" py 'd["reason"]=="Forbidden" and d["message"]=='"'"'pods "p1" is forbidden: User "system:serviceaccount:syncbit:agent" cannot patch resource "pods/status" in API group "" in the namespace "default"'"'"' and d["details"]=={"name":"p1","kind":"pods"}'
check "resourceNames: get nodes/n1 allowed" is 200 req tok-b GET /api/v1/nodes/n1
check "resourceNames: get nodes/n2 denied" is 403 req tok-b GET /api/v1/nodes/n2
check "  ... cluster-scope message" py 'd["message"]=='"'"'nodes "n2" is forbidden: User "system:serviceaccount:syncbit:agent" cannot get resource "nodes" in API group "" at the cluster scope'"'"''
check "resourceNames: list needs a matching metadata.name selector" is 403 req tok-b GET /api/v1/nodes
check "resourceNames: list with fieldSelector metadata.name=n1 allowed" is 200 req tok-b GET '/api/v1/nodes?fieldSelector=metadata.name%3Dn1'
python3 - "$KD/rbac.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
r[0]["rules"].append({"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]})
json.dump(r, open(sys.argv[1], "w"))
EOF
check "after granting pods/status (rbac.json re-read) the patch passes" is 200 req tok-b PATCH /api/v1/namespaces/default/pods/p1/status "${SMP[@]}" -d "$COND"
check "strategic merge: the readiness-gate condition merged by type, others kept" \
	py '[(c["type"],c["status"]) for c in d["status"]["conditions"]]==[("Ready","False"),("PodScheduled","True"),("syncbit.io/data-ready","True")]'
check "a /status write leaves spec alone" py 'd["spec"]["nodeName"]=="n1"'
check "\$patch: delete removes one condition" is 200 req tok-b PATCH /api/v1/namespaces/default/pods/p1/status "${SMP[@]}" \
	-d '{"status":{"conditions":[{"type":"PodScheduled","$patch":"delete"}]}}'
check "  ... and only that one" py '[c["type"] for c in d["status"]["conditions"]]==["Ready","syncbit.io/data-ready"]'
check "a condition without its merge key fails like the real server (500)" is 500 req tok-b PATCH /api/v1/namespaces/default/pods/p1/status "${SMP[@]}" \
	-d '{"status":{"conditions":[{"status":"True"}]}}'
check "  ... does not contain declared merge key: type" py '"does not contain declared merge key: type" in d["message"]'
check "pod condition status must be True/False/Unknown: 422" is 422 req "$ADMIN" PATCH /api/v1/namespaces/default/pods/p1/status "${SMP[@]}" \
	-d '{"status":{"conditions":[{"type":"syncbit.io/data-ready","status":"Yes"}]}}'
check "  ... cause names the field" py 'd["details"]["causes"][0]["field"]=="status.conditions[1].status"'
check "condition type must be a qualified name: 422" is 422 req "$ADMIN" PATCH /api/v1/namespaces/default/pods/p1/status "${SMP[@]}" \
	-d '{"status":{"conditions":[{"type":"bad type!","status":"True"}]}}'
check "a write to the main resource never changes status" is 200 req "$ADMIN" PATCH /api/v1/namespaces/default/pods/p1 "${MERGE[@]}" \
	-d '{"metadata":{"labels":{"x":"1"}},"status":{"phase":"Failed"}}'
check "  ... labels changed, phase kept" py 'd["metadata"]["labels"]["x"]=="1" and d["status"]["phase"]=="Running"'
check "a pods/status write takes metadata too (real core strategy), never spec" is 200 req "$ADMIN" PATCH /api/v1/namespaces/default/pods/p1/status "${MERGE[@]}" \
	-d '{"metadata":{"labels":{"y":"2"}},"spec":{"nodeName":"n2"}}'
check "  ... label y set, nodeName kept" py 'd["metadata"]["labels"]["y"]=="2" and d["spec"]["nodeName"]=="n1"'
check "a label value that is not a string: 400 like the typed decoder" is 400 req "$ADMIN" PATCH /api/v1/namespaces/default/pods/p1 "${MERGE[@]}" \
	-d '{"metadata":{"labels":{"n":1}}}'
check "an unknown patch content type: 415" is 415 req "$ADMIN" PATCH /api/v1/namespaces/default/pods/p1 -H 'Content-Type: text/plain' -d '{}'

# --- nodes: taints are atomic (no patch merge key), labels a map
check "strategic merge on node taints replaces the list" is 200 req "$ADMIN" PATCH /api/v1/nodes/n1 "${SMP[@]}" \
	-d '{"metadata":{"labels":{"zone":null,"syncbit.io/cached":"true"}},"spec":{"taints":[{"key":"syncbit.io/loading","effect":"NoSchedule"}]}}'
check "  ... one taint left, zone label deleted by null" py 'd["spec"]["taints"]==[{"key":"syncbit.io/loading","effect":"NoSchedule"}] and d["metadata"]["labels"]=={"syncbit.io/cached":"true"}'
check "bad taint effect: 422" is 422 req "$ADMIN" PATCH /api/v1/nodes/n1 "${MERGE[@]}" -d '{"spec":{"taints":[{"key":"k","effect":"Sometimes"}]}}'
check "  ... Unsupported value with the supported list" py '"spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"" in d["message"]'
check "bad label value: 422" is 422 req "$ADMIN" PATCH /api/v1/nodes/n1 "${MERGE[@]}" -d '{"metadata":{"labels":{"ok":"not ok!"}}}'
check "  ... Invalid with details.causes on metadata.labels" py 'd["reason"]=="Invalid" and d["details"]["causes"][0]["field"]=="metadata.labels" and d["message"].startswith("Node \"n1\" is invalid: metadata.labels: Invalid value: \"not ok!\"")'
check "label value of 64 characters: 422" is 422 req "$ADMIN" PATCH /api/v1/nodes/n1 "${MERGE[@]}" -d "{\"metadata\":{\"labels\":{\"k\":\"$(printf 'a%.0s' $(seq 64))\"}}}"
check "bad label key prefix: 422" is 422 req "$ADMIN" PATCH /api/v1/nodes/n1 "${MERGE[@]}" -d '{"metadata":{"labels":{"Bad_Prefix/k":"v"}}}'

# --- preconditions and conflicts
req "$ADMIN" GET /api/v1/nodes/n1 >/dev/null
RV=$(py 'd["metadata"]["resourceVersion"]')
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["metadata"]["labels"]["put"]="1"; json.dump(d,open(sys.argv[1],"w"))' "$T/b"
check "PUT with the current resourceVersion: 200" is 200 req "$ADMIN" PUT /api/v1/nodes/n1 "${JSON[@]}" --data-binary @"$T/b"
check "  ... a real change bumps the resourceVersion" py "d['metadata']['resourceVersion'] != '$RV'"
check "a no-op PUT bumps nothing" is 200 req "$ADMIN" PUT /api/v1/nodes/n1 "${JSON[@]}" --data-binary @"$T/b"
check "  ... same resourceVersion back" py "d['metadata']['resourceVersion'] == '$((RV + 1))'"
check "PUT again with the now stale resourceVersion: 409" is 409 req "$ADMIN" PUT /api/v1/nodes/n1 "${JSON[@]}" \
	-d "{\"metadata\":{\"name\":\"n1\",\"resourceVersion\":\"$RV\",\"labels\":{\"a\":\"b\"}}}"
check "  ... Conflict with the real message" py 'd["reason"]=="Conflict" and d["message"]=="Operation cannot be fulfilled on nodes \"n1\": the object has been modified; please apply your changes to the latest version and try again"'
check "a patch carrying a stale metadata.resourceVersion: 409" is 409 req "$ADMIN" PATCH /api/v1/nodes/n1 "${MERGE[@]}" \
	-d "{\"metadata\":{\"resourceVersion\":\"$RV\",\"labels\":{\"a\":\"c\"}}}"
check "create with metadata.resourceVersion set is refused" is 500 req "$ADMIN" POST /api/v1/nodes "${JSON[@]}" -d '{"metadata":{"name":"n9","resourceVersion":"3"}}'
check "create of an existing name: 409 AlreadyExists" is 409 req "$ADMIN" POST /api/v1/nodes "${JSON[@]}" -d '{"metadata":{"name":"n2"}}'
check "  ... reason AlreadyExists" py 'd["reason"]=="AlreadyExists" and d["message"]=="nodes \"n2\" already exists"'
check "JSON patch: a failed test op is 422" is 422 req "$ADMIN" PATCH /api/v1/nodes/n2 "${JPATCH[@]}" \
	-d '[{"op":"test","path":"/metadata/labels/zone","value":"z"},{"op":"add","path":"/metadata/labels/t","value":"1"}]'
check "JSON patch: test then add" is 200 req "$ADMIN" PATCH /api/v1/nodes/n2 "${JPATCH[@]}" \
	-d '[{"op":"test","path":"/metadata/labels/zone","value":"b"},{"op":"add","path":"/metadata/labels/t","value":"1"}]'

# --- the Dataset custom resource
DS=/apis/syncbit.io/v1alpha1/datasets
check "Dataset without spec.source: 422" is 422 req "$ADMIN" POST $DS "${JSON[@]}" -d '{"apiVersion":"syncbit.io/v1alpha1","kind":"Dataset","metadata":{"name":"d1"},"spec":{}}'
check "  ... spec.source: Required value" py 'd["details"]["causes"][0]["field"]=="spec.source" and "Dataset.syncbit.io \"d1\" is invalid" in d["message"]'
check "Dataset created (status dropped on create)" is 201 req "$ADMIN" POST $DS "${JSON[@]}" \
	-d '{"apiVersion":"syncbit.io/v1alpha1","kind":"Dataset","metadata":{"name":"d1"},"spec":{"source":"hf://a/b"},"status":{"phase":"x"}}'
check "  ... generation 1, no status" py 'd["metadata"]["generation"]==1 and "status" not in d'
check "strategic merge patch on a custom resource: 415" is 415 req "$ADMIN" PATCH $DS/d1/status "${SMP[@]}" -d '{"status":{}}'
check "  ... accepted types exclude strategic merge" py 'd["reason"]=="UnsupportedMediaType" and "strategic" not in d["message"]'
check "merge patch on Dataset status" is 200 req "$ADMIN" PATCH $DS/d1/status "${MERGE[@]}" \
	-d '{"spec":{"source":"ignored"},"status":{"conditions":[{"type":"Ready","status":"True"}]}}'
check "  ... status set, spec untouched, generation unchanged" py 'd["status"]["conditions"][0]["type"]=="Ready" and d["spec"]["source"]=="hf://a/b" and d["metadata"]["generation"]==1'
check "a Dataset /status write ignores labels" is 200 req "$ADMIN" PATCH $DS/d1/status "${MERGE[@]}" -d '{"metadata":{"labels":{"l":"1"}}}'
check "  ... no label" py '"labels" not in d["metadata"]'
check "a spec change bumps generation" is 200 req "$ADMIN" PATCH $DS/d1 "${MERGE[@]}" -d '{"spec":{"source":"hf://a/c"},"status":null}'
check "  ... generation 2, status kept" py 'd["metadata"]["generation"]==2 and d["status"]["conditions"][0]["status"]=="True"'
check "PUT of a custom resource without resourceVersion: 422" is 422 req "$ADMIN" PUT $DS/d1 "${JSON[@]}" \
	-d '{"apiVersion":"syncbit.io/v1alpha1","kind":"Dataset","metadata":{"name":"d1"},"spec":{"source":"s"}}'
check "  ... must be specified for an update" py 'd["message"]=="datasets.syncbit.io \"d1\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"'

# --- selectors
check "fieldSelector spec.nodeName filters pods" is 200 req tok-b GET '/api/v1/pods?fieldSelector=spec.nodeName%3Dn1'
check "  ... only p1" py '[i["metadata"]["name"] for i in d["items"]]==["p1"] and d["kind"]=="PodList"'
check "fieldSelector != and a label selector with in/notin/exists" is 200 req tok-b GET \
	'/api/v1/namespaces/default/pods?fieldSelector=spec.nodeName!%3Dn9&labelSelector=app%20in%20(train,serve),app%20notin%20(x),!missing'
check "  ... both pods" py 'len(d["items"])==2'
check "unsupported field selector: 400 field label not supported" is 400 req tok-b GET '/api/v1/pods?fieldSelector=spec.foo%3Dx'
check "  ... message" py 'd["message"]=="field label not supported: spec.foo"'
check "limit/continue pages a list" is 200 req "$ADMIN" GET '/api/v1/namespaces?limit=3'
TOKEN=$(py 'd["metadata"]["continue"]')
check "  ... second page from the token" is 200 req "$ADMIN" GET "/api/v1/namespaces?limit=3&continue=$TOKEN"
check "  ... holds the last namespace" py '[i["metadata"]["name"] for i in d["items"]]==["kube-system"]'

# --- resourceVersion semantics on list, events, deletion
check "list with resourceVersionMatch=Exact at an older RV shows the old state" is 200 req "$ADMIN" GET \
	"/api/v1/nodes?resourceVersion=$RV&resourceVersionMatch=Exact"
check "  ... n1 as it was, without the later label" py 'd["metadata"]["resourceVersion"]=="'"$RV"'" and "put" not in d["items"][0]["metadata"]["labels"]'
check "list from a future RV: 504 Too large resource version (after ~3 s)" is 504 req "$ADMIN" GET '/api/v1/nodes?resourceVersion=999999'
check "  ... with the ResourceVersionTooLarge cause" py 'd["reason"]=="Timeout" and d["details"]["causes"][0]["reason"]=="ResourceVersionTooLarge"'
check "resourceVersionMatch without resourceVersion: 422 on ListOptions" is 422 req "$ADMIN" GET '/api/v1/nodes?resourceVersionMatch=Exact'
check "create an event in default" is 201 req "$ADMIN" POST /api/v1/namespaces/default/events "${JSON[@]}" \
	-d '{"metadata":{"name":"p1.1"},"involvedObject":{"kind":"Pod","namespace":"default","name":"p1"},"reason":"Pulled","type":"Normal"}'
check "events by fieldSelector involvedObject.name" is 200 req "$ADMIN" GET '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dp1,reason%3DPulled'
check "  ... one event" py 'len(d["items"])==1'
check "create in a namespace that does not exist: 404" is 404 req "$ADMIN" POST /api/v1/namespaces/nowhere/events "${JSON[@]}" \
	-d '{"metadata":{"name":"e"},"involvedObject":{"kind":"Pod","namespace":"nowhere","name":"p1"}}'
check "  ... namespaces \"nowhere\" not found" py 'd["message"]=="namespaces \"nowhere\" not found"'
check "a path outside the API: 403 for a plain user" is 403 req tok-b GET /metrics
check "deleting a scheduled pod is graceful: 200, still there" is 200 req "$ADMIN" DELETE /api/v1/namespaces/default/pods/p2
check "  ... with deletionTimestamp and a 30 s grace" py 'd["metadata"]["deletionGracePeriodSeconds"]==30 and "deletionTimestamp" in d["metadata"]'
check "  ... the kubelet's delete with gracePeriodSeconds=0 removes it" is 200 req "$ADMIN" DELETE '/api/v1/namespaces/default/pods/p2?gracePeriodSeconds=0'
check "  ... gone" is 404 req "$ADMIN" GET /api/v1/namespaces/default/pods/p2
check "a pod create sets status Pending whatever the body says" is 201 req "$ADMIN" POST /api/v1/namespaces/default/pods "${JSON[@]}" \
	-d '{"metadata":{"name":"p2","labels":{"app":"serve"}},"spec":{"nodeName":"n2","containers":[{"name":"c","image":"img"}]},"status":{"phase":"Running"}}'
check "  ... phase Pending" py 'd["status"]["phase"]=="Pending"'
check "a pod without containers: 422 spec.containers Required" is 422 req "$ADMIN" POST /api/v1/namespaces/default/pods "${JSON[@]}" -d '{"metadata":{"name":"p3"},"spec":{}}'

# --- list + watch
req tok-b GET /api/v1/namespaces/default/pods >/dev/null
LRV=$(py 'd["metadata"]["resourceVersion"]')
curl -sN --cacert "$KD/ca.crt" -H "Authorization: Bearer tok-b" \
	"$U/api/v1/namespaces/default/pods?watch=1&resourceVersion=$LRV&allowWatchBookmarks=true&timeoutSeconds=3&labelSelector=app%3Dtrain" >"$T/w1" &
WPID=$!
sleep 0.5
req "$ADMIN" PATCH /api/v1/namespaces/default/pods/p1 "${MERGE[@]}" -d '{"metadata":{"annotations":{"a":"1"}}}' >/dev/null
req "$ADMIN" PATCH /api/v1/namespaces/default/pods/p2 "${MERGE[@]}" -d '{"metadata":{"annotations":{"a":"1"}}}' >/dev/null
req "$ADMIN" PATCH /api/v1/namespaces/default/pods/p1 "${MERGE[@]}" -d '{"metadata":{"labels":{"app":"other"}}}' >/dev/null
wait $WPID
check "watch stream ends cleanly at timeoutSeconds" test $? -eq 0
# Bookmarks come on the server's own clock, between events too when the
# patches are slow; the events themselves are MODIFIED, then DELETED.
check "watch from the list RV: MODIFIED, then DELETED when the label stops matching, then bookmarks" \
	matches "$(types "$T/w1")" '^(BOOKMARK )*MODIFIED( BOOKMARK)* DELETED( BOOKMARK)+$'
check "bookmark objects carry only kind, apiVersion and resourceVersion" \
	python3 -c 'import json,sys; b=[json.loads(l)["object"] for l in open(sys.argv[1]) if "BOOKMARK" in l]; sys.exit(not all(set(o)=={"kind","apiVersion","metadata"} and set(o["metadata"])=={"resourceVersion"} and o["kind"]=="Pod" for o in b))' "$T/w1"
curl -sN --cacert "$KD/ca.crt" -H "Authorization: Bearer tok-b" "$U/api/v1/pods?watch=true&timeoutSeconds=1" >"$T/w2"
check "watch without resourceVersion starts with synthetic ADDED events" is "ADDED ADDED" types "$T/w2"
check "a watch without allowWatchBookmarks gets no bookmark" bash -c "! grep -q BOOKMARK '$T/w2'"
check "POST /ctl/compact" is 200 curl -s -o /dev/null -w '%{http_code}' -X POST "$CTL/ctl/compact"
curl -sN -D "$T/w3h" --cacert "$KD/ca.crt" -H "Authorization: Bearer tok-b" \
	"$U/api/v1/namespaces/default/pods?watch=1&resourceVersion=$LRV&timeoutSeconds=5" >"$T/w3"
check "watch from a compacted RV: HTTP 200" grep -q '^HTTP/1.1 200' "$T/w3h"
check "  ... and one ERROR event" is ERROR types "$T/w3"
check "  ... a 410 Expired Status: too old resource version" python3 -c 'import json,sys; o=json.loads(open(sys.argv[1]).readline())["object"]; sys.exit(not (o["code"]==410 and o["reason"]=="Expired" and o["message"].startswith("too old resource version: '"$LRV"' (")))' "$T/w3"
req "$ADMIN" GET /api/v1/nodes >/dev/null
NRV=$(py 'd["metadata"]["resourceVersion"]')
curl -sN --cacert "$KD/ca.crt" -H "Authorization: Bearer $ADMIN" "$U/api/v1/nodes?watch=1&resourceVersion=$NRV" >"$T/w4" 2>"$T/w4e" &
WPID=$!
sleep 0.5
check "POST /ctl/drop-watches closes open streams" is '{"dropped":1}' curl -s -X POST "$CTL/ctl/drop-watches"
wait $WPID
check "  ... abruptly (curl sees a broken chunked stream)" test $? -eq 18

# --- audit
curl -s "$CTL/ctl/audit" >"$T/audit"
check "audit records the denied pods/status patch" py -f "$T/audit" 'any(r["verb"]=="patch" and r["resource"]=="pods" and r["subresource"]=="status" and r["code"]==403 and r["user"]=="system:serviceaccount:syncbit:agent" and r["body"]["status"]["conditions"][0]["type"]=="syncbit.io/data-ready" and r["contentType"]=="application/strategic-merge-patch+json" for r in d)'
check "POST /ctl/audit/clear" bash -c "curl -s -X POST '$CTL/ctl/audit/clear' >/dev/null && [ \"\$(curl -s '$CTL/ctl/audit')\" = '[]' ]"

# --- kubectl, when one is installed
if command -v kubectl >/dev/null; then
	export KUBECONFIG=$KD/admin.kubeconfig
	check "kubectl get nodes (discovery, list)" bash -c "kubectl get nodes -o name | tr '\n' ' ' | grep -qx 'node/n1 node/n2 '"
	check "kubectl with the client-certificate context" bash -c "kubectl --context kube-fixture-cert get pods -o name | grep -qx pod/p1 -"
	( sleep 1; req "$ADMIN" PATCH $DS/d1/status "${MERGE[@]}" -d '{"status":{"conditions":[{"type":"Synced","status":"True"}]}}' >/dev/null ) &
	BG=$!
	check "kubectl wait --for=condition=Synced dataset/d1 (list + watch)" timeout 20 kubectl wait --for=condition=Synced dataset/d1 --timeout=5s
	wait $BG
	check "kubectl wait times out on a condition that never comes" bash -c "! timeout 20 kubectl wait --for=condition=Never dataset/d1 --timeout=2s"
else
	skip "kubectl checks" "no kubectl installed (tests/deps.sh installs kubernetes-client)"
fi

# --- restart with --state
req "$ADMIN" GET /api/v1/nodes/n1 >/dev/null
BEFORE=$(py 'd["metadata"]["resourceVersion"]+"/"+d["metadata"]["uid"]')
stop_kube
check "SIGTERM stops the fixture cleanly" bash -c "grep -q 'shutting down' '$KLOG'"
start_kube || bad "fixture restarts"
check "after a restart it listens on the same port" test "$(cat "$KD/port")" = "$P"
req "$ADMIN" GET /api/v1/nodes/n1 >/dev/null
check "objects survive the restart (same RV and uid)" is "$BEFORE" py 'd["metadata"]["resourceVersion"]+"/"+d["metadata"]["uid"]'
check "the RV counter continues" is 200 req "$ADMIN" PATCH /api/v1/nodes/n2 "${MERGE[@]}" -d '{"metadata":{"labels":{"after":"restart"}}}'
check "  ... above every RV before the restart" py "int(d['metadata']['resourceVersion']) > ${BEFORE%%/*}"
curl -sN --cacert "$KD/ca.crt" -H "Authorization: Bearer $ADMIN" "$U/api/v1/nodes?watch=1&resourceVersion=$NRV&timeoutSeconds=3" >"$T/w5"
check "a watch resumed from before the restart gets 410" grep -q '"code":410' "$T/w5"

# --- without the CRD
stop_kube
KD2=$T/kube2
python3 "$FIXTURES/kube_api.py" --dir "$KD2" --no-crd 2>>"$KLOG" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$KD2/port" ] && break; sleep 0.1; done
check "--no-crd: /apis/syncbit.io paths are 404" is 404 curl -s -o /dev/null -w '%{http_code}' --cacert "$KD2/ca.crt" \
	-H "Authorization: Bearer $(cat "$KD2/admin-token")" "https://127.0.0.1:$(cat "$KD2/port")$DS"
check "--no-crd: discovery does not list the group" is '[]' bash -c "curl -s --cacert '$KD2/ca.crt' -H 'Authorization: Bearer $(cat "$KD2/admin-token")' https://127.0.0.1:$(cat "$KD2/port")/apis | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"groups\"])'"

finish
