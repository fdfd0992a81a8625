#!/usr/bin/env bash
# The README promises a newcomer two commands: one that installs keyswitch and wires it into
# Claude Code, one that runs the tests. This checks that the README's "Two commands" block holds
# exactly two, and that each is what CI itself runs: .ci/run, or a script .ci/run runs, invokes
# it (the install command through scripts/test-install.sh, on a fresh HOME).
set -euo pipefail
cd "$(dirname "$0")/.."

# The first ```sh block after the "## Two commands" heading; comments and blank lines dropped.
mapfile -t commands < <(awk '
    /^## Two commands/ { section = 1; next }
    section && /^```sh/ { block = 1; next }
    block && /^```/ { exit }
    block { sub(/#.*/, ""); gsub(/^[ \t]+|[ \t]+$/, ""); if ($0 != "") print }
' README.md)

if [ ${#commands[@]} -ne 2 ]; then
    echo "check-readme: the README's \"Two commands\" block holds ${#commands[@]} commands, not 2: ${commands[*]:-none}" >&2
    exit 1
fi

# What CI runs: .ci/run and the scripts it calls.
ci_files=(.ci/run)
while read -r script; do
    [ -f "$script" ] && ci_files+=("$script")
done < <(grep -oE '\./scripts/[A-Za-z0-9_-]+\.sh' .ci/run | sort -u)

failed=0
for command in "${commands[@]}"; do
    program=${command%% *}
    # `./install.sh` may be run as "$repo/install.sh" or "$unpacked/install.sh" by a script.
    if ! grep -qF -- "$command" "${ci_files[@]}" \
        && ! grep -qE -- "/${program#./}\"?( |$)" "${ci_files[@]}"; then
        echo "check-readme: the README's \`$command\` is not what CI runs (${ci_files[*]}): make them the same" >&2
        failed=1
    fi
done
[ "$failed" -eq 0 ] && echo "check-readme: the README's two commands (${commands[*]}) are the ones CI runs"
exit "$failed"
