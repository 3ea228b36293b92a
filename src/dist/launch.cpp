// Starts this node's ranks as copies of the running tltrain with torchrun's environment.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

#include "tltrain/core/error.h"
#include "tltrain/core/log.h"
#include "tltrain/dist/launch.h"

namespace tltrain::dist {

namespace {
volatile sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  TLTRAIN_CHECK(fd >= 0, ErrorKind::Runtime, std::string("socket(): ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 && ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  TLTRAIN_CHECK(ok, ErrorKind::Runtime, "could not find a free TCP port; pass --master-port");
  return ntohs(a.sin_port);
}

}  // namespace

int launch_ranks(const LaunchOptions& o) {
  TLTRAIN_CHECK(!o.command.empty(), ErrorKind::Usage, "launch needs the command for each rank after --, e.g. -- fit --config run.json");
  TLTRAIN_CHECK(o.node_rank < o.nnodes, ErrorKind::Usage,
                "--node-rank " + std::to_string(o.node_rank) + " is outside --nnodes " + std::to_string(o.nnodes));
  TLTRAIN_CHECK(o.nnodes == 1 || o.master_port > 0, ErrorKind::Usage,
                "with --nnodes > 1 every node needs the same --master-port (and --master-addr of node 0)");
  const int port = o.master_port > 0 ? o.master_port : free_port();
  const int world = o.nnodes * o.nproc;
  log::info("launch: " + std::to_string(o.nproc) + " rank(s) of " + std::to_string(world) + ", rendezvous " + o.master_addr + ":" +
            std::to_string(port));

  std::vector<std::string> args{"/proc/self/exe"};
  args.insert(args.end(), o.command.begin(), o.command.end());
  std::vector<pid_t> pids;
  for (int i = 0; i < o.nproc; ++i) {
    pid_t pid = ::fork();
    TLTRAIN_CHECK(pid >= 0, ErrorKind::Runtime, std::string("fork(): ") + std::strerror(errno));
    if (pid == 0) {
      const int rank = o.node_rank * o.nproc + i;
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(i).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::perror("tltrain launch: exec");
      ::_exit(127);
    }
    pids.push_back(pid);
  }

  // Forward Ctrl-C/SIGTERM; when one rank fails, stop the rest (they would fail at their next collective anyway).
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  int first_failure = 0, failed_rank = -1;
  size_t alive = pids.size();
  std::vector<bool> done(pids.size(), false);
  auto kill_rest = [&](int sig) {
    for (size_t i = 0; i < pids.size(); ++i)
      if (!done[i]) ::kill(pids[i], sig);
  };
  std::chrono::steady_clock::time_point term_sent{};
  int forwarded = 0;
  while (alive > 0) {
    if (g_signal && forwarded != g_signal) {
      forwarded = g_signal;
      kill_rest(g_signal);
    }
    if (first_failure && term_sent != std::chrono::steady_clock::time_point{} &&
        std::chrono::steady_clock::now() - term_sent > std::chrono::seconds(10))
      kill_rest(SIGKILL);
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    for (size_t i = 0; i < pids.size(); ++i) {
      if (pids[i] != pid) continue;
      done[i] = true;
      --alive;
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (code != 0 && !first_failure) {
        first_failure = code;
        failed_rank = o.node_rank * o.nproc + static_cast<int>(i);
        log::error("launch: rank " + std::to_string(failed_rank) +
                   (WIFEXITED(status) ? " exited with code " + std::to_string(code) : " was killed by signal " + std::to_string(WTERMSIG(status))) +
                   (alive ? "; stopping the other ranks" : ""));
        kill_rest(SIGTERM);
        term_sent = std::chrono::steady_clock::now();
      }
    }
  }
  return first_failure;
}

}  // namespace tltrain::dist
