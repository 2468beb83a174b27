# tests/cli/lib.sh: sourced by CLI test scripts. $LOAM is the loam binary under test.
#   expect_ok NAME CMD...        the command exits 0
#   expect_fail NAME CODE CMD... the command exits CODE, prints exactly one line on stderr
#   expect_out NAME PATTERN CMD... exits 0 and stdout matches the extended regex PATTERN
#   finish                       prints "N passed, N failed" and exits 1 on failures
set -u
: "${LOAM:?LOAM must name the loam binary}"
T_PASS=0 T_FAIL=0
TMPD=$(mktemp -d); trap 'rm -rf "$TMPD"' EXIT
_t_pass() { T_PASS=$((T_PASS + 1)); }
_t_fail() { T_FAIL=$((T_FAIL + 1)); echo "FAIL $1: $2" >&2; }
expect_ok() {
    local name=$1; shift
    if "$@" >"$TMPD/out" 2>"$TMPD/err"; then _t_pass; else _t_fail "$name" "exit $? : $(head -c 400 "$TMPD/err")"; fi
}
expect_fail() {
    local name=$1 code=$2; shift 2
    "$@" >"$TMPD/out" 2>"$TMPD/err"; local rc=$?
    local lines; lines=$(wc -l <"$TMPD/err")
    if [ "$rc" -ne "$code" ]; then _t_fail "$name" "exit $rc, wanted $code: $(head -c 400 "$TMPD/err")"
    elif [ "$lines" -ne 1 ]; then _t_fail "$name" "stderr has $lines lines, wanted 1: $(head -c 400 "$TMPD/err")"
    elif grep -q -i 'sanitizer\|runtime error' "$TMPD/err"; then _t_fail "$name" "sanitizer report"
    else _t_pass; fi
}
expect_out() {
    local name=$1 pat=$2; shift 2
    if "$@" >"$TMPD/out" 2>"$TMPD/err"; then
        if grep -E -q -- "$pat" "$TMPD/out"; then _t_pass; else _t_fail "$name" "stdout does not match /$pat/: $(head -c 400 "$TMPD/out")"; fi
    else _t_fail "$name" "exit $? : $(head -c 400 "$TMPD/err")"; fi
}
finish() { echo "$T_PASS passed, $T_FAIL failed"; [ "$T_FAIL" -eq 0 ]; }
