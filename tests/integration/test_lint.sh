#!/usr/bin/env bash
# tests/lint.sh (`make lint`) on small git trees of its own: a clean tree
# passes; a tree with one violation of one rule fails with that rule's
# line and no other; clang-tidy reads the files changed since main only,
# unless LINT_TIDY=all.
. "$(dirname "$0")/lib.sh"

REPO=$(cd "$HERE/../.." && pwd)
LINT=$REPO/tests/lint.sh
export GIT_AUTHOR_NAME=lint GIT_AUTHOR_EMAIL=lint@example.org
export GIT_COMMITTER_NAME=lint GIT_COMMITTER_EMAIL=lint@example.org
unset LINT_BASE LINT_TIDY LINT_CFLAGS

# The clean tree: what the rules allow, including the look-alikes they must
# not take for violations (words in comments and strings, cli/ and tests/
# printing and exiting, a test's own dispatch table, exactly 800 lines).
clean_tree() {
	local d=$1
	mkdir -p "$d"/common "$d"/agent "$d"/scheduler "$d"/cli "$d"/tests/unit
	cp "$REPO/.clang-format" "$REPO/.clang-tidy" "$d/"
	cat >"$d/common/frame.h" <<'EOF'
#ifndef FRAME_H
#define FRAME_H
#include <stddef.h>
#include <stdint.h>

struct frame_handler {
	uint32_t type;
	uint32_t body_max;
	int (*fn)(void *ctx, const uint8_t *body, size_t len);
};
#endif
EOF
	cat >"$d/common/note.c" <<'EOF'
#include <stdio.h>

/* Never printf("x") or exit(1) here: the words in a comment are not calls. */
const char *note(void)
{
	return "printf(\"%s\", stdout); exit(1);";
}
EOF
	cat >"$d/agent/peer.c" <<'EOF'
#include "agent/peer.h"
#include "common/frame.h"

#define HAVE_MAX (1u << 20)

enum { MSG_HAVE = 1 };

static int h_have(void *ctx, const uint8_t *body, size_t len)
{
	return 0;
}

static const struct frame_handler peer_table[] = {
    {MSG_HAVE, HAVE_MAX, h_have},
};

const struct frame_handler *peer_handlers(void)
{
	return peer_table;
}
EOF
	printf '#include "common/frame.h"\n\nconst struct frame_handler *peer_handlers(void);\n' \
		>"$d/agent/peer.h"
	cat >"$d/scheduler/server.c" <<'EOF'
#include "scheduler/server.h"

int server_port(void)
{
	return SERVER_PORT;
}
EOF
	printf '#define SERVER_PORT 7000\n\nint server_port(void);\n' >"$d/scheduler/server.h"
	cat >"$d/cli/main.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc > 1) {
		fputs(argv[1], stdout);
		exit(2);
	}
	printf("usage\n");
	return 0;
}
EOF
	cat >"$d/tests/unit/test_table.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>

#include "common/frame.h"

static int h(void *ctx, const uint8_t *body, size_t len)
{
	return 0;
}

static const struct frame_handler table[] = {
    {10, 16, h},
};

int main(void)
{
	printf("%u\n", table[0].type);
	exit(0);
}
EOF
	{
		echo '/* Exactly at the limit. */'
		for i in $(seq 2 799); do echo "int v$i;"; done
		echo 'int last;'
	} >"$d/common/long.c"
	git -C "$d" init -q -b main
	git -C "$d" add -A
	git -C "$d" commit -qm clean
	git -C "$d" checkout -qb work
}

# A change on the work branch, so clang-tidy has a file to read.
touch_note() {
	sed -i 's/in a comment/in a comment or a message/' "$1/common/note.c"
}

# lint DIR: run the lint script on DIR; output in $T/lint.out, status in $RC.
lint() {
	(cd "$1" && "$LINT" "$1") >"$T/lint.out" 2>&1
	RC=$?
}

# violation NAME REGEX SETUP...: a clean tree, then SETUP (run in it); lint
# must fail with exactly one finding, the line matching REGEX.
violation() {
	local name=$1 re=$2 d=$T/$1
	shift 2
	clean_tree "$d"
	(cd "$d" && "$@")
	lint "$d"
	local found
	found=$(grep -cE ' \[[a-z][^]]*\]$' "$T/lint.out")
	if [ "$RC" -eq 1 ] && [ "$found" -eq 1 ] && grep -Eq "$re" "$T/lint.out" &&
		grep -qx 'lint: 1 problem' "$T/lint.out"; then
		ok "$name: fails with $(grep -E ' \[[a-z][^]]*\]$' "$T/lint.out")"
	else
		bad "$name: want one finding matching $re, exit 1" \
			"exit $RC: $(tr '\n' ' ' <"$T/lint.out" | cut -c1-600)"
	fi
}

clean_tree "$T/clean"
touch_note "$T/clean"
lint "$T/clean"
if [ "$RC" -eq 0 ] && [ "$(tail -1 "$T/lint.out")" = "lint: clean" ]; then
	ok "a clean tree passes"
