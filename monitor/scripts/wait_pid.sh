# Sourced by the scripts beside it.
# The newest process whose command line matches $1, waiting up to 10 s for it to appear.
wait_pid() {
  local p end=$((SECONDS + 10))
  until p=$(pgrep -n -f "$1"); do
    if ((SECONDS >= end)); then
      echo "error: no process matching '$1' after 10 s" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "$p"
}
