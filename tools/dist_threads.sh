# Sourced by dist_train.sh and dist_test.sh with NUM_PROCS set.
# torchrun gives every process OMP_NUM_THREADS=1 when the variable is unset,
# which leaves a CPU run on one core per process (convolutions and the
# threaded RoIAlign alike). Share this node's cores among its processes
# instead, unless the user has chosen a value.
case $NUM_PROCS in
  ''|*[!0-9]*|0)
    echo "$(basename "$0"): NUM_PROCS must be a positive whole number, got '$NUM_PROCS'" >&2
    exit 2 ;;
esac
if [ -z "${OMP_NUM_THREADS:-}" ]; then
  _cores=$(nproc)
  _threads=$(( _cores / NUM_PROCS ))
  [ "$_threads" -ge 1 ] || _threads=1
  export OMP_NUM_THREADS=$_threads
  echo "[$(basename "$0")] OMP_NUM_THREADS=$_threads ($_cores cores / $NUM_PROCS processes); set OMP_NUM_THREADS to choose" >&2
fi
