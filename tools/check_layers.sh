#!/usr/bin/env bash
# tools/check_layers.sh: fails when a folder of the library includes one above it.
# Usage: tools/check_layers.sh [ROOT]      (ROOT: the source tree, default .)
#        tools/check_layers.sh --self-test (plants a violation in a scratch tree: must be caught)
# `make test` runs both, so a wrong include fails the build. The rule (docs/ARCHITECTURE.md):
#
#   common/   plain host+device headers shared by an op and its kernels  -> common, tensor
#   tensor/   tensors, storage, the RNG, printing, the runtime facade     -> tensor, common, cuda/runtime.h
#   cuda/     the runtime and the kernels                                 -> cuda, common, tensor
#   autograd/ nodes, the engine, gradcheck                                -> autograd, tensor
#   ops/      the differentiable ops and their CPU kernels                -> ops, autograd, cuda, common, tensor
#   nn/       modules and models                                          -> nn, ops, autograd, common, tensor
#   data/     MQAR, corpora, tokenizer, files                             -> data, tensor
#   train/    config, loop, evaluation, checkpoints, CLI                  -> train, nn, data, ops, autograd, common, tensor
#
# Only `#include "folder/..."` lines count (system headers are free). tests/, bench/, fuzz/ and tools/
# sit on top and may include anything.
set -uo pipefail

declare -A allowed=(
    [common]="common tensor"
    [tensor]="tensor common cuda/runtime.h"
    [cuda]="cuda common tensor"
    [autograd]="autograd tensor"
    [ops]="ops autograd cuda common tensor"
    [nn]="nn ops autograd common tensor"
    [data]="data tensor"
    [train]="train nn data ops autograd common tensor"
)

check_tree() { # root -> prints each violation, returns 1 when there is any
    local root=$1 bad=0 folder file line target ok a
    for folder in "${!allowed[@]}"; do
        [ -d "$root/$folder" ] || continue
        while IFS= read -r -d '' file; do
            while IFS= read -r line; do
                target=$(sed -E 's/^[0-9]+:[[:space:]]*#[[:space:]]*include[[:space:]]+"([^"]+)".*/\1/' <<<"$line")
                [[ $target == */* ]] || continue # a same-folder relative include
                ok=0
                for a in ${allowed[$folder]}; do
                    if [[ $a == */* ]]; then [[ $target == "$a" ]] && ok=1
                    else [[ $target == "$a"/* ]] && ok=1; fi
                done
                if [ $ok -eq 0 ]; then
                    echo "layers: ${file#"$root"/}:${line%%:*} includes \"$target\"; $folder/ may include only: ${allowed[$folder]}"
                    bad=1
                fi
            done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"' "$file")
        done < <(find "$root/$folder" -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \) -print0)
    done
    return $bad
}

if [ "${1:-}" = "--self-test" ]; then
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    mkdir -p "$scratch/cuda" "$scratch/ops" "$scratch/tensor"
    printf '#include "cuda/launch.h"\n#include "tensor/tensor.h"\n' > "$scratch/cuda/good.cu"
    printf '#include "cuda/runtime.h"\n' > "$scratch/tensor/good.cpp"
    if ! check_tree "$scratch" > /dev/null; then echo "layers self-test: a clean tree was flagged"; exit 1; fi
    printf '#include <vector>\n  #include "ops/matmul.h"\n' > "$scratch/cuda/bad.cu"
    printf '#include "cuda/matmul.h"\n' > "$scratch/tensor/bad.cpp"
    out=$(check_tree "$scratch")
    if [ "$(grep -c '^layers:' <<<"$out")" -ne 2 ]; then
        echo "layers self-test: expected the 2 planted violations to be reported, got:"; echo "$out"; exit 1
    fi
    echo "layers self-test: ok (a clean tree passes, 2 planted violations are caught)"
    exit 0
fi

root=${1:-.}
if check_tree "$root"; then
    echo "layers: ok (no folder includes one above it)"
else
    exit 1
fi
