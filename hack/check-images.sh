#!/usr/bin/env bash
# Checks the archives `make images` wrote: each loads back (tags, entrypoint, non-root user,
# labels), and, as root, each program runs from its image's files alone (a chroot, as uid
# 65532): proof that the image carries every library its program loads.
set -euo pipefail
images_dir=$1
imagebuild=$2
for image in liqo-host flights-service curl; do
  archive="$images_dir/$image.tar"
  summary=$("$imagebuild" inspect "$archive")
  python3 - "$image" "$summary" <<'PY'
import json, sys
name, s = sys.argv[1], json.loads(sys.argv[2])
assert s["user"] == "65532:65532", f"{name}: user {s['user']}"
assert s["tags"] and s["tags"][0].split(":")[0].endswith(name), f"{name}: tags {s['tags']}"
assert s["entrypoint"], f"{name}: no entrypoint"
assert s["labels"].get("org.opencontainers.image.title") == name, f"{name}: labels {s['labels']}"
files = {f["path"] for f in s["files"]}
assert s["entrypoint"][0] in files, f"{name}: {s['entrypoint'][0]} not in the image"
if name == "liqo-host":
    # deploy/Dockerfile must describe the same image (its final stage).
    final = open("deploy/Dockerfile").read().split("\nFROM ")[-1]
    docker = {}
    for line in final.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("USER", "ENTRYPOINT", "CMD", "EXPOSE"):
            docker[word] = json.loads(rest) if rest.startswith("[") else rest.strip()
    ours = {"USER": s["user"], "ENTRYPOINT": s["entrypoint"], "CMD": s["cmd"],
            "EXPOSE": " ".join(p.split("/")[0] for p in s["exposedPorts"])}
    assert docker == ours, f"deploy/Dockerfile says {docker}, make images built {ours}"
size = sum(f["size"] for f in s["files"])
print(f"{name:16} {s['tags'][0]:24} {s['id'][:19]}  {size / 1e6:6.1f} MB  entrypoint {' '.join(s['entrypoint'])}")
PY
done
if [ "$(id -u)" != 0 ]; then
  echo "not root: the programs were not run from their images (a chroot needs root)"
  exit 0
fi
scratch=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$scratch"' EXIT
extract() { # IMAGE: the image's files in $scratch/IMAGE
  mkdir -p "$scratch/$1"
  "$imagebuild" extract "$images_dir/$1.tar" "$scratch/$1"
}
for image in liqo-host flights-service curl; do extract "$image"; done
# Each program runs in a chroot of its image's files alone, as the image's user.
chroot --userspec=65532:65532 "$scratch/liqo-host" /usr/local/bin/liqo-host --version
code=0
chroot --userspec=65532:65532 "$scratch/curl" /usr/bin/curl curl -s -m 2 http://127.0.0.1:9/ || code=$?
if [ "$code" != 7 ]; then
  echo "curl from its image: exit $code, expected 7 (connection refused)"
  exit 1
fi
port=17999
if "$scratch/curl/usr/bin/curl" -s -m 1 "http://127.0.0.1:$port/" >/dev/null 2>&1; then
  echo "port $port is already taken: cannot check flights-service"
  exit 1
fi
PORT=$port chroot --userspec=65532:65532 "$scratch/flights-service" \
  /usr/local/bin/flights-service >"$scratch/flights.log" 2>&1 &
pid=$!
for _ in $(seq 50); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "flights-service exited when run from its image:"; cat "$scratch/flights.log"
    exit 1
  fi
  if "$scratch/curl/usr/bin/curl" -sf -m 1 "http://127.0.0.1:$port/schedule" >/dev/null; then
    echo "flights-service answers from its image"
    echo "images checked: each program runs from its image alone"
    exit 0
  fi
  sleep 0.1
done
echo "flights-service did not answer on 127.0.0.1:$port when run from its image:"
cat "$scratch/flights.log"
exit 1
