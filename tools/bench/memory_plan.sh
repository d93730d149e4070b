#!/usr/bin/env bash
# Per-rank memory by kind at G = 1 .. 32 computed by `swiftmoe memory` (the
# allocator's sizes, without allocating; tests/mpi_memory.sh checks them
# against real runs): the demo model (the built-in config) with the default
# swiftmoe policy and with capacity, and a Mixtral-8x7B-shaped model (dims
# from its config.json; 64 sequences of 4096 tokens per step).
# usage: tools/bench/memory_plan.sh [BUILD] > results.md
set -euo pipefail
bin=${1:-build}/swiftmoe
mixtral=(--set model.vocab_size=32000 --set model.dim=4096 --set model.n_layers=32
         --set model.n_heads=32 --set model.n_kv_heads=8 --set moe.num_experts=8
         --set moe.expert_dim=14336 --set moe.top_k=2 --set model.seq_len=4096
         --set training.global_batch_size=64)
echo "# Memory per rank by kind: \`swiftmoe memory\` ($(date -u +%F))"
echo
echo "Command: \`tools/bench/memory_plan.sh build\`; rank 0 (the largest: it also holds the"
echo "buffer that gathers one expert for the final save). Scratch (the arenas) grows in the"
echo "first step and is measured by runs, not planned here."
for policy in swiftmoe capacity; do
  echo
  echo "## Demo model, policy $policy"
  echo
  echo '```'
  "$bin" memory --set placement.policy=$policy --world 1,2,4,8,16 2>&1
  echo '```'
done
for policy in swiftmoe capacity; do
  echo
  echo "## Mixtral-8x7B shape, policy $policy"
  echo
  echo '```'
  "$bin" memory "${mixtral[@]}" --set placement.policy=$policy 2>&1
  echo '```'
done
