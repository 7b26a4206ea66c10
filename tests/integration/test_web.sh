#!/usr/bin/env bash
# The scheduler's page on / in headless Chromium (Debian's chromium, driven
# through the DevTools protocol by cdp.py): a real scheduler with
# --http-token-file and three real agents on loopback share a small dataset
# from a local directory. Without the token the page shows the token prompt
# and the API answers 401; with it the grid shows every node ready once the
# dataset is complete, and the details tables match the API. The page's
# security headers, the CSP blocking inline script, the dark theme, and a
# scheduler without a token (the page goes straight to the grid).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster.sh"

CHROMIUM=$(command -v chromium || true)
if [ -z "$CHROMIUM" ]; then
	bad "chromium is installed (tests/deps.sh test)"
	finish
	exit 1
fi
# cdp.py kills the browser's process group itself; this is for a cdp.py
# killed before it could.
CLEANUPS+=("[ -s '$T/cdp.pid' ] && kill -9 -- -\$(cat '$T/cdp.pid')")
cdp() {
	timeout -k 5 300 python3 "$HERE/cdp.py" --chromium "$CHROMIUM" --profile "$T/chromium-$1" \
		--pidfile "$T/cdp.pid" --timeout 240 "${@:2}"
}
# A Python expression over JSON on stdin, as `d`.
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); v=$1; print(v if not isinstance(v,bool) else str(v).lower())"; }

API_TOKEN=$(openssl rand -hex 32)
printf '%s\n' "$API_TOKEN" >"$T/api-token"
chmod 600 "$T/api-token"

SRC=$T/src
mkdir -p "$SRC/shards"
for i in 1 2 3; do head -c $((2 << 20)) /dev/urandom >"$SRC/shards/model-$i.bin"; done
echo '{"hidden_size":64}' >"$SRC/config.json"

# ---- what is refused at start ----
printf '%s\n' "$API_TOKEN" >"$T/open-token"
chmod 644 "$T/open-token"
expect_fail "an API token file readable by others is refused" 1 "http-token-file .*open-token is accessible by group or others" \
	"$SYNCBIT" scheduler --listen 127.0.0.1:0 --data "$T/bad1" --http "127.0.0.1:$(free_port)" --http-token-file "$T/open-token"
printf 'short\n' >"$T/short-token"
chmod 600 "$T/short-token"
expect_fail "an API token that is too short is refused" 1 "http-token-file .*short-token: expected one line of 16 to 256 characters" \
	"$SYNCBIT" scheduler --listen 127.0.0.1:0 --data "$T/bad2" --http "127.0.0.1:$(free_port)" --http-token-file "$T/short-token"

start_scheduler --http-token-file "$T/api-token" || { bad "scheduler starts"; finish; exit 1; }
U=http://$SCHED_HTTP
for n in 1 2 3; do start_agent $n || bad "agent n$n starts"; done

# ---- HTTP: headers and the token ----
curl -s -D "$T/page.h" -o "$T/page.html" "$U/"
check "/ is the page, as HTML" grep -qi '^content-type: text/html' "$T/page.h"
check "/ carries a Content-Security-Policy of its own origin only" \
	grep -qi "^content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'" "$T/page.h"
check "/ says nosniff and is not framed" sh -c "grep -qi '^x-content-type-options: nosniff' '$T/page.h' && grep -qi '^x-frame-options: deny' '$T/page.h'"
check "/ is not cached" grep -qi '^cache-control: no-store' "$T/page.h"
check "the page loads nothing from elsewhere" sh -c "! grep -Eiq '(src|href)=\"(https?:)?//' '$T/page.html'"
check "/app.js is JavaScript" sh -c "curl -s -D - -o /dev/null '$U/app.js' | grep -qi '^content-type: text/javascript'"
check "/app.css is CSS" sh -c "curl -s -D - -o /dev/null '$U/app.css' | grep -qi '^content-type: text/css'"
curl -s -D "$T/401.h" -o "$T/401.body" "$U/api/v1/status"
check "the API without the token is 401" grep -q '^HTTP/1.1 401' "$T/401.h"
check "… asking for a bearer token" grep -qi '^www-authenticate: bearer' "$T/401.h"
check "… and shows nothing of the cluster" sh -c "! grep -q datasets '$T/401.body'"
check "the API with another token is 401" test "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer 0000000000000000000000' "$U/api/v1/nodes")" = 401
check "the API with the token answers" sh -c "curl -sf -H 'Authorization: Bearer $API_TOKEN' '$U/api/v1/status' | grep -q '\"scheduler_version\"'"
check "… as JSON, not cached" sh -c "curl -s -D - -o /dev/null -H 'Authorization: Bearer $API_TOKEN' '$U/api/v1/datasets' | grep -qi '^cache-control: no-store'"
check "an unknown API path is 404 with the token" test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $API_TOKEN" "$U/api/v1/nosuch")" = 404
check "/healthz needs no token" curl -sf "$U/healthz"

# A scheduler without --http-token-file, for the page without a prompt.
OPEN_HTTP=127.0.0.1:$(free_port)
mkdir -p "$T/sched2"
"$SYNCBIT" scheduler --listen 127.0.0.1:0 --data "$T/sched2" --http "$OPEN_HTTP" >>"$T/sched2.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null "http://$OPEN_HTTP/healthz" && break; sleep 0.1; done

check "dataset add" add_dataset web-ds "$SRC" --block-size 256KiB

