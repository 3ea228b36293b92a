// tltrain launch --nproc N [--nnodes M --node-rank K --master-addr A --master-port P] -- fit --config X
#include <cstdlib>

#include "commands.h"
#include "tltrain/dist/launch.h"

namespace tltrain::cli {

void setup_launch(CLI::App& app) {
  auto opts = std::make_shared<dist::LaunchOptions>();
  auto* sub = app.add_subcommand("launch", "Start data-parallel ranks of a tltrain command on this node (like torchrun)");
  sub->add_option("--nproc,--nproc-per-node", opts->nproc, "Ranks on this node")->required()->check(CLI::Range(1, 1024));
  sub->add_option("--nnodes", opts->nnodes, "Nodes in the job")->check(CLI::Range(1, 4096));
  sub->add_option("--node-rank", opts->node_rank, "This node's index, 0 .. nnodes-1")->check(CLI::NonNegativeNumber);
  sub->add_option("--master-addr", opts->master_addr, "Address of node 0 (hosts the rendezvous store)");
  sub->add_option("--master-port", opts->master_port, "Rendezvous port (default: a free one; required with --nnodes > 1)")
      ->check(CLI::Range(0, 65535));
  sub->add_option("command", opts->command, "The tltrain command each rank runs, after --: -- fit --config run.json");
  sub->callback([opts] {
    int code = dist::launch_ranks(*opts);
    if (code != 0) std::exit(code);
  });
}

}  // namespace tltrain::cli
