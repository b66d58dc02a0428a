# Sourced by run_gpu.sh and tp_bench.sh on a GPU machine: NVLink SHARP off (its multicast can take
# a shared host's GPUs out of service), and nccl_dirs, ":DIR" of the machine's libnccl (218 MB,
# not carried): the CUDA toolkit's, the NCCL wheel of its PyTorch, or wherever a search finds it.
export NCCL_NVLS_ENABLE=0
nccl_dirs=""
for d in /usr/local/cuda/lib /usr/local/cuda/lib64 \
  "$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null)"; do
  if [ -n "$d" ] && ls "$d"/libnccl.so* > /dev/null 2>&1; then nccl_dirs="$nccl_dirs:$d"; fi
done
if [ -z "$nccl_dirs" ]; then
  found=$(timeout 30 find /usr /opt /root /home -name 'libnccl.so.2*' 2>/dev/null | head -1)
  [ -n "$found" ] && nccl_dirs=":$(dirname "$found")"
fi
echo "libnccl from: ${nccl_dirs#:}"
