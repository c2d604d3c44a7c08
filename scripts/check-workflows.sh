#!/usr/bin/env bash
# Validate every GitHub Actions workflow against the workflow JSON schema and audit it for
# security problems. Fails on a schema error or on any high-severity audit finding; lower
# severities are printed but do not fail. Works offline: the schema ships with check-jsonschema
# and the audit runs with --offline (no online audits, no network).
set -euo pipefail
cd "$(dirname "$0")/.."

tool() {
    # The project's virtualenv when it exists, else whatever is on PATH.
    if [ -x ".venv/bin/$1" ]; then
        echo ".venv/bin/$1"
    elif command -v "$1" > /dev/null 2>&1; then
        command -v "$1"
    else
        echo "check-workflows: $1 not found (run \`make setup\`)" >&2
        exit 2
    fi
}

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
shopt -u nullglob
if [ "${#workflows[@]}" -eq 0 ]; then
    echo "check-workflows: no workflow under .github/workflows"
    exit 0
fi

check_jsonschema=$(tool check-jsonschema)
zizmor=$(tool zizmor)

echo "check-workflows: schema of ${#workflows[@]} workflow(s)"
"$check_jsonschema" --builtin-schema vendor.github-workflows "${workflows[@]}"

echo "check-workflows: security audit"
# zizmor's exit code is the highest severity found: 0 none, 10 unknown, 11 informational,
# 12 low, 13 medium, 14 high; anything else (1 error, 2 usage, 3 no input) is a failure to audit.
status=0
"$zizmor" --offline --strict-collection --no-progress --color never "${workflows[@]}" || status=$?
case "$status" in
    0 | 11 | 12 | 13)
        echo "check-workflows: no high-severity finding"
        ;;
    14)
        echo "check-workflows: high-severity finding(s) above" >&2
        exit 1
        ;;
    10)
        echo "check-workflows: finding(s) of unknown severity above" >&2
        exit 1
        ;;
    *)
        echo "check-workflows: the audit failed to run (exit $status)" >&2
        exit 1
        ;;
esac
