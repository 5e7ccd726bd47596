#!/bin/bash
# The gorilla/mux build (cold GOCACHE) on the host, in runc, and in runsc with
# each variation of its flags, interleaved; see docs/benchmarks.md, section 10.
# Register the runtimes first in /etc/docker/daemon.json, e.g.
#   "runsc-ovl-none": {"path": "/usr/local/bin/runsc", "runtimeArgs": ["--platform=systrap", "--overlay2=none"]}
# and make the image with `go run ./cmd/bench build` (execd-bench/go:<version>).
set -u
src=${SRC:-$(go mod download -json github.com/gorilla/mux@v1.8.1 | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')}
img=${IMAGE:-execd-bench/go:$(go env GOVERSION)}
script='go build ./... && go vet ./... && go test ./...'
envs="-e GOCACHE=/tmp/gocache -e GOPATH=/tmp/gocache/gopath -e HOME=/tmp/gocache -e GOFLAGS=-mod=mod -e GOTOOLCHAIN=local -e GOPROXY=off -e CGO_ENABLED=0 -e GOTELEMETRY=off"
rounds=${ROUNDS:-2}
for r in $(seq 1 $rounds); do
  for rt in host runc runsc runsc-ovl-none runsc-ovl-mem runsc-mnt-excl runsc-fa-shared runsc-nodirectfs runsc-ptrace; do
    d=$(mktemp -d /tmp/muxv-XXXX); cp -r $src/. $d; chmod -R u+w $d
    start=$(date +%s.%N)
    if [ $rt = host ]; then
      c=$(mktemp -d); (cd $d && env GOCACHE=$c GOPATH=$c/gopath HOME=$c GOFLAGS=-mod=mod GOTOOLCHAIN=local GOPROXY=off CGO_ENABLED=0 GOTELEMETRY=off sh -c "$script") >/tmp/muxv.out 2>&1; rc=$?; rm -rf $c
    else
      docker run --rm --runtime $rt --network none -v $d:/workspace -w /workspace $envs $img sh -c "$script" >/tmp/muxv.out 2>&1; rc=$?
    fi
    end=$(date +%s.%N)
    printf "round=%s rt=%s rc=%s s=%.1f load=%s\n" $r $rt $rc $(echo "$end - $start" | bc) "$(cut -d' ' -f1 /proc/loadavg)"
    rm -rf $d
  done
done
