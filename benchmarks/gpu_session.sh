#!/usr/bin/env bash
# The GPU figures of issues 11 and 12, as one prepared script for a lent GPU machine
# (its python3 holds PyTorch; physml's missing dependency, lark, travels as a wheel in
# .whl/). Everything it writes lands in $OUT/results.tgz and $OUT/log.txt.
#
#   bash benchmarks/gpu_session.sh smoke     # ~2 min: every code path on the GPU, speeds
#   bash benchmarks/gpu_session.sh full MIN  # the rows side by side, MIN minutes each
set -u
MODE=${1:-smoke}
MIN=${2:-5}
OUT=${OUT:-/tmp/gpu_out}
W=/tmp/physml_gpu
mkdir -p "$OUT" "$W/res"
exec > >(tee -a "$OUT/log.txt") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
[ -e physml/equations ] || ln -s ../equations physml/equations   # the package-dir of pyproject
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg
PY=python3
nvidia-smi -L
$PY -c "import torch, physml; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

if [ "$MODE" = smoke ]; then
    stamp "partial_speed (NS 64², batch 16)"
    $PY benchmarks/partial_speed.py --device cuda | tee "$W/res/partial_speed_gpu.json"
    stamp "NS setting 2, quick data, 0.4 min"
    $PY benchmarks/reproduce_partial.py --specs ns_density_setting2 --quick --minutes 0.4 \
        --device cuda --work "$W" --data-dir "$W/data" --runs "$W/runs" \
        --out "$W/res/smoke_partial.md" | tail -8
    stamp "GS LEADS, 20 steps"
    $PY benchmarks/reproduce_leads.py --systems gs --rows leads --steps 20 --device cuda \
        --runs "$W/lruns" --data-dir "$W/ldata" --out "$W/res/smoke_leads.md" --replace | tail -4
    stamp "done"
else
    # 2026-11-28: the four simulations below, run with --device cuda, had not finished after
    # 9 minutes (cause not established; 96 of these NS trajectories take ~65 s on two CPU
    # cores). They now run on the CPU, 4 threads each, and a one-minute probe times a small
    # GPU simulation for the record.
    stamp "probe: 32 NS trajectories simulated on the GPU (1 min cap)"
    sed -e 's/trajectories 300 train, 50 val, 100 test/trajectories 32 train, 1 val, 1 test/' \
        specs/chapter2/ns_density_setting2.phy > specs/chapter2/_probe.phy
    timeout 60 $PY -m physml simulate specs/chapter2/_probe.phy --device cuda \
        --data-dir "$W/probe" > "$W/res/sim_probe_gpu.txt" 2>&1; echo "probe rc $?"
    tail -n 2 "$W/res/sim_probe_gpu.txt"; rm -f specs/chapter2/_probe.phy
    stamp "simulating (CPU, 4 threads each, side by side)"
    for s in ns_density_setting2 ns_density_setting1; do
        OMP_NUM_THREADS=4 $PY -m physml simulate specs/chapter2/$s.phy --data-dir "$W/data" \
            > "$W/res/sim_$s.txt" 2>&1 &
    done
    for s in gs_leads ns_leads; do
        OMP_NUM_THREADS=2 $PY -m physml simulate specs/table3_14/$s.phy --data-dir "$W/ldata/full" \
            > "$W/res/sim_$s.txt" 2>&1 &
    done
    wait
    stamp "simulated"
    tail -n 2 "$W"/res/sim_*.txt
    [ "$(ls "$W"/data/*.h5 "$W"/ldata/full/*.h5 2>/dev/null | wc -l)" -ge 4 ] || exit 4
    stamp "pipeline check (a few steps of each kind of row)"
    $PY benchmarks/reproduce_partial.py --specs ns_density_setting2 --steps 2 \
        --device cuda --work "$W" --data-dir "$W/data" --runs "$W/qruns" \
        --out "$W/res/check_partial.md" > "$W/res/check_partial.txt" 2>&1 \
        || { tail -25 "$W/res/check_partial.txt"; exit 3; }
    $PY benchmarks/reproduce_leads.py --systems gs --rows leads --steps 3 --device cuda \
        --runs "$W/qlruns" --data-dir "$W/ldata" --out "$W/res/check_leads.md" --replace \
        > "$W/res/check_leads.txt" 2>&1 || { tail -25 "$W/res/check_leads.txt"; exit 3; }
    stamp "partial_speed (NS 64², batch 16)"
    $PY benchmarks/partial_speed.py --device cuda > "$W/res/partial_speed_gpu.json" \
        2> "$W/res/partial_speed_err.txt"; cat "$W/res/partial_speed_gpu.json"
    stamp "training, $MIN min per row, side by side"
    CAP=$(awk "BEGIN {print int($MIN * 60 + 150)}")   # training, then evaluation
    for s in ns_density_setting2 ns_density_setting1 ns_density_direct_resnet \
             ns_density_resnet_noskip ns_density_unet ns_density_modified_h; do
        timeout $CAP $PY benchmarks/reproduce_partial.py --specs $s --minutes "$MIN" --device cuda \
            --scheduled-sampling 0.999 \
            --work "$W" --data-dir "$W/data" --runs "$W/runs" \
            --out "$W/res/partial_$s.md" > "$W/res/log_$s.txt" 2>&1 &
    done
    for sr in gs:leads gs:one_per_env gs:leads_no_min ns:leads ns:one_per_env; do
        sys=${sr%%:*}; row=${sr##*:}
        timeout $CAP $PY benchmarks/reproduce_leads.py --systems $sys --rows $row --minutes "$MIN" \
            --device cuda --runs "$W/lruns" --data-dir "$W/ldata" \
            --note "GPU ($(nvidia-smi --query-gpu=name --format=csv,noheader)), rows side by side, $MIN min cap" \
            --out "$W/res/leads_${sys}_$row.md" --replace > "$W/res/log_${sys}_$row.txt" 2>&1 &
    done
    sleep 20; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
    wait
    stamp "done"
    tail -n 3 "$W"/res/log_*.txt
fi
tar czf "$OUT/results.tgz" -C "$W" res
ls -la "$OUT"
