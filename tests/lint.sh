#!/usr/bin/env bash
# `make lint`: the house rules of docs/ARCHITECTURE.md checked mechanically,
# then the style and static checks. Every finding is one line
# "FILE[:LINE]: what [rule]"; the last line is "lint: clean" (exit 0) or
# "lint: N problem(s)" (exit 1).
#   rooms     agent/ and scheduler/ never include each other
#   output    outside cli/, tests/ and bench/: no stdout (printf, puts,
#             putchar, anything naming stdout or STDOUT_FILENO) and no exit()
#   dispatch  frame dispatch tables (struct frame_handler rows) hold named
#             constants and enum values, never bare numbers (a test's table
#             is a fixture and may)
#   length    every .c and .h file at most LINT_MAX_LINES (800) lines
#   format    clang-format (.clang-format)
#   cppcheck  warnings, in common/ agent/ scheduler/ cli/
#   tidy      clang-tidy (.clang-tidy) on the .c and .h files changed since
#             the merge base with main (LINT_BASE=REF to compare with another
#             commit, LINT_TIDY=all for every file)
# Usage: tests/lint.sh [DIR]   (DIR: the git work tree to check, default the
# one holding this script). LINT_CFLAGS: the flags clang-tidy compiles with
# (the Makefile passes the build's include paths).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=${1:-$here/..}
cd "$root" || exit 2
max_lines=${LINT_MAX_LINES:-800}
for tool in clang-format cppcheck clang-tidy git; do
	command -v "$tool" >/dev/null || {
		echo "lint: $tool missing; run 'tests/deps.sh lint'" >&2
		exit 2
	}
done
out=$(mktemp -d /tmp/syncbit-lint.XXXXXX)
trap 'rm -rf "$out"' EXIT

# Every C file of the tree, tracked or new (not ignored), that exists.
git ls-files -co --exclude-standard -- '*.c' '*.h' | sort -u | while read -r f; do
	[ -f "$f" ] && printf '%s\n' "$f"
done >"$out/files"
mapfile -t files <"$out/files"