else
	bad "a clean tree passes" "exit $RC: $(tr '\n' ' ' <"$T/lint.out" | cut -c1-600)"
fi

violation agent-includes-scheduler \
	'^agent/peer\.c:2: includes scheduler/server\.h: agent/ and scheduler/ never include each other \[rooms\]$' \
	sed -i '1a #include "scheduler/server.h"' agent/peer.c
violation scheduler-includes-agent \
	'^scheduler/server\.c:2: includes agent/peer\.h: .* \[rooms\]$' \
	sed -i '1a #include "../agent/peer.h"' scheduler/server.c
violation printf-outside-cli \
	'^common/note\.c:6: writes to stdout outside cli/ .*\[output\]$' \
	sed -i 's|^\treturn "printf|\tprintf("x\\n");\n\treturn "printf|' common/note.c
violation fputs-stdout-outside-cli \
	'^common/note\.c:6: uses stdout outside cli/ .*\[output\]$' \
	sed -i 's|^\treturn "printf|\tfputs("x", stdout);\n\treturn "printf|' common/note.c
violation exit-outside-cli \
	'^scheduler/server\.c:5: calls exit outside cli/ .*\[output\]$' \
	sed -i 's|^\treturn SERVER_PORT;|\t_exit(SERVER_PORT);|' scheduler/server.c
violation bare-number-in-table \
	'^agent/peer\.c:14: bare number in dispatch table peer_table: \{MSG_HAVE, 64u << 20, h_have\}, .*\[dispatch\]$' \
	sed -i 's|{MSG_HAVE, HAVE_MAX, h_have}|{MSG_HAVE, 64u << 20, h_have}|' agent/peer.c
violation bare-type-in-table \
	'^agent/peer\.c:14: bare number in dispatch table peer_table: \{7, HAVE_MAX, h_have\}, .*\[dispatch\]$' \
	sed -i 's|{MSG_HAVE, HAVE_MAX, h_have}|{7, HAVE_MAX, h_have}|' agent/peer.c
violation file-over-800-lines \
	'^common/long\.c: 801 lines, over the 800-line limit \[length\]$' \
	sed -i '$a int one_more;' common/long.c
violation new-file-over-800-lines \
	'^scheduler/big\.h: 900 lines, over the 800-line limit \[length\]$' \
	sh -c 'for i in $(seq 900); do echo "int b$i;"; done >scheduler/big.h'
violation not-formatted \
	'^scheduler/server\.c:4: not formatted as \.clang-format says \(make format\) \[format\]$' \
	sed -i 's|^\treturn SERVER_PORT;|  return   SERVER_PORT;|' scheduler/server.c
# (committed on main too, so that clang-tidy, which would see it as well,
# has no changed file to read)
violation cppcheck-finding \
	'^common/note\.c:[0-9]+: Uninitialized variable: x \[cppcheck uninitvar\]$' \
	sh -c 'printf "\nint use(void)\n{\n\tint x;\n\treturn x;\n}\n" >>common/note.c &&
	       git commit -qam uninit && git branch -qf main'
violation clang-tidy-on-changed-file \
	'^common/note\.c:[0-9]+: macro argument should be enclosed in parentheses \[tidy bugprone-macro-parentheses\]$' \
	sh -c 'printf "\n#define TWICE(x) (x * 2)\n" >>common/note.c'
violation clang-tidy-on-changed-header \
	'^agent/peer\.h:[0-9]+: macro argument should be enclosed in parentheses \[tidy bugprone-macro-parentheses\]$' \
	sh -c 'printf "\n#define TWICE(x) (x * 2)\n" >>agent/peer.h'

# clang-tidy reads what changed since main: a finding already on main is
# not reported on the work branch until LINT_TIDY=all asks for every file.
d=$T/old-finding
clean_tree "$d"
git -C "$d" checkout -q main
printf '\n#define TWICE(x) (x * 2)\n' >>"$d/common/note.c"
git -C "$d" commit -qam macro
git -C "$d" checkout -qb later
lint "$d"
check "a finding in a file unchanged since main is not clang-tidy's" test "$RC" -eq 0
LINT_TIDY=all lint "$d"
check "LINT_TIDY=all reads it" grep -q 'bugprone-macro-parentheses' "$T/lint.out"

# Every violation is listed, not only the first.
d=$T/many
clean_tree "$d"
sed -i '$a int one_more;' "$d/common/long.c"
for i in $(seq 801); do echo "int c$i;"; done >"$d/agent/big.c"
sed -i 's|{MSG_HAVE, HAVE_MAX, h_have}|{MSG_HAVE, 64u << 20, h_have}|' "$d/agent/peer.c"
lint "$d"
check "three violations: three lines and 'lint: 3 problems'" \
	sh -c "[ $RC -eq 1 ] && grep -q 'agent/big.c: 801 lines' '$T/lint.out' &&
	       grep -q 'common/long.c: 801 lines' '$T/lint.out' && grep -q '\[dispatch\]' '$T/lint.out' &&
	       grep -qx 'lint: 3 problems' '$T/lint.out'"

finish
