#!/usr/bin/env bash
# pixtral_eval tokenize must print the npm reference ids for every committed vector, and fail
# clearly on a line that is not {"text": ...}.
set -euo pipefail
eval_bin=tools/pixtral_eval
vectors=tests/data/tokenizer_vectors.jsonl
out="${TEST_TMPDIR:-/tmp}/ids.jsonl"
"$eval_bin" tokenize --tokenizer tests/data/generated/tekken.json < "$vectors" > "$out"
python3 - "$vectors" "$out" <<'PY'
import json, sys
expected = [json.loads(l)["ids"] for l in open(sys.argv[1])]
got = [json.loads(l)["ids"] for l in open(sys.argv[2])]
assert len(got) == len(expected), (len(got), len(expected))
bad = [i for i, (g, e) in enumerate(zip(got, expected)) if g != e]
assert not bad, f"lines differ: {bad[:10]}"
print(f"{len(got)} lines match")
PY
if echo '{"txt": 1}' | "$eval_bin" tokenize --tokenizer tests/data/generated/tekken.json 2> "$out.err"; then
  echo "expected a failure on a line without \"text\"" >&2
  exit 1
fi
grep -q 'line 1' "$out.err"
echo PASS
