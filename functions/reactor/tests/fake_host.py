"""Plays an HAProxy host's agent for the reactor's tests (`agent apply --json`).

Reads the change the way the agent does: `--change-base64 BASE64` (what the project's
SSM document passes), else standard input (`apply --json --file -`). Keeps a per-member state like the agent
does (newer generation wins, older is `stale`), appends what it did to a log, and prints
an infra::Report. Behaviour from the environment:

  FAKE_DIR     directory for this host's state.json and log.jsonl (required)
  FAKE_HOST    host name in the report (default: SSM_INSTANCE_ID or "local")
  FAKE_DELAY_S seconds to wait before answering (health check / drain time)
  FAKE_FAIL    comma-separated member ids that never get healthy (status failed, exit 1)
  FAKE_MODE    "exit2" (host unusable), "garbage" (unparsable output), else normal
"""

import base64
import json
import os
import sys
import time

start = time.time()
args = sys.argv[1:]
if "--change-base64" in args:
    at = args.index("--change-base64") + 1
    text = base64.b64decode(args[at] if at < len(args) else "").decode()
else:
    text = sys.stdin.read()
host = os.environ.get("FAKE_HOST") or os.environ.get("SSM_INSTANCE_ID") or "local"
d = os.environ["FAKE_DIR"]
os.makedirs(d, exist_ok=True)
mode = os.environ.get("FAKE_MODE", "")
fail = {x for x in os.environ.get("FAKE_FAIL", "").split(",") if x}
time.sleep(float(os.environ.get("FAKE_DELAY_S", "0")))

if mode == "exit2":
    print("error: HAProxy unreachable at /run/haproxy/admin.sock", file=sys.stderr)
    sys.exit(2)
if mode == "garbage":
    print("Segmentation fault (core dumped)")
    sys.exit(0)

change = json.loads(text)
gen = change["generation"]
state_path = os.path.join(d, "state.json")
try:
    with open(state_path) as f:
        state = json.load(f)
except FileNotFoundError:
    state = {}

outcomes = []
for p in change["pools"]:
    pool = state.setdefault(p["pool"], {})
    for m in p.get("add", []):
        cur = pool.get(m["id"])
        if cur and cur["gen"] > gen:
            outcomes.append({"pool": p["pool"], "member": m["id"], "status": "stale", "reason": "newer", "ms": 0})
            continue
        if m["id"] in fail:
            pool[m["id"]] = {"gen": gen, "present": False}
            outcomes.append({"pool": p["pool"], "member": m["id"], "status": "failed",
                             "reason": "health check did not pass within 30s", "ms": 30000})
            continue
        pool[m["id"]] = {"gen": gen, "present": True, "address": m["address"], "port": m["port"]}
        outcomes.append({"pool": p["pool"], "member": m["id"], "status": "up", "ms": 5})
    for mid in p.get("remove", []):
        cur = pool.get(mid)
        if cur and cur["gen"] > gen:
            outcomes.append({"pool": p["pool"], "member": mid, "status": "stale", "reason": "newer", "ms": 0})
            continue
        pool[mid] = {"gen": gen, "present": False}
        outcomes.append({"pool": p["pool"], "member": mid, "status": "drained", "ms": 5})

with open(state_path + ".tmp", "w") as f:
    json.dump(state, f)
os.replace(state_path + ".tmp", state_path)
done = time.time()
with open(os.path.join(d, "log.jsonl"), "a") as f:
    f.write(json.dumps({"start": start, "done": done, "host": host, "change": change}) + "\n")

ok = all(o["status"] != "failed" for o in outcomes)
print(json.dumps({"host": host, "generation": gen, "ok": ok, "reloads": 0, "outcomes": outcomes}))
sys.exit(0 if ok else 1)