# rooms, output, dispatch and length read the code with comments and the
# insides of string and character literals blanked out, so a word in a
# comment or a message is not taken for a call.
house_rules() {
	[ ${#files[@]} -eq 0 ] && return
	awk -v max="$max_lines" '
	function strip(s,    o, i, n, c, d) {
		if (!incomment && s !~ /["\/'\'']/)
			return s
		o = ""; n = length(s)
		for (i = 1; i <= n; i++) {
			c = substr(s, i, 1); d = substr(s, i + 1, 1)
			if (incomment) {
				if (c == "*" && d == "/") { incomment = 0; i++; o = o "  " } else o = o " "
			} else if (quote != "") {
				if (c == "\\") { o = o "  "; i++ }
				else if (c == quote) { quote = ""; o = o c }
				else o = o " "
			} else if (c == "/" && d == "*") { incomment = 1; i++; o = o "  " }
			else if (c == "/" && d == "/") break
			else { if (c == "\"" || c == "'\''") quote = c; o = o c }
		}
		quote = ""
		return o
	}
	function say(line, msg, rule) { printf "%s:%d: %s [%s]\n", FILENAME, line, msg, rule }
	function length_check() {
		if (prev != "" && lines > max)
			printf "%s: %d lines, over the %d-line limit [length]\n", prev, lines, max
	}
	FNR == 1 {
		length_check()
		prev = FILENAME; lines = 0; incomment = 0; quote = ""; table = ""
		top = FILENAME; sub(/\/.*/, "", top)
		if (top == FILENAME) top = ""
		fixture = (top == "tests" || top == "bench")
		quiet = (top == "cli" || fixture)
	}
	{
		lines = FNR
		code = strip($0)
		if (code ~ /^[ \t]*#[ \t]*include/ && match($0, /[<"][^>"]*[>"]/)) {
			inc = substr($0, RSTART + 1, RLENGTH - 2)
			while (inc ~ /^\.\.\//) inc = substr(inc, 4)
			if ((top == "agent" && inc ~ /^scheduler\//) || (top == "scheduler" && inc ~ /^agent\//))
				say(FNR, "includes " inc ": agent/ and scheduler/ never include each other", "rooms")
		}
		if (!quiet) {
			if (code ~ /(^|[^A-Za-z0-9_.>])(printf|vprintf|puts|putchar)[ \t]*\(/)
				say(FNR, "writes to stdout outside cli/ (log through common/log.h)", "output")
			else if (code ~ /(^|[^A-Za-z0-9_])(stdout|STDOUT_FILENO)([^A-Za-z0-9_]|$)/)
				say(FNR, "uses stdout outside cli/ (log through common/log.h)", "output")
			else if (code ~ /(^|[^A-Za-z0-9_])(dprintf|write)[ \t]*\([ \t]*1[ \t]*,/)
				say(FNR, "writes to descriptor 1 outside cli/ (log through common/log.h)", "output")
			if (code ~ /(^|[^A-Za-z0-9_.>])(exit|_exit|_Exit|quick_exit)[ \t]*\(/)
				say(FNR, "calls exit outside cli/ (return an error; only cli/ maps it to an exit status)", "output")
		}
		rest = code
		if (!fixture && table == "" && match(code, /struct[ \t]+frame_handler[ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*\[[^]]*\][ \t]*=/)) {
			table = substr(code, RSTART, RLENGTH)
			sub(/^struct[ \t]+frame_handler[ \t]+/, "", table); sub(/[ \t]*\[.*/, "", table)
			rest = substr(code, RSTART + RLENGTH)
		}
		if (table != "") {
			if (rest ~ /(^|[^A-Za-z0-9_])[0-9]/) {
				row = $0; gsub(/^[ \t]+|[ \t]+$/, "", row)
				say(FNR, "bare number in dispatch table " table ": " row " (name the type or limit)", "dispatch")
			}
			if (rest ~ /}[ \t]*;/)
				table = ""
		}
	}
	END { length_check() }
	' "${files[@]}"
}

format_check() {
	[ ${#files[@]} -eq 0 ] && return
	clang-format --dry-run --Werror "${files[@]}" >"$out/format" 2>&1 && return
	# One line per file (its first difference); `make format` fixes them all.
	awk -F: '/^[^ ].*:[0-9]+:[0-9]+: (error|warning):/ && !seen[$1]++ {
		printf "%s:%s: not formatted as .clang-format says (make format) [format]\n", $1, $2 }
	' "$out/format" >"$out/format.lines"
	if [ -s "$out/format.lines" ]; then cat "$out/format.lines"; else
		sed 's/^/clang-format: /' "$out/format"; echo "clang-format failed [format]"; fi
}

cppcheck_check() {
	local dirs=() d
	for d in common agent scheduler cli; do [ -d "$d" ] && dirs+=("$d"); done
	[ ${#dirs[@]} -eq 0 ] && return
	cppcheck --quiet --error-exitcode=1 --enable=warning --inline-suppr \
		--library="$here/lint/jansson.cfg" \
		--template='{file}:{line}: {message} [cppcheck {id}]' -I. "${dirs[@]}" \
		>"$out/cppcheck" 2>&1 && return
	if grep -q '\[cppcheck ' "$out/cppcheck"; then cat "$out/cppcheck"; else
		sed 's/^/cppcheck: /' "$out/cppcheck"; echo "cppcheck failed [cppcheck]"; fi
}

# The .c and .h files clang-tidy looks at: changed since the merge base.
tidy_files() {
	if [ "${LINT_TIDY:-}" = all ]; then
		cat "$out/files"
		return
	fi
	local base=${LINT_BASE:-}
	[ -z "$base" ] && base=$(git merge-base HEAD main 2>/dev/null)
	if [ -z "$base" ]; then
		echo "lint: no merge base with main; clang-tidy reads every file" >&2
		cat "$out/files"
		return
	fi
	{ git diff --name-only --diff-filter=d "$base" -- '*.c' '*.h'
	  git ls-files -o --exclude-standard -- '*.c' '*.h'; } | sort -u | while read -r f; do
		[ -f "$f" ] && printf '%s\n' "$f"
	done
}

tidy_check() {
	local flags f
	read -r -a flags <<<"${LINT_CFLAGS:--std=gnu11 -D_GNU_SOURCE -I.}"
	tidy_files >"$out/tidy.files"
	while read -r f; do
		local unit=$f
		# A header is read through a file that includes it alone (the
		# header filter of .clang-tidy reports what is found in it).
		if [[ "$f" == *.h ]]; then
			unit=$out/header.c
			printf '#include "%s"\n' "$f" >"$unit"
		fi
		# clang-tidy prints each finding with the code under it; the
		# finding lines are what lint reports.
		if ! clang-tidy --quiet --config-file=.clang-tidy --warnings-as-errors='*' "$unit" -- \
			"${flags[@]}" \
			>"$out/tidy" 2>&1; then
			if grep -qE '^[^ ].*:[0-9]+:[0-9]+: (warning|error):' "$out/tidy"; then
				grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error):' "$out/tidy" |
					sed -E -e "s|^$PWD/||" -e "s|^\./||" -e 's/,-warnings-as-errors\]$/]/' \
					    -e 's/^(.*:[0-9]+):[0-9]+: (warning|error): (.*) \[([^]]*)\]$/\1: \3 [tidy \4]/'
			else
				tail -5 "$out/tidy"; echo "$f: clang-tidy failed [tidy]"
			fi
		fi
	done <"$out/tidy.files"
}

house_rules >"$out/report"
format_check >>"$out/report"
cppcheck_check >>"$out/report"
tidy_check >>"$out/report"
# A header's finding comes once, however many changed files include it.
awk '!seen[$0]++' "$out/report"
n=$(awk '/ \[(rooms|output|dispatch|length|format|cppcheck|tidy)[^]]*\]$/ && !seen[$0]++' \
	"$out/report" | wc -l)
if [ "$n" -gt 0 ]; then
	[ "$n" -eq 1 ] && echo "lint: 1 problem" || echo "lint: $n problems"
	exit 1
fi
echo "lint: clean"
