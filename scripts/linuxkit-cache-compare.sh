#!/bin/bash
# Side by side with the real linuxkit: cache pull/ls/export/import, mirrors and a shared cache,
# against one Debian docker-registry on loopback (by hand, not in CI; needs docker-registry,
# skopeo and a linuxkit binary, e.g. from /work/shared/tools/build-linuxkit.sh).
#   usage: LINUXKIT=/path/to/linuxkit scripts/linuxkit-cache-compare.sh [WORKDIR]
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${1:-$(mktemp -d)}; rm -rf "$W"; mkdir -p "$W/storage"
IC="$ROOT/.venv/bin/image-composer"
LK=${LINUXKIT:?set LINUXKIT to a linuxkit binary}
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat > $W/config.yml <<C
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $W/storage}}
http: {addr: 127.0.0.1:$PORT}
C
docker-registry serve $W/config.yml > $W/reg.log 2>&1 &
REGPID=$!
trap 'kill $REGPID' EXIT
for i in $(seq 50); do curl -sf http://127.0.0.1:$PORT/v2/ >/dev/null && break; sleep 0.1; done
cd "$ROOT"
.venv/bin/python - "$W" <<PY
import sys
from pathlib import Path
from composer.images.cache import Cache
from tests.fixtures.images import make_index, sample_image, make_image, files_layer
w = Path(sys.argv[1]); store = Cache(w/"store")
amd, arm = sample_image(store, arch="amd64"), sample_image(store, arch="arm64")
idx = make_index(store, [amd, arm])
store.tag("x/multi:1", idx.descriptor)
wh = make_image(store, [files_layer({"a/keep": "kept\n", "a/gone": "gone\n"}), files_layer({"a/.wh.gone": ""})])
store.tag("x/wh:1", wh.descriptor)
print("index", idx.digest)
PY
R=127.0.0.1:$PORT
$IC cache push --cache $W/store --remote-name $R/lk/multi:1 x/multi:1
$IC cache push --cache $W/store --remote-name $R/lk/wh:1 x/wh:1
echo "== linuxkit cache pull"; $LK --cache $W/lk cache pull $R/lk/multi:1 $R/lk/wh:1 2>&1 | tail -2
echo "== ours cache pull";   $IC --cache $W/ic cache pull --platform linux/amd64 --platform linux/arm64 $R/lk/multi:1 $R/lk/wh:1
echo "== linuxkit cache ls"; $LK --cache $W/lk cache ls 2>&1
echo "== ours cache ls --format linuxkit"; $IC --cache $W/ic cache ls --format linuxkit
for f in oci docker filesystem; do
  $LK --cache $W/lk cache export --format $f --platform linux/arm64 --outfile $W/lk-$f.tar $R/lk/multi:1 2>&1 | tail -1
  $IC --cache $W/ic cache export --format $f --platform linux/arm64 --outfile $W/ic-$f.tar $R/lk/multi:1 >/dev/null
done
$LK --cache $W/lk cache export --format filesystem --outfile $W/lk-wh.tar $R/lk/wh:1
$IC --cache $W/ic cache export --format filesystem --outfile $W/ic-wh.tar $R/lk/wh:1 >/dev/null
echo "== skopeo: manifest digests of the oci/docker exports"
for f in lk-oci ic-oci; do printf "%s " $f; skopeo inspect --raw oci-archive:$W/$f.tar | sha256sum; done
for f in lk-docker ic-docker; do printf "%s config " $f; skopeo inspect --raw docker-archive:$W/$f.tar | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["config"]["digest"], len(d["layers"]))'; done
echo "== filesystem exports: members and contents"
python3 - $W <<PY
import sys, tarfile, hashlib
w=sys.argv[1]
def tree(p):
    out={}
    with tarfile.open(p) as tf:
        for m in tf:
            data = tf.extractfile(m).read() if m.isfile() else b""
            out[m.name.rstrip("/")]=(m.type, oct(m.mode), m.uid, m.gid, hashlib.sha256(data).hexdigest()[:12] if m.isfile() else m.linkname)
    return out
for a,b in (("lk-filesystem","ic-filesystem"),("lk-wh","ic-wh")):
    ta,tb=tree(f"{w}/{a}.tar"),tree(f"{w}/{b}.tar")
    print(a, sorted(ta)); print(b, sorted(tb))
    print("same members and contents:", ta==tb)
    for k in sorted(set(ta)|set(tb)):
        if ta.get(k)!=tb.get(k): print("  differs", k, ta.get(k), tb.get(k))
PY
echo "== interop: linuxkit imports our OCI export, we import linuxkit's"
$LK --cache $W/lk2 cache import $W/ic-oci.tar 2>&1 | tail -1; $LK --cache $W/lk2 cache ls 2>&1 | tail -1
$IC --cache $W/ic2 cache import $W/lk-oci.tar; $IC --cache $W/ic2 cache ls
echo "== LINUXKIT_CACHE: ours reading linuxkit's cache"
LINUXKIT_CACHE=$W/lk $IC cache ls; LINUXKIT_CACHE=$W/lk $IC cache export --format filesystem --platform linux/amd64 --outfile $W/from-lk-cache.tar $R/lk/multi:1 && echo "exported from linuxkit's cache: $(tar tf $W/from-lk-cache.tar | wc -l) entries"
LINUXKIT_CACHE=$W/lk $IC cache verify
echo "== mirror: linuxkit and ours, origin that lacks the image"
$LK --mirror 127.0.0.1:1=http://$R --cache $W/lk3 cache pull 127.0.0.1:1/lk/wh:1 2>&1 | tail -1; $LK --cache $W/lk3 cache ls 2>&1 | tail -1
$IC --mirror 127.0.0.1:1=http://$R --cache $W/ic3 cache pull 127.0.0.1:1/lk/wh:1; $IC --cache $W/ic3 cache ls --format linuxkit | tail -1
