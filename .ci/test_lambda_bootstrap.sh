#!/usr/bin/env bash
# Runs terraform/aws/bootstrap (the Lambda entry point) against a stand-in for
# the AWS Parameters and Secrets extension on loopback, with curl and, hiding
# curl, with bash's /dev/tcp, and checks what the function binary starts with.
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

key_json='{"type":"service_account","project_id":"p","private_key":"-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n"}'
key_b64="$(printf '%s' "$key_json" | base64 | tr -d '\n')"

cat > "$work/extension.py" << 'PY'
import http.server, json, sys, urllib.parse

port_file, key_b64 = sys.argv[1], sys.argv[2]
SECRETS = {
    "arn:relay": {"Name": "relay", "SecretString": "tok1,tok2"},
    "arn:google": {"Name": "google", "SecretBinary": key_b64},
}

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        secret = urllib.parse.parse_qs(url.query).get("secretId", [""])[0]
        if self.headers.get("X-Aws-Parameters-Secrets-Token") != "session-token":
            self.send_response(401); self.end_headers(); return
        if url.path != "/secretsmanager/get" or secret not in SECRETS:
            self.send_response(400); self.end_headers(); return
        body = json.dumps({"ARN": secret, **SECRETS[secret], "VersionStages": ["AWSCURRENT"]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
open(port_file, "w").write(str(server.server_address[1]))
server.serve_forever()
PY
python3 "$work/extension.py" "$work/port" "$key_b64" &
server_pid=$!
for _ in $(seq 1 50); do [ -s "$work/port" ] && break; sleep 0.1; done
port="$(cat "$work/port")"

# The function binary's stand-in prints what it was started with.
mkdir -p "$work/task"
cp terraform/aws/bootstrap "$work/task/bootstrap"
cat > "$work/task/kp-function" << 'SH'
#!/bin/bash
echo "token=${KP_RELAY_TOKEN}"
echo "credentials=${GOOGLE_APPLICATION_CREDENTIALS}"
echo "mode=$(stat -c %a "$GOOGLE_APPLICATION_CREDENTIALS")"
echo "args=$*"
cat "$GOOGLE_APPLICATION_CREDENTIALS"
SH
chmod +x "$work/task/bootstrap" "$work/task/kp-function"

# A PATH with bash, base64 and sleep but no curl.
mkdir -p "$work/bin"
for tool in bash base64 sleep stat cat dirname; do ln -s "$(command -v "$tool")" "$work/bin/$tool"; done

run() {
  env -i PATH="$1" LAMBDA_TASK_ROOT="$work/task" AWS_SESSION_TOKEN=session-token \
    PARAMETERS_SECRETS_EXTENSION_HTTP_PORT="$port" \
    KP_RELAY_TOKEN_SECRET_ID=arn:relay KP_GOOGLE_CREDENTIALS_SECRET_ID=arn:google \
    KP_GOOGLE_CREDENTIALS_FILE="$work/credentials-$2.json" \
    bash "$work/task/bootstrap" one two
}

passed=0
failed=0
check() {
  local name="$1" output="$2" expected
  expected="token=tok1,tok2
credentials=$work/credentials-$3.json
mode=600
args=one two
$key_json"
  if [ "$output" = "$expected" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'bootstrap %s: got\n%s\nexpected\n%s\n' "$name" "$output" "$expected" >&2
  fi
}

if command -v curl > /dev/null 2>&1; then
  check "with curl" "$(run "$PATH" curl)" curl
fi
check "with /dev/tcp" "$(run "$work/bin" tcp)" tcp

# A secret the role may not read stops the start with a message.
if env -i PATH="$work/bin" LAMBDA_TASK_ROOT="$work/task" AWS_SESSION_TOKEN=session-token \
  PARAMETERS_SECRETS_EXTENSION_HTTP_PORT="$port" KP_RELAY_TOKEN_SECRET_ID=arn:missing \
  bash "$work/task/bootstrap" > /dev/null 2> "$work/err"; then
  failed=$((failed + 1))
  echo "bootstrap started the function without its secret" >&2
elif grep -q "cannot read secret arn:missing" "$work/err"; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
  echo "bootstrap failed without saying why: $(cat "$work/err")" >&2
fi

echo "lambda bootstrap: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
