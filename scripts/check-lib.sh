# check-lib.sh: the verdict helper the device scripts share. Source it;
# it keeps the verdicts in the array summary and sets failed=1 on any
# FAIL.
#
#   check NAME RC WANT [DETAIL...]   one verdict: ok when RC equals WANT
summary=()
failed=0
check() {
	local name=$1 rc=$2 want=$3
	shift 3
	if [ "$rc" = "$want" ]; then
		summary+=("ok    $name $*")
	else
		summary+=("FAIL  $name rc=$rc (want $want) $*")
		failed=1
	fi
	echo "## ${summary[-1]}"
}
