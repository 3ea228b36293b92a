#pragma once
// `tltrain launch`: this node's ranks of a tltrain command, as torchrun starts them, without Python.
#include <string>
#include <vector>

namespace tltrain::dist {

struct LaunchOptions {
  int nproc = 1;        ///< ranks on this node
  int nnodes = 1;       ///< nodes in the job
  int node_rank = 0;    ///< this node's index
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  ///< 0: a free port (one node only)
  std::vector<std::string> command;  ///< what each rank runs: tltrain's own arguments
};

/// Forks NPROC copies of this executable running COMMAND with RANK, WORLD_SIZE, LOCAL_RANK,
/// LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set; forwards SIGINT/SIGTERM and stops the
/// others when one rank fails. Returns the first failing rank's exit code, 0 when all succeed.
int launch_ranks(const LaunchOptions& opts);

}  // namespace tltrain::dist
