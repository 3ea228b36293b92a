#include <algorithm>
#include <cstdlib>
#include <string>

#include "tltrain/core/error.h"
#include "tltrain/dist/context.h"

namespace tltrain::dist {

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int int_env(const char* name, int fallback, int min_value) {
  const char* v = env(name);
  if (!v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  TLTRAIN_CHECK(end && *end == '\0' && x >= min_value && x <= 1 << 20, ErrorKind::Usage,
                std::string("environment variable ") + name + "='" + v + "' is not an integer >= " + std::to_string(min_value));
  return static_cast<int>(x);
}

}  // namespace

DistContext context_from_env() {
  DistContext c;
  if (env("RANK") || env("WORLD_SIZE")) {
    c.source = "torchrun";
    c.rank = int_env("RANK", 0, 0);
    c.world = int_env("WORLD_SIZE", 1, 1);
    c.local_rank = int_env("LOCAL_RANK", c.rank, 0);
    c.local_world = int_env("LOCAL_WORLD_SIZE", c.world, 1);
  } else if (env("SLURM_PROCID") && env("SLURM_NTASKS")) {
    c.source = "slurm";
    c.rank = int_env("SLURM_PROCID", 0, 0);
    c.world = int_env("SLURM_NTASKS", 1, 1);
    c.local_rank = int_env("SLURM_LOCALID", 0, 0);
    // SLURM_NTASKS_PER_NODE may read "2(x3)"; its leading number is this layout's tasks per node.
    c.local_world = env("SLURM_NTASKS_PER_NODE") ? std::max(1, std::atoi(env("SLURM_NTASKS_PER_NODE"))) : 1;
    if (!env("MASTER_ADDR") && c.world > 1)
      TLTRAIN_FAIL(ErrorKind::Usage, "under SLURM set MASTER_ADDR to the first node's host name, e.g. "
                                     "export MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)");
  } else {
    return c;
  }
  if (const char* a = env("MASTER_ADDR")) c.master_addr = a;
  c.master_port = int_env("MASTER_PORT", c.master_port, 1);
  TLTRAIN_CHECK(c.master_port <= 65535, ErrorKind::Usage, "MASTER_PORT " + std::to_string(c.master_port) + " is not a TCP port");
  TLTRAIN_CHECK(c.rank < c.world, ErrorKind::Usage,
                "rank " + std::to_string(c.rank) + " is outside world size " + std::to_string(c.world) + " (" + c.source + " environment)");
  TLTRAIN_CHECK(c.local_rank < c.local_world || c.source == "slurm", ErrorKind::Usage,
                "LOCAL_RANK " + std::to_string(c.local_rank) + " is outside LOCAL_WORLD_SIZE " + std::to_string(c.local_world));
  return c;
}

std::chrono::milliseconds timeout_from_env(double default_seconds) {
  double s = default_seconds;
  if (const char* v = env("TLTRAIN_DIST_TIMEOUT")) {
    char* end = nullptr;
    s = std::strtod(v, &end);
    TLTRAIN_CHECK(end && *end == '\0' && s > 0, ErrorKind::Usage,
                  std::string("TLTRAIN_DIST_TIMEOUT='") + v + "' is not a positive number of seconds");
  }
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

}  // namespace tltrain::dist