# ---- the page in Chromium ----
CELLS='[...document.querySelectorAll("#grid td[data-dataset=\"web-ds\"]")]'
ALL_READY="(() => { const c = $CELLS; return c.length === 3 && c.every(x => x.dataset.state === 'ready') && c.map(x => x.dataset.node + '=' + x.textContent.trim()); })()"
cdp main \
	size 1280x900 \
	open "$U/" \
	wait 30 "document.body.dataset.auth === 'required' && !document.getElementById('auth').hidden" \
	eval "document.getElementById('view').hidden && !document.body.innerText.includes('web-ds')" \
	eval "fetch('/api/v1/status').then(r => r.status)" \
	eval "(() => { const s = document.createElement('script'); s.textContent = 'window.__inline = 1'; document.body.append(s); return window.__inline === undefined; })()" \
	eval "document.getElementById('token').value = 'not-the-token-0123456789'; document.getElementById('auth-form').requestSubmit(); true" \
	wait 30 "document.getElementById('auth-error').textContent" \
	eval "document.getElementById('token').value = '$API_TOKEN'; document.getElementById('auth-form').requestSubmit(); true" \
	wait 150 "$ALL_READY" \
	eval "sessionStorage.getItem('syncbit-api-token') === '$API_TOKEN'" \
	eval "[...document.querySelectorAll('#grid tbody th[scope=row]')].map(t => t.firstChild.textContent).sort().join(',')" \
	eval "[...document.querySelectorAll('#grid thead th[scope=col]')].map(t => t.firstChild.textContent).join(',')" \
	eval "[...document.querySelectorAll('#datasets tbody tr')].map(r => r.cells[0].textContent + '|' + r.cells[1].textContent + '|' + r.cells[4].title).join(';')" \
	eval "[...document.querySelectorAll('#nodes tbody tr')].filter(r => r.cells[1].textContent.includes('connected,')).length" \
	eval "[...document.querySelectorAll('#grid td[data-dataset=\"web-ds\"] .line')].map(x => x.textContent).join(';')" \
	open "$U/" \
	wait 30 "document.body.dataset.auth === 'ok' && $CELLS.length === 3" \
	media light \
	eval "getComputedStyle(document.body).backgroundColor" \
	media dark \
	eval "getComputedStyle(document.body).backgroundColor" \
	shot "$T/page.png" \
	open "http://$OPEN_HTTP/" \
	wait 30 "document.body.dataset.auth === 'ok' && !document.getElementById('grid-empty').hidden" \
	eval "document.getElementById('auth').hidden" \
	>"$T/cdp.out" 2>"$T/cdp.err"
rc=$?
check "the browser run finished" test "$rc" = 0 || { cat "$T/cdp.err"; tail -5 "$T"/chromium-main/chromium.log; }
mapfile -t R <"$T/cdp.out"
# R: 0 size, 1 open, 2 prompt, 3 hidden, 4 401, 5 csp, 6 wrong, 7 refused, 8 right,
# 9 ready, 10 session, 11 rows, 12 cols, 13 datasets, 14 nodes, 15 lines, 16 open,
# 17 reload, 18 media, 19 light, 20 media, 21 dark, 22 shot, 23 open, 24 no prompt, 25 auth hidden
check "without the token the page shows the token prompt" test "${R[2]:-}" = true
check "… and nothing of the cluster" test "${R[3]:-}" = true
check "… and the API answers the page 401" test "${R[4]:-}" = 401
check "the CSP blocks an inline script" test "${R[5]:-}" = true
check "a wrong token is refused on the page" grep -q 'refused this token' <<<"${R[7]:-}"
check "with the token every node shows web-ds ready" grep -q 'n1=✓ ready 100%' <<<"${R[9]:-}"
check "… all three of them" test "$(grep -o '✓ ready 100%' <<<"${R[9]:-}" | wc -l)" = 3
check "the token is kept in sessionStorage" test "${R[10]:-}" = true
check "the grid has a row header per node" test "${R[11]:-}" = '"n1,n2,n3"'
check "the grid has a column header per dataset" test "${R[12]:-}" = '"Node,web-ds"'
VERSION=$(curl -sf -H "Authorization: Bearer $API_TOKEN" "$U/api/v1/datasets" | jq_ 'd["datasets"][0]["version"]')
check "the dataset table shows it complete with the API's version" test "${R[13]:-}" = "\"web-ds|✓ complete|$VERSION\""
check "the node table shows three connected nodes" test "${R[14]:-}" = 3
check "each cell shows bytes from the origin and from peers" test "$(grep -o 'origin [0-9.]* [KM]*i*B · peers' <<<"${R[15]:-}" | wc -l)" = 3
check "a reload keeps the token (no prompt)" test -n "${R[17]:-}"
check "the dark theme differs from the light one" sh -c "[ -n '${R[19]:-}' ] && [ -n '${R[21]:-}' ] && [ '${R[19]:-}' != '${R[21]:-}' ]"
check "a screenshot is a PNG" sh -c "head -c 8 '$T/page.png' | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a'"
check "without --http-token-file the page shows the grid at once" test "${R[24]:-}" = true
check "… and no prompt" test "${R[25]:-}" = true
check "the agents agree: web-ds is ready on every node" wait_ready 30 web-ds 1 2 3
check "no chromium process is left" sh -c "! pgrep -g \$(cat '$T/cdp.pid') >/dev/null"

stop_cluster
finish
